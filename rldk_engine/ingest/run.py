"""The offline run: numpy columns per canonical metric, aligned on step.

`ColumnBuilder` takes raw rows (source keys, raw values) as fast as a reader can produce
them: rows are bucketed by their key schema, so the alias mapping and the float
conversion happen once per schema and per chunk, not once per value.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from rldk_engine.ingest.metrics import CANONICAL, canonical_map, is_canonical
from rldk_engine.ingest.parse import MAX_STEP, flatten_json_row, number_from_value

MAX_ERRORS = 100
# Distinct source keys one run may hold. Columns are dense (one float per row per key),
# so a JSONL with a new key on every row would otherwise grow keys x rows (3.5 GB from a
# 598 KB file); keys past the cap are dropped and reported in the run's errors.
MAX_KEYS = 1024


@dataclass
class Run:
    run_id: str
    source: str
    format: str
    steps: np.ndarray  # int64, strictly increasing
    columns: dict[str, np.ndarray]  # float64, NaN where missing
    nonfinite: dict[str, np.ndarray] = field(default_factory=dict)  # steps of logged NaN/inf/None
    errors: list[str] = field(default_factory=list)
    n_skipped: int = 0

    @property
    def n_steps(self) -> int:
        return int(self.steps.size)

    @property
    def metrics(self) -> list[str]:
        """Canonical metrics first (SPEC order), then unknown keys sorted."""
        return self.canonical_metrics + self.unknown_keys

    @property
    def canonical_metrics(self) -> list[str]:
        return [name for name in CANONICAL if name in self.columns]

    @property
    def unknown_keys(self) -> list[str]:
        return sorted(name for name in self.columns if not is_canonical(name))

    def get(self, name: str) -> np.ndarray | None:
        return self.columns.get(name)

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, object]],
        run_id: str = "run",
        source: str = "<memory>",
        format: str = "records",
    ) -> Run:
        """Build a run from dict rows (source or canonical keys), e.g. in tests."""
        builder = ColumnBuilder()
        for row in records:
            builder.add(dict(row))
        return builder.build(run_id=run_id, source=source, format=format)


class _Bucket:
    """Rows sharing one key schema: per-column growable buffers and their global row ids.

    Each column grows in place (array.array reallocates geometrically, large blocks move
    with mremap), and `build` wraps the buffer without copying: peak memory stays near
    one copy of the data, not two.
    """

    __slots__ = ("keys", "values", "masks", "rows")

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.values = [array("d") for _ in keys]
        self.masks: list[list[tuple[int, np.ndarray | None]]] = [[] for _ in keys]  # None: all present
        self.rows = array("q")

    def append(self, matrix: np.ndarray, mask: np.ndarray | None) -> None:
        for j, column in enumerate(self.values):
            column.frombytes(matrix[j].tobytes())
            self.masks[j].append((matrix.shape[1], None if mask is None or mask[j].all() else mask[j].copy()))

    def take_column(self, j: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Column j (handed over by the bucket, no copy), with its mask or None."""
        column = np.frombuffer(self.values[j], dtype=np.float64)
        masks = self.masks[j]
        mask = None
        if any(m is not None for _, m in masks):
            mask = np.concatenate([np.ones(size, dtype=bool) if m is None else m for size, m in masks])
        self.values[j], self.masks[j] = array("d"), []
        return column, mask


