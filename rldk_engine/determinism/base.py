"""Names every determinism module shares. Standard library only: the replicas start
before numpy is imported (start-up time is part of the check's wall time)."""

from __future__ import annotations

import math

# Keys that differ between replicas by nature and are never compared by default.
CLOCK_KEYS = frozenset({"time", "timestamp", "_timestamp", "_runtime", "wall_time", "elapsed"})


class DeterminismError(Exception):
    """The check could not run (exit 2); `str()` is the one-line reason."""


def as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # a non-numeric value is data that matches nothing numeric


def spread_of(values: list[float]) -> float:
    """max - min with compare_metric's rules: NaN equals NaN, the same inf equals itself,
    any other non-finite mix is infinitely apart (used by the live estimate)."""
    if all(math.isfinite(v) for v in values):
        return max(values) - min(values)
    if all(math.isnan(v) for v in values) or len(set(values)) == 1:
        return 0.0
    return math.inf
