"""`doctor`: the forensic scan plus the environment audit, each finding with its fix.

Writes `<out>/ppo_scan.json` (the SPEC scan report, each anomaly given a `fix`) and
`<out>/determinism_card.json` (the environment audit and its findings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rldk_engine import __version__
from rldk_engine.forensics.envaudit import determinism_card
from rldk_engine.rulebook import RULES, UNKNOWN_FIX

SCAN_NAME = "ppo_scan.json"
CARD_NAME = "determinism_card.json"

# What an RL engineer does next when a rule fires: the registry's fixes, in one line.
FIXES: dict[str, str] = {rule_id: "; ".join(info.fixes) for rule_id, info in RULES.items()}
DEFAULT_FIX = UNKNOWN_FIX


@dataclass
class DoctorResult:
    report: dict
    card: dict
    scan_path: Path
    card_path: Path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def with_fixes(report: dict) -> dict:
    """The scan report with a `fix` on every anomaly (a new dict, input untouched)."""
    runs = []
    for run in report.get("runs", []):
        anomalies = [{**a, "fix": FIXES.get(a.get("rule", ""), DEFAULT_FIX)}
                     for a in run.get("anomalies", [])]
        runs.append({**run, "anomalies": anomalies})
    return {**report, "runs": runs}


def build_card(env: dict | None = None) -> dict:
    card = determinism_card(env)
    return {"tool": "rldk", "version": __version__, "created": _now(), **card}


def run_doctor(paths: list[str], out_dir: Path = Path("rldk_reports"), preset: str = "auto",
               jobs: int = 1) -> DoctorResult:
    """Scan `paths` and audit the environment; write both JSON files into out_dir.
    Raises ValueError when nothing is readable (the CLI turns it into exit 2)."""
    from rldk_engine.forensics.scan import scan_paths

    report = with_fixes(scan_paths(list(paths), preset, jobs))
    if not report["runs"]:
        first = report["errors"][0] if report.get("errors") else f"{paths[0]}: no logs found"
        raise ValueError(f"nothing readable ({first})")
    card = build_card()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_path, card_path = out_dir / SCAN_NAME, out_dir / CARD_NAME
    scan_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return DoctorResult(report, card, scan_path, card_path)