class ColumnBuilder:
    """Collects raw dict rows; converts them in chunks, grouped by key schema.

    Per row only a list append happens in Python (`extend` for a whole chunk); schema
    grouping and float conversion run over whole chunks through C-level `map`/numpy calls.
    """

    CHUNK_ROWS = 2048

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self.pending: list[dict] = []
        self.n_rows = 0  # rows already flushed into buckets
        self.errors: list[str] = []
        self.n_skipped = 0
        self._keys: set[str] = set()
        self.n_dropped_keys = 0
        self._dropped_examples: list[str] = []

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.CHUNK_ROWS:
            self.flush()

    def extend(self, rows: list[dict]) -> None:
        self.pending.extend(rows)
        if len(self.pending) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        chunk, self.pending = self.pending, []
        if not chunk:
            return
        start = self.n_rows
        self.n_rows += len(chunk)
        groups = _group_by_schema(chunk, start)
        if any("data" in keys or "metrics" in keys for keys in groups):
            groups = _group_by_schema(list(map(flatten_json_row, chunk)), start)
        for keys, (ids, rows) in list(groups.items()):
            if keys not in self._buckets and not self._keys.issuperset(keys):
                kept = self._admit(keys)
                if len(kept) < len(keys):
                    rows = [{k: row[k] for k in kept} for row in rows]
                    keys = tuple(kept)
                    if not keys:
                        continue
            bucket = self._buckets.get(keys)
            if bucket is None:
                bucket = self._buckets[keys] = _Bucket(keys)
            bucket.append(*_to_matrix(rows, len(keys)))
            bucket.rows.extend(ids)

    def _admit(self, keys: tuple[str, ...]) -> list[str]:
        """The keys of a new schema that fit under MAX_KEYS; the others are counted."""
        kept = []
        for key in keys:
            if key in self._keys:
                kept.append(key)
            elif len(self._keys) < MAX_KEYS or key == "step" or key in ("data", "metrics"):
                self._keys.add(key)
                kept.append(key)
            else:
                self.n_dropped_keys += 1
                if len(self._dropped_examples) < 3:
                    self._dropped_examples.append(key)
        return kept

    def skip(self, message: str) -> None:
        """Count a rejected line; keep the first MAX_ERRORS messages."""
        self.n_skipped += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def build(self, run_id: str, source: str, format: str) -> Run:
        self.flush()
        if self.n_dropped_keys:
            examples = ", ".join(repr(k[:40]) for k in self._dropped_examples)
            self.errors.insert(0, f"more than {MAX_KEYS} distinct keys: {self.n_dropped_keys} key "
                               f"occurrences beyond the cap dropped (first: {examples})")
        n = self.n_rows
        values: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for bucket in self._buckets.values():
            rows = np.frombuffer(bucket.rows, dtype=np.int64)
            whole = rows.size == n  # one schema for the whole run: rows are 0..n-1
            for j, (name, negate) in enumerate(canonical_map(bucket.keys)):
                col, col_ok = bucket.take_column(j)
                if negate:
                    np.negative(col, out=col)
                if col_ok is None and whole:
                    values[name] = col
                    present[name] = np.ones(n, dtype=bool)
                    continue
                if col_ok is None:
                    col_ok = np.ones(rows.size, dtype=bool)
                elif not col_ok.any():
                    continue
                if name not in values:
                    values[name] = np.full(n, np.nan)
                    present[name] = np.zeros(n, dtype=bool)
                sel = rows[col_ok]
                values[name][sel] = col[col_ok]
                present[name][sel] = True
        steps = _infer_steps(values.pop("step", np.full(n, np.nan)), present.pop("step", None))
        steps, values, present = _merge_steps(steps, values, present)
        _derive_kl(values, present)
        nonfinite = {
            name: steps[present[name] & ~np.isfinite(col)]
            for name, col in values.items()
            if not np.isfinite(col[present[name]]).all()
        }
        return Run(
            run_id=run_id,
            source=source,
            format=format,
            steps=steps,
            columns=values,
            nonfinite=nonfinite,
            errors=list(self.errors),
            n_skipped=self.n_skipped,
        )


def _group_by_schema(chunk: list[dict], start: int) -> dict[tuple[str, ...], tuple]:
    """{key schema: (global row ids, rows)} for one chunk."""
    first = list(chunk[0])
    # One schema for the whole chunk (the usual case), checked exactly and cheaply: the
    # keys of all rows laid end to end equal the first row's keys repeated. Keys within a
    # row are unique, so this holds only if every row has the same keys in the same order.
    if list(chain.from_iterable(chunk)) == first * len(chunk):
        return {tuple(first): (range(start, start + len(chunk)), chunk)}
    groups: dict[tuple[str, ...], tuple[list[int], list[dict]]] = {}
    for offset, row in enumerate(chunk):
        ids, rows = groups.setdefault(tuple(row), ([], []))
        ids.append(start + offset)
        rows.append(row)
    return groups


