"""Multi-rank live logs: the same step printed by rank 0..N becomes one observation.

`LineParser` tags each `Record` with its origin (`[rank3]:`, `(main_task pid=12)`).
`RankMerger` sits between the parser and the rules: the first origin to report a step
passes through; another origin reporting the same step only contributes the metrics not
seen yet for it, so a streak rule ("5 consecutive steps") never counts one step N times.
Offline, `rldk_engine.ingest.run` merges rows by step already.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from rldk_engine.ingest.parse import Record

RECENT_STEPS = 256  # ranks drift apart by a few steps at most; older steps are forgotten


@dataclass
class _StepSeen:
    origins: set[str | None] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)


class RankMerger:
    """`merge(record)` -> the record to use, trimmed to new metrics, or None if a duplicate."""

    def __init__(self, recent: int = RECENT_STEPS):
        self.recent = recent
        self._seen: OrderedDict[int, _StepSeen] = OrderedDict()
        self.n_merged = 0  # rows from another origin that were dropped or trimmed

    def merge(self, record: Record) -> Record | None:
        if record.origin is None and not self._seen:
            return record  # no rank or actor prefix seen so far: a single stream, nothing to merge
        seen = self._seen.get(record.step)
        if seen is None:
            seen = self._seen[record.step] = _StepSeen()
            if len(self._seen) > self.recent:
                self._seen.popitem(last=False)
        elif record.origin not in seen.origins:
            # another rank's copy of a step already observed: keep only what is new
            self.n_merged += 1
            fresh = {k: v for k, v in record.metrics.items() if k not in seen.metrics}
            seen.origins.add(record.origin)
            if not fresh:
                return None
            seen.metrics.update(fresh)
            return Record(record.step, fresh, record.origin)
        seen.origins.add(record.origin)
        seen.metrics.update(record.metrics)
        return record
