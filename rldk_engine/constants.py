"""Shared numeric and ordering constants (standard library only: the live hot path imports it)."""

from __future__ import annotations

import math

# Severity levels, mildest first. Their meaning (README "Severity"):
#   info     notable but normal: nothing to do
#   warning  a human should look at the run
#   critical the run is wasting compute now: stop-worthy
SEVERITY_ORDER: tuple[str, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITY_ORDER)}

# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826

# The difference of two independent points has sqrt(2) times their noise, so
# NOISE_SIGMA * MAD(first differences) estimates the point noise of a series; a slow
# trend barely moves it (used by the detectors and by analyze).
NOISE_SIGMA = MAD_TO_SIGMA / math.sqrt(2.0)


def worse(a: str | None, b: str | None) -> str | None:
    """The worse of two severities (None = nothing found)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b
