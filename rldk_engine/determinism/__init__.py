"""Determinism: run replicas of one command, compare their metrics, write the evidence card.

    base.py      DeterminismError and the few helpers every module shares (stdlib only)
    replicas.py  run N copies side by side (process groups, RLDK_REPLICA, RLDK_METRICS_PATH),
                 read each one's metrics (stdout and/or its metrics file), live progress
    compare.py   align each metric on step across replicas, cell-by-cell tolerance test
    evidence.py  recommendations derived from how the replicas disagree; seeds; env audit
    card.py      determinism_card.json: one schema for replicas, --runs and doctor
    check.py     check_command / check_runs: the above end to end, plus the figure

Names are resolved on first use (PEP 562), so `import rldk_engine.determinism` stays cheap
and the replicas start before numpy is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "CARD_NAME": "card", "FIGURE_NAME": "card", "build_card": "card", "write_card": "card",
    "DeterminismResult": "check", "check_command": "check", "check_runs": "check",
    "summary_line": "check",
    "DeterminismError": "base",
    "MetricComparison": "compare", "compare_metric": "compare", "run_from_records": "compare",
    "METRICS_ENV": "replicas", "METRICS_FILE_NAME": "replicas", "LiveDiff": "replicas",
    "ReplicaOutcome": "replicas", "ReplicaProgress": "replicas",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'rldk_engine.determinism' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rldk_engine.determinism.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
