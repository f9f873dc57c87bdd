"""The live guardrail's verdict, read back by the scan (one verdict for one run).

A monitor run directory holds `run.jsonl` (the canonical rows) and `alerts.jsonl` (the
guardrail's fire/clear rows). Scanning the directory folds those alerts into the findings:
each fire..clear episode becomes an anomaly with the guardrail's severity, and a `stop`
is at least critical (the guardrail judged the run not worth its compute).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rldk_engine.constants import SEVERITY_RANK
from rldk_engine.forensics.detectors import Anomaly

if TYPE_CHECKING:
    from rldk_engine.ingest.run import Run

ALERTS_FILE = "alerts.jsonl"
RUN_FILE = "run.jsonl"


def alerts_path_for(source: str) -> Path | None:
    """alerts.jsonl of the monitor run directory a run was read from, if there is one."""
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if not path.is_dir() and path.name != RUN_FILE:
        return None
    candidate = folder / ALERTS_FILE
    return candidate if candidate.is_file() else None


def guardrail_anomalies(source: str, run: Run) -> tuple[list[Anomaly], list[str]]:
    """(anomalies from alerts.jsonl, problems reading it) for the run read from `source`."""
    path = alerts_path_for(source)
    if path is None:
        return [], []
    errors: list[str] = []
    last_step = int(run.steps[-1]) if run.steps.size else 0
    open_at: dict[tuple[str, str], dict] = {}
    found: list[Anomaly] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [], [f"{path}: cannot read the guardrail's alerts ({exc.strerror or exc})"]
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rule, metric = str(row["rule"]), str(row.get("metric") or "")
            severity = str(row.get("severity") or "warning")
            if severity not in SEVERITY_RANK:
                raise ValueError(severity)
        except (ValueError, KeyError, TypeError):
            errors.append(f"{path}: line {number}: not an alert row (skipped)")
            continue
        step = row.get("step")
        step = int(step) if isinstance(step, (int, float)) else last_step
        key = (rule, metric)
        if row.get("event", "fire") == "clear":
            fired = open_at.pop(key, None)
            if fired is not None:
                found.append(_anomaly(fired, step))
        elif key not in open_at:
            open_at[key] = {**row, "step": step, "severity": severity}
    found += [_anomaly(fired, last_step) for fired in open_at.values()]
    return found, errors


def _anomaly(row: dict, end_step: int) -> Anomaly:
    stopped = row.get("action") == "stop"
    severity = "critical" if stopped else row["severity"]
    verb = "stopped the run" if stopped else "warned"
    return Anomaly(
        rule=str(row["rule"]),
        metric=str(row.get("metric") or ""),
        start_step=int(row["step"]),
        end_step=max(int(row["step"]), int(end_step)),
        severity=severity,
        message=f"live guardrail {verb}: {row.get('message') or row['rule']}",
        evidence={"source": "guardrail", "action": row.get("action"),
                  "value": row.get("value"), "threshold": row.get("threshold")},
    )


def merge_guardrail(found: list[Anomaly], guard: list[Anomaly]) -> list[Anomaly]:
    """The detectors' findings plus every guardrail episode they do not already cover
    at the same or a worse severity (same rule, overlapping steps)."""
    out = list(found)
    for g in guard:
        covered = any(a.rule == g.rule and a.start_step <= g.end_step and g.start_step <= a.end_step
                      and SEVERITY_RANK[a.severity] >= SEVERITY_RANK[g.severity] for a in found)
        if not covered:
            out.append(g)
    out.sort(key=lambda a: (a.start_step, -SEVERITY_RANK[a.severity], a.rule, a.metric))
    return out
