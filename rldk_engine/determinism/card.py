"""The determinism card: `determinism_card.json`, one schema (SPEC "Determinism").

Every card - from replicas of a command, from existing logs (`--runs`) and from `doctor`
(the environment audit alone, no replicas) - carries the same fields; `kind` says which.
For `doctor`, `passed` means the audit found nothing at warning or above and the
recommendations are the fixes of those findings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from rldk_engine import __version__
from rldk_engine.determinism.compare import MetricComparison, culprit_order
from rldk_engine.determinism.evidence import (
    build_recommendations,
    env_findings,
    json_number,
    seeds_seen,
)
from rldk_engine.determinism.replicas import ReplicaOutcome

CARD_NAME = "determinism_card.json"
FIGURE_NAME = "determinism_mismatch.png"
# Audit findings at or above this severity fail an environment-only card.
BLOCKING_SEVERITIES = frozenset({"warning", "critical"})


def build_card(
    *,
    env: dict,
    outcomes: Sequence[ReplicaOutcome] = (),
    comparisons: Sequence[MetricComparison] = (),
    compare: Sequence[str] = (),
    atol: float = 1e-6,
    rtol: float = 0.0,
    wall_time_s: float = 0.0,
    argv: Sequence[str] | None = None,
    error: str | None = None,
) -> dict:
    """The card. Without outcomes it is the environment card `doctor` writes."""
    findings = env_findings(env)
    if outcomes:
        kind = "replicas" if argv else "runs"
        mismatches = sum(c.n_mismatches for c in comparisons)
        recs = build_recommendations(comparisons, outcomes, env) if error is None else []
        passed = error is None and mismatches == 0 and not recs
    else:
        kind, mismatches = "environment", 0
        blocking = [f for f in findings if f.get("severity") in BLOCKING_SEVERITIES]
        recs = [f"{f['finding']}: {f['fix']}" for f in blocking]
        passed = error is None and not blocking
    env = dict(env)
    env["seeds_seen"] = seeds_seen(argv or [], outcomes)
    return {
        "tool": "rldk",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kind": kind,
        "passed": passed,
        "replicas": len(outcomes),
        "compare": list(compare),
        "tolerance": atol,
        "rtol": rtol,
        "mismatches": mismatches,
        "max_abs_diff": {c.metric: json_number(c.max_abs_diff) for c in comparisons},
        "first_divergence": {c.metric: c.first_divergence for c in comparisons},
        "culprit_metrics": culprit_order(comparisons),
        "recommendations": recs,
        "findings": findings,
        "env": env,
        "wall_time_s": round(wall_time_s, 3),
        "exit_codes": [o.exit_code for o in outcomes],
        "replica_steps": [o.run.n_steps for o in outcomes],
        "replica_wall_time_s": [o.wall_time_s for o in outcomes],
        "compared_steps": {c.metric: int(c.steps.size) for c in comparisons},
        "cmd": list(argv) if argv else None,
        "sources": [o.source for o in outcomes],
        "metrics_from": [o.metrics_from for o in outcomes],
        "metrics_files": [o.metrics_file for o in outcomes],
        "replica_errors": [o.error for o in outcomes],  # e.g. an unreadable metrics file
        "error": error,
    }


def write_card(card: dict, out_dir: Path) -> Path:
    """Atomic write: a reader never sees half a card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CARD_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def card_summary(card: dict, reason: str | None = None) -> str:
    """The one-line verdict printed after a check."""
    if reason:
        return f"determinism: could not run: {reason}"
    verdict = "PASSED" if card["passed"] else "FAILED"
    culprits = ", ".join(card["culprit_metrics"]) or "none"
    return (
        f"determinism: {verdict} ({card['replicas']} replicas, {card['mismatches']} mismatched "
        f"cells, culprits: {culprits}, {card['wall_time_s']:.1f} s)"
    )
