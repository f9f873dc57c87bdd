"""A metric's whole history as (step, value) arrays, and min/max downsampling to a width.

Charts never get the raw history: `columns()` cuts the visible step range into one bucket
per dot column and keeps each bucket's min and max (spikes stay visible), so drawing a
1,000,000-step series costs a few vectorised passes, not a million Python objects.
No Textual import: the reader thread fills these, the UI thread only downsamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Past this many points a series folds its oldest half 4:1 into (min, max) pairs, so memory
# stays bounded on endless runs while every spike still shows.
MAX_POINTS = 4_000_000


class SeriesStore:
    """Append-only (step, value) arrays that grow by doubling. NaN/inf stay as data."""

    def __init__(self, capacity: int = 1024) -> None:
        self._steps = np.empty(capacity, dtype=np.float64)
        self._values = np.empty(capacity, dtype=np.float64)
        self.size = 0
        self.current = float("nan")
        self.low = float("inf")
        self.high = float("-inf")
        self.count = 0  # values ever appended (folding keeps the extremes, not the count)
        self.in_order = True  # steps never went backwards: binary search applies
        self.non_finite_steps: list[float] = []  # a bounded sample, for chart markers
        self._sorted_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def extend(self, steps: list[float] | np.ndarray, values: list[float] | np.ndarray) -> None:
        new_steps = np.asarray(steps, dtype=np.float64)
        new_values = np.asarray(values, dtype=np.float64)
        n = len(new_values)
        if n == 0:
            return
        self.count += n
        self.current = float(new_values[-1])
        finite = np.isfinite(new_values)
        if finite.any():
            kept = new_values[finite]
            self.low = min(self.low, float(kept.min()))
            self.high = max(self.high, float(kept.max()))
        if not finite.all() and len(self.non_finite_steps) < 1000:
            self.non_finite_steps.extend(new_steps[~finite][:1000].tolist())
        if self.size and new_steps[0] < self._steps[self.size - 1]:
            self.in_order = False
        if n > 1 and self.in_order and bool((np.diff(new_steps) < 0).any()):
            self.in_order = False
        self._reserve(self.size + n)
        self._steps[self.size:self.size + n] = new_steps
        self._values[self.size:self.size + n] = new_values
        self.size += n
        if self.size > MAX_POINTS:
            self._fold()

    def _reserve(self, needed: int) -> None:
        if needed <= len(self._values):
            return
        capacity = max(needed, 2 * len(self._values))
        for name in ("_steps", "_values"):
            old = getattr(self, name)
            grown = np.empty(capacity, dtype=np.float64)
            grown[:self.size] = old[:self.size]
            setattr(self, name, grown)

    def _fold(self) -> None:
        """Oldest half, in groups of 4 points, becomes each group's (min, max)."""
        half = (self.size // 2) // 4 * 4
        steps = self._steps[:half].reshape(-1, 4)
        values = self._values[:half].reshape(-1, 4)
        with np.errstate(invalid="ignore"):
            low = np.nanmin(np.where(np.isfinite(values), values, np.nan), axis=1)
            high = np.nanmax(np.where(np.isfinite(values), values, np.nan), axis=1)
        folded_steps = np.stack([steps[:, 0], steps[:, 3]], axis=1).ravel()
        folded_values = np.stack([low, high], axis=1).ravel()
        rest = self.size - half
        out = len(folded_values)
        # New arrays, never in place: the UI thread may be drawing from a view of the old.
        capacity = len(self._values)
        new_steps = np.empty(capacity, dtype=np.float64)
        new_values = np.empty(capacity, dtype=np.float64)
        new_steps[:out], new_values[:out] = folded_steps, folded_values
        new_steps[out:out + rest] = self._steps[half:self.size]
        new_values[out:out + rest] = self._values[half:self.size]
        self._steps, self._values = new_steps, new_values
        self.size = out + rest
        self._sorted_cache = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) ordered by step; views, valid until the next extend."""
        steps, values = self._steps[:self.size], self._values[:self.size]
        if self.in_order:
            return steps, values
        cache = self._sorted_cache
        if cache is None or cache[0] != self.size:
            order = np.argsort(steps, kind="stable")
            cache = self._sorted_cache = (self.size, steps[order], values[order])
        return cache[1], cache[2]

    def step_range(self) -> tuple[float, float] | None:
        if not self.size:
            return None
        steps, _ = self.arrays()
        return float(steps[0]), float(steps[-1])

    def snapshot(self) -> SeriesView:
        """A frozen copy-free view for the UI thread (arrays are only ever appended to,
        a regrow makes new arrays, so the slice stays valid)."""
        steps, values = self.arrays()
        return SeriesView(steps, values, self.current, self.low, self.high, self.count,
                          tuple(self.non_finite_steps[:200]))


@dataclass(frozen=True)
class SeriesView:
    steps: np.ndarray
    values: np.ndarray
    current: float
    low: float
    high: float
    count: int
    non_finite_steps: tuple[float, ...] = ()


@dataclass(frozen=True)
class Columns:
    """One bucket per dot column over [start, end]: min, max (NaN: no finite point)."""

    start: float
    end: float
    low: np.ndarray
    high: np.ndarray


def columns(steps: np.ndarray, values: np.ndarray, start: float, end: float,
            width: int, log: bool = False) -> Columns:
    """Min/max of the finite values per column of the step range [start, end] (steps
    sorted). Buckets are by step, not by position, so runs logged at different
    intervals line up on the same axis (a baseline aligned by step)."""
    width = max(1, width)
    low = np.full(width, np.nan)
    high = np.full(width, np.nan)
    if len(steps) == 0 or end < start:
        return Columns(start, end, low, high)
    first = int(np.searchsorted(steps, start, side="left"))
    last = int(np.searchsorted(steps, end, side="right"))
    if last <= first:
        return Columns(start, end, low, high)
    span = values[first:last]
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            span = np.log10(np.where(span > 0, span, np.nan))
    if np.isinf(span).any():  # one pass; only a run that logged inf pays for the copy
        span = np.where(np.isinf(span), np.nan, span)
    # Column edges found by binary search over the sorted steps: no per-point index array,
    # so a million points cost two reduceat passes and a few hundred searches.
    edges = start + (end - start) * np.arange(width) / width if end > start else \
        np.full(width, start)
    starts = np.searchsorted(steps[first:last], edges, side="left")
    starts[0] = 0
    filled = np.flatnonzero(np.diff(np.append(starts, last - first)) > 0)
    if len(filled) == 0:
        return Columns(start, end, low, high)
    with np.errstate(invalid="ignore"):
        low[filled] = np.fmin.reduceat(span, starts[filled])
        high[filled] = np.fmax.reduceat(span, starts[filled])
    return Columns(start, end, low, high)
