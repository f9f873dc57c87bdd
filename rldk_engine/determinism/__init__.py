"""Determinism: run replicas of one command, compare their metrics, write the evidence card."""

from rldk_engine.determinism.core import (
    CARD_NAME,
    FIGURE_NAME,
    DeterminismError,
    ReplicaProgress,
    _LiveDiff,
    check_command,
    check_runs,
    compare_metric,
    series_from_records,
    summary_line,
)

__all__ = [
    "CARD_NAME", "FIGURE_NAME", "DeterminismError", "ReplicaProgress", "_LiveDiff",
    "check_command", "check_runs", "compare_metric", "series_from_records", "summary_line",
]