def _to_matrix(rows: list[dict], width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Dict rows of one schema -> (float matrix, present mask or None when all present).

    Fast path: one `np.fromiter` over all values (plain numbers only). Rows holding
    None, strings or nested values go column by column, element-wise only where needed.
    """
    try:
        flat = np.fromiter(chain.from_iterable(map(dict.values, rows)), np.float64, count=len(rows) * width)
        # a (width, rows) view: the bucket copies each metric's row out once
        return flat.reshape(len(rows), width).T, None
    except (ValueError, TypeError, OverflowError):
        pass
    tuples = [tuple(row.values()) for row in rows]
    mat = np.full((width, len(tuples)), np.nan)
    ok = np.ones((width, len(tuples)), dtype=bool)
    for j in range(width):
        column = [values[j] for values in tuples]
        try:
            mat[j] = np.array(column, dtype=np.float64)
            continue
        except (ValueError, TypeError, OverflowError):
            pass
        for i, raw in enumerate(column):  # only a column holding non-numbers gets here
            number = number_from_value(raw)
            if number is None:
                ok[j, i] = False
            else:
                mat[j, i] = number
    return mat, ok


def _infer_steps(raw: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    """Rows without a usable step get the previous step + 1 (the first ones 0, 1, ...)."""
    n = raw.size
    # a step must fit int64; 1e30 or NaN in the step column is treated as no step
    known = (np.abs(raw) < MAX_STEP) if present is not None else np.zeros(n, dtype=bool)
    if known.all():
        return raw.astype(np.int64)
    index = np.arange(n)
    last = np.maximum.accumulate(np.where(known, index, -1))
    base = np.where(last >= 0, raw[np.maximum(last, 0)], -1.0)
    inferred = base + (index - last)
    return np.where(known, raw, inferred).astype(np.int64)


def _derive_kl(values: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
    """SPEC: the per-token `kl` is kl_seq / response_len_mean when only the per-sequence
    KL (TRL PPO/RLOO `objective/kl`) is logged; rows where it cannot be derived stay NaN."""
    if "kl" in values or "kl_seq" not in values or "response_len_mean" not in values:
        return
    length = values["response_len_mean"]
    usable = present["kl_seq"] & present["response_len_mean"] & (length > 0) & np.isfinite(length)
    if not usable.any():
        return
    kl = np.full(length.size, np.nan)
    np.divide(values["kl_seq"], length, out=kl, where=usable)
    values["kl"] = kl
    present["kl"] = usable


def _merge_steps(
    steps: np.ndarray, values: dict[str, np.ndarray], present: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sort by step and merge rows of the same step (the last logged value wins)."""
    if steps.size < 2 or bool((np.diff(steps) > 0).all()):
        return steps, values, present
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    unique = np.unique(ordered)
    group = np.searchsorted(unique, ordered)
    merged_values: dict[str, np.ndarray] = {}
    merged_present: dict[str, np.ndarray] = {}
    for name, col in values.items():
        mask = present[name][order]
        groups = group[mask]
        picked = col[order][mask]
        # last occurrence of each group: first occurrence in the reversed sequence
        _, first_in_reversed = np.unique(groups[::-1], return_index=True)
        last = groups.size - 1 - first_in_reversed
        out = np.full(unique.size, np.nan)
        out_present = np.zeros(unique.size, dtype=bool)
        out[groups[last]] = picked[last]
        out_present[groups[last]] = True
        merged_values[name] = out
        merged_present[name] = out_present
    return unique.astype(np.int64), merged_values, merged_present
