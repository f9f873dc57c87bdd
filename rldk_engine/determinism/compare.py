"""Compare replicas: align each metric on step and test every cell against the tolerance.

A replica's metrics are an `rldk_engine.ingest.run.Run` (the one offline run type):
columns are NaN where a value is missing *or* logged as NaN, and `Run.nonfinite` tells the
two apart, because a logged NaN is data that must match the other replicas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rldk_engine.determinism.base import CLOCK_KEYS, DeterminismError, as_float
from rldk_engine.ingest.metrics import CANONICAL, canonical_name
from rldk_engine.ingest.run import Run

if TYPE_CHECKING:
    from rldk_engine.ingest.parse import Record

# A divergence that ends this many times larger than where it started "grows".
GROWTH_FACTOR = 10.0


# ----------------------------------------------------------------------------- runs


def empty_run(source: str = "<none>") -> Run:
    return Run(run_id="replica", source=source, format="none",
               steps=np.zeros(0, dtype=np.int64), columns={})


def run_from_records(records: Iterable[Record], source: str = "<stdout>") -> Run:
    """Parsed records (`.step`, `.metrics`) -> Run; a repeated step merges, later values
    win; a non-finite value is kept as logged (`Run.nonfinite`)."""
    by_step: dict[int, dict[str, float]] = {}
    for record in records:
        by_step.setdefault(int(record.step), {}).update(record.metrics)
    steps = np.array(sorted(by_step), dtype=np.int64)
    names = sorted({name for row in by_step.values() for name in row})
    columns = {name: np.full(steps.size, np.nan) for name in names}
    nonfinite: dict[str, list[int]] = {}
    for i, step in enumerate(steps.tolist()):
        for name, value in by_step[step].items():
            number = as_float(value)
            columns[name][i] = number
            if not math.isfinite(number):
                nonfinite.setdefault(name, []).append(step)
    return Run(
        run_id="replica", source=source, format="records", steps=steps, columns=columns,
        nonfinite={name: np.asarray(s, dtype=np.int64) for name, s in nonfinite.items()},
    )


def logged_mask(run: Run, name: str) -> np.ndarray:
    """Cells the run actually wrote for `name` (a logged NaN/inf counts)."""
    column = run.columns.get(name)
    if column is None:
        return np.zeros(run.n_steps, dtype=bool)
    mask = ~np.isnan(column)
    bad_steps = run.nonfinite.get(name)
    if bad_steps is not None and len(bad_steps):
        mask |= np.isin(run.steps, np.asarray(bad_steps, dtype=np.int64))
    return mask


def logged_metrics(run: Run) -> list[str]:
    """Metrics with at least one logged cell."""
    return [name for name in run.columns if logged_mask(run, name).any()]


# ----------------------------------------------------------------------------- compare


@dataclass
class MetricComparison:
    metric: str
    steps: np.ndarray  # steps every replica logged this metric at (compared cells)
    spread: np.ndarray  # per compared step: max across-replica abs diff (inf: NaN vs number)
    mismatch: np.ndarray  # per compared step: beyond tolerance
    max_rel_diff: float
    missing_steps: dict[int, int]  # replica -> steps others logged this metric at but it did not
    deviating_replicas: set[int]

    @property
    def n_mismatches(self) -> int:
        return int(self.mismatch.sum())

    @property
    def max_abs_diff(self) -> float:
        return float(self.spread.max()) if self.spread.size else 0.0

    @property
    def first_divergence(self) -> int | None:
        hits = np.flatnonzero(self.mismatch)
        return int(self.steps[hits[0]]) if hits.size else None

    @property
    def first_divergence_index(self) -> int | None:
        hits = np.flatnonzero(self.mismatch)
        return int(hits[0]) if hits.size else None

    @property
    def grows(self) -> bool:
        """Late tiny differences that amplify: the signature of nondeterministic kernels."""
        start = self.first_divergence_index
        if start is None:
            return False
        diverged = self.spread[start:]
        finite = diverged[np.isfinite(diverged)]
        if finite.size < 2 or finite[0] <= 0:
            return bool(np.isinf(diverged).any())
        return bool(finite[finite.size // 2:].max() >= GROWTH_FACTOR * finite[0])


def compare_metric(
    metric: str, runs: Sequence[Run], replica_ids: Sequence[int], atol: float, rtol: float
) -> MetricComparison:
    """Align `metric` on step across replicas and test every shared step against
    |spread| <= atol + rtol * max|value|. NaN equals NaN, inf equals the same inf,
    anything else non-finite against a number is a mismatch (spread inf)."""
    logged_steps = [run.steps[logged_mask(run, metric)] for run in runs]
    union = np.unique(np.concatenate(logged_steps)) if logged_steps else np.zeros(0, np.int64)
    shared = union
    for steps in logged_steps:
        shared = np.intersect1d(shared, steps, assume_unique=True)
    missing = {
        rid: int(union.size - steps.size) for rid, steps in zip(replica_ids, logged_steps, strict=True)
        if steps.size < union.size
    }
    matrix = np.empty((len(runs), shared.size))
    for row, run in enumerate(runs):
        matrix[row] = run.columns[metric][np.searchsorted(run.steps, shared)] if shared.size else []
    spread, mismatch, rel = _cell_spread(matrix, atol, rtol)
    return MetricComparison(
        metric=metric,
        steps=shared,
        spread=spread,
        mismatch=mismatch,
        max_rel_diff=rel,
        missing_steps=missing,
        deviating_replicas=_deviating_replicas(matrix, mismatch, replica_ids, atol, rtol),
    )


def _cell_spread(matrix: np.ndarray, atol: float, rtol: float) -> tuple[np.ndarray, np.ndarray, float]:
    n_cols = matrix.shape[1]
    if n_cols == 0:
        return np.zeros(0), np.zeros(0, bool), 0.0
    finite = np.isfinite(matrix)
    all_finite = finite.all(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.where(all_finite, np.nanmax(np.where(finite, matrix, -np.inf), axis=0)
                          - np.nanmin(np.where(finite, matrix, np.inf), axis=0), np.inf)
    # Non-finite columns: equal only when every replica logged the very same value.
    for col in np.flatnonzero(~all_finite):
        column = matrix[:, col]
        same_nan = np.isnan(column).all()
        same_inf = np.isinf(column).all() and np.unique(column).size == 1
        spread[col] = 0.0 if (same_nan or same_inf) else np.inf
    scale = np.where(all_finite, np.abs(np.where(finite, matrix, 0.0)).max(axis=0), 0.0)
    mismatch = spread > atol + rtol * scale
    finite_spread = np.where(np.isfinite(spread), spread, 0.0)
    rel = np.where(mismatch & np.isfinite(spread), finite_spread / np.maximum(scale, 1e-300), 0.0)
    max_rel = math.inf if (mismatch & ~np.isfinite(spread)).any() else float(rel.max(initial=0.0))
    return spread, mismatch, max_rel


def _deviating_replicas(
    matrix: np.ndarray, mismatch: np.ndarray, replica_ids: Sequence[int], atol: float, rtol: float
) -> set[int]:
    """Replicas that stand apart from the median at the mismatched cells."""
    out: set[int] = set()
    for col in np.flatnonzero(mismatch):
        column = matrix[:, col]
        if not np.isfinite(column).all():
            # NaN and inf alike: the minority side (non-finite or finite) stands apart
            bad_rows = ~np.isfinite(column)
            odd = bad_rows if bad_rows.sum() * 2 < column.size else ~bad_rows
        else:
            median = float(np.median(column))
            odd = np.abs(column - median) > atol + rtol * abs(median)
        out.update(replica_ids[int(row)] for row in np.flatnonzero(odd))
    return out


def culprit_order(comparisons: Sequence[MetricComparison]) -> list[str]:
    """Diverging metrics, worst first: largest relative gap, then most cells, then earliest."""
    diverged = [c for c in comparisons if c.n_mismatches]
    diverged.sort(key=lambda c: (-c.max_rel_diff, -c.n_mismatches, c.first_divergence or 0))
    return [c.metric for c in diverged]


# ----------------------------------------------------------------------------- what to compare


def default_compare(runs: Sequence[Run]) -> list[str]:
    """Without --compare: the metrics every replica logged, canonical ones if any, never clocks."""
    common: set[str] | None = None
    for run in runs:
        names = set(logged_metrics(run))
        common = names if common is None else common & names
    common = {name for name in (common or set()) if name not in CLOCK_KEYS}
    canonical = [name for name in CANONICAL if name in common]
    return canonical or sorted(common)


def resolve_compare(requested: Sequence[str], runs: Sequence[Run]) -> list[str]:
    """Canonicalise requested names (kl matches objective/kl); a metric no replica logged
    is an error, never silently dropped."""
    if not requested:
        shared = default_compare(runs)
        if not shared:
            raise DeterminismError("no metric is logged by every replica; pass --compare")
        return shared
    seen = {name for run in runs for name in logged_metrics(run)}
    names: list[str] = []
    for raw in requested:
        name = canonical_name(raw.strip())
        if name not in names:
            names.append(name)
    unknown = [name for name in names if name not in seen]
    if unknown:
        shown = ", ".join(sorted(seen)[:12]) or "none"
        raise DeterminismError(
            f"--compare {','.join(unknown)}: no replica logged "
            f"{'this metric' if len(unknown) == 1 else 'these metrics'} (logged: {shown})"
        )
    return names
