"""Determinism: run replicas of one command, compare their metrics, write the evidence card.

    replicas.py  run N copies side by side (process groups, RLDK_REPLICA, RLDK_METRICS_PATH),
                 read each one's metrics (stdout and/or its metrics file), live progress
    compare.py   align each metric on step across replicas, cell-by-cell tolerance test
    evidence.py  recommendations derived from how the replicas disagree; seeds; env audit
    card.py      determinism_card.json: one schema for replicas, --runs and doctor
    check.py     check_command / check_runs: the above end to end, plus the figure
"""

from rldk_engine.determinism.card import CARD_NAME, FIGURE_NAME, build_card, write_card
from rldk_engine.determinism.check import (
    DeterminismResult,
    check_command,
    check_runs,
    summary_line,
)
from rldk_engine.determinism.compare import (
    DeterminismError,
    MetricComparison,
    compare_metric,
    run_from_records,
)
from rldk_engine.determinism.replicas import (
    METRICS_ENV,
    METRICS_FILE_NAME,
    LiveDiff,
    ReplicaOutcome,
    ReplicaProgress,
)

__all__ = [
    "CARD_NAME", "FIGURE_NAME", "METRICS_ENV", "METRICS_FILE_NAME", "DeterminismError",
    "DeterminismResult", "LiveDiff", "MetricComparison", "ReplicaOutcome", "ReplicaProgress",
    "build_card", "check_command", "check_runs", "compare_metric", "run_from_records",
    "summary_line", "write_card",
]
