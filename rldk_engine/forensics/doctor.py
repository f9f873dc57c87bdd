"""`doctor`: the forensic scan plus the environment audit, each finding with its fix.

Writes `<out>/ppo_scan.json` (the SPEC scan report, each anomaly given a `fix`),
`<out>/determinism_card.json` (the environment audit and its findings) and the resume plan
of every run (`<out>/resume_plan.json` and `.txt`, rldk_engine.resume: the last healthy
step, the newest checkpoint at or before it, the fixes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rldk_engine import __version__
from rldk_engine.forensics.envaudit import determinism_card
from rldk_engine.resume import SERIOUS, build_plan, write_plans
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
    plans: list[dict] = field(default_factory=list)
    plan_path: Path | None = None


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


def _steps_of(source: str) -> list[int]:
    """The steps a run logged (read again: the scan report keeps only counts)."""
    from rldk_engine.ingest.readers import read_run

    try:
        return [int(s) for s in read_run(source).steps.tolist()]
    except Exception:  # the scan already read it; a second failure only loses the healthy step
        return []


def resume_plans(report: dict, checkpoint_dirs: list[Path] | None = None) -> list[dict]:
    """One resume plan per run; checkpoints are looked for in `checkpoint_dirs`, else in
    the folder that holds the log (a trainer's output folder usually holds both)."""
    plans = []
    for run in report.get("runs", []):
        anomalies = run.get("anomalies", [])
        source = str(run.get("source", ""))
        serious = any(a.get("severity") in SERIOUS for a in anomalies)
        steps = _steps_of(source) if serious else []
        dirs = list(checkpoint_dirs) if checkpoint_dirs else [Path(source).parent]
        plan = build_plan(steps, anomalies, dirs, f"rldk-engine scan {source}")
        if not serious:
            plan["last_healthy_step"] = None  # not read again for a healthy run
        plans.append({"run_id": run.get("run_id"), "source": source, "resume": plan})
    return plans


def run_doctor(paths: list[str], out_dir: Path = Path("rldk_reports"), preset: str = "auto",
               jobs: int = 1, checkpoint_dirs: list[Path] | None = None) -> DoctorResult:
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
    plans = resume_plans(report, checkpoint_dirs)
    plan_path, _ = write_plans(plans, out_dir)
    return DoctorResult(report, card, scan_path, card_path, plans, plan_path)
