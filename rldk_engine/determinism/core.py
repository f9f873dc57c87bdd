"""Determinism check: run N replicas of a command side by side and compare their metrics.

Each replica runs in its own working folder (`DIR/replica_i/`) with `RLDK_REPLICA=i`,
in its own process group. Metrics come from its stdout through the shared
`rldk_engine.ingest.parse.LineParser` (the same ingest as the monitor), or from a per-replica
metrics file read with `rldk_engine.ingest.readers.read_run`. Series are aligned on step and
compared cell by cell (step x metric) with an absolute + relative tolerance; the result
is `DIR/determinism_card.json` (SPEC "Determinism") and `DIR/determinism_mismatch.png`.
Recommendations are derived from the evidence (when and how the replicas diverge),
never a fixed list.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rldk_engine import __version__
from rldk_engine.ingest.metrics import CANONICAL, canonical_name

CARD_NAME = "determinism_card.json"
FIGURE_NAME = "determinism_mismatch.png"
# Keys that differ between replicas by nature and are never compared by default.
CLOCK_KEYS = frozenset({"time", "timestamp", "_timestamp", "_runtime", "wall_time", "elapsed"})
# A divergence that ends this many times larger than where it started "grows".
GROWTH_FACTOR = 10.0
STDERR_TAIL_LINES = 5
# After a replica exits, how long its stdout may stay open (held by a leftover background
# process of its group) before that group is ended.
LEFTOVER_GRACE_S = 1.0


class DeterminismError(Exception):
    """The check could not run (exit 2); `str()` is the one-line reason."""


# ----------------------------------------------------------------------------- data


@dataclass
class Series:
    """One replica's metrics aligned on step: values are NaN where missing or logged NaN;
    `logged` says which cells the replica actually wrote (a logged NaN is data)."""

    steps: np.ndarray
    values: dict[str, np.ndarray]
    logged: dict[str, np.ndarray]

    @property
    def n_steps(self) -> int:
        return int(self.steps.size)

    @property
    def metrics(self) -> list[str]:
        return [name for name, mask in self.logged.items() if mask.any()]

    @classmethod
    def empty(cls) -> Series:
        return cls(np.zeros(0, dtype=np.int64), {}, {})


def series_from_records(records: Iterable) -> Series:
    """Records (step, metrics) -> Series; a repeated step merges, later values win."""
    by_step: dict[int, dict[str, float]] = {}
    for record in records:
        by_step.setdefault(int(record.step), {}).update(record.metrics)
    steps = np.array(sorted(by_step), dtype=np.int64)
    names = sorted({name for row in by_step.values() for name in row})
    values = {name: np.full(steps.size, np.nan) for name in names}
    logged = {name: np.zeros(steps.size, dtype=bool) for name in names}
    for i, step in enumerate(steps.tolist()):
        for name, value in by_step[step].items():
            values[name][i] = _as_float(value)
            logged[name][i] = True
    return Series(steps, values, logged)


def series_from_run(run) -> Series:
    """A `rldk_engine.ingest.run.Run` -> Series (a logged non-finite value counts as logged)."""
    steps = np.asarray(run.steps, dtype=np.int64)
    values: dict[str, np.ndarray] = {}
    logged: dict[str, np.ndarray] = {}
    nonfinite = getattr(run, "nonfinite", {}) or {}
    for name, column in run.columns.items():
        column = np.asarray(column, dtype=np.float64)
        mask = ~np.isnan(column)
        if name in nonfinite:
            mask |= np.isin(steps, np.asarray(nonfinite[name], dtype=np.int64))
        values[name] = column
        logged[name] = mask
    return Series(steps, values, logged)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # a non-numeric value is data that matches nothing numeric


@dataclass
class ReplicaOutcome:
    index: int
    workdir: str | None
    exit_code: int | None
    series: Series
    source: str
    wall_time_s: float = 0.0
    n_lines: int = 0
    n_rejected: int = 0
    error: str | None = None
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def has_metrics(self) -> bool:
        return self.series.n_steps > 0

    @property
    def crashed(self) -> bool:
        return self.exit_code not in (None, 0)


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


# ----------------------------------------------------------------------------- compare


def compare_metric(
    metric: str, series: Sequence[Series], replica_ids: Sequence[int], atol: float, rtol: float
) -> MetricComparison:
    """Align `metric` on step across replicas and test every shared step against
    |spread| <= atol + rtol * max|value|. NaN equals NaN, inf equals the same inf,
    anything else non-finite against a number is a mismatch (spread inf)."""
    logged_steps = [s.steps[s.logged.get(metric, np.zeros(s.n_steps, bool))] for s in series]
    union = np.unique(np.concatenate(logged_steps)) if logged_steps else np.zeros(0, np.int64)
    shared = union
    for steps in logged_steps:
        shared = np.intersect1d(shared, steps, assume_unique=True)
    missing = {
        rid: int(union.size - steps.size) for rid, steps in zip(replica_ids, logged_steps, strict=True)
        if steps.size < union.size
    }
    matrix = np.empty((len(series), shared.size))
    for row, s in enumerate(series):
        matrix[row] = s.values[metric][np.searchsorted(s.steps, shared)] if shared.size else []
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
    nonfinite_cols = np.flatnonzero(~all_finite)
    for col in nonfinite_cols:
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
        out.update(replica_ids[row] for row in np.flatnonzero(odd))
    return out


def default_compare(outcomes: Sequence[ReplicaOutcome]) -> list[str]:
    """Without --compare: the metrics every replica logged, canonical ones if any, never clocks."""
    common: set[str] | None = None
    for outcome in outcomes:
        names = set(outcome.series.metrics)
        common = names if common is None else common & names
    common = {name for name in (common or set()) if name not in CLOCK_KEYS}
    canonical = [name for name in CANONICAL if name in common]
    return canonical or sorted(common)


def resolve_compare(requested: Sequence[str], outcomes: Sequence[ReplicaOutcome]) -> list[str]:
    """Canonicalise requested names (kl matches objective/kl); a metric no replica logged
    is an error, never silently dropped."""
    if not requested:
        names = default_compare(outcomes)
        if not names:
            raise DeterminismError("no metric is logged by every replica; pass --compare")
        return names
    seen = {name for outcome in outcomes for name in outcome.series.metrics}
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


# ----------------------------------------------------------------------------- evidence


def build_recommendations(
    comparisons: Sequence[MetricComparison],
    outcomes: Sequence[ReplicaOutcome],
    env: dict,
) -> list[str]:
    """Concrete fixes derived from how the replicas disagree; empty when they agree."""
    recs: list[str] = []
    recs += _process_findings(outcomes)
    diverged = [c for c in comparisons if c.n_mismatches]
    early = [c for c in diverged if c.first_divergence_index == 0]
    late = [c for c in diverged if c.first_divergence_index not in (None, 0)]
    if early:
        names = ", ".join(f"{c.metric} (step {c.first_divergence})" for c in early)
        follow = (
            "; " + ", ".join(f"{c.metric} (step {c.first_divergence})" for c in late)
            + " follow later, as a consequence" if late else ""
        )
        recs.append(
            f"Replicas differ from the first compared step in {names}{follow}: an unseeded "
            "RNG. Seed every generator once at start-up: random.seed(s), numpy.random.seed(s) "
            "(or np.random.default_rng(s)), torch.manual_seed(s) and "
            "torch.cuda.manual_seed_all(s); remove random.SystemRandom, os.urandom, "
            "secrets and uuid4 from anything that feeds training; set PYTHONHASHSEED "
            "if set/dict iteration order matters."
        )
    elif late:
        growing = any(c.grows for c in late)
        cpu_note = "" if _has_cuda(env) else (
            " (no CUDA here: the CUDA/cuDNN settings are a no-op on this CPU machine)"
        )
        names = ", ".join(f"{c.metric} (step {c.first_divergence})" for c in late)
        shape = "then the gap grows" if growing else "and the gap stays small"
        recs.append(
            f"Replicas agree at first and diverge later in {names}, {shape}: "
            "nondeterministic kernels or reduction order. Call "
            "torch.use_deterministic_algorithms(True), export "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8, set torch.backends.cudnn.benchmark=False and "
            "torch.backends.cudnn.deterministic=True, and avoid scatter_add/index_add and "
            f"atomics-based ops{cpu_note}; pin thread counts (torch.set_num_threads, "
            "OMP_NUM_THREADS) and keep data-loader workers seeded."
        )
    odd = _odd_replica_out(comparisons, outcomes)
    if odd is not None:
        recs.append(
            f"Only replica {odd} disagrees while the others match each other: look at its "
            f"environment (its working folder replica_{odd}/, host, GPU, library versions, "
            "environment variables, leftover checkpoints or caches it may have loaded)."
        )
    gaps = _coverage_findings(comparisons, outcomes)
    recs += gaps
    return recs


def _process_findings(outcomes: Sequence[ReplicaOutcome]) -> list[str]:
    findings: list[str] = []
    codes = {o.exit_code for o in outcomes if o.exit_code is not None}
    crashed = [o for o in outcomes if o.crashed]
    if crashed:
        detail = "; ".join(
            f"replica {o.index} exited {o.exit_code}"
            + (f" ({o.stderr_tail[-1]})" if o.stderr_tail else "")
            for o in crashed
        )
        findings.append(
            f"Exit codes differ ({sorted(codes)}): {detail}. Fix the crash first; a replica "
            "that dies early cannot be compared past its last step."
        )
    silent = [o.index for o in outcomes if not o.has_metrics]
    if silent:
        findings.append(
            f"Replica(s) {', '.join(map(str, silent))} produced no metrics "
            "(check their stdout.log/stderr.log, or --metrics-file)."
        )
    counts = {o.index: o.series.n_steps for o in outcomes if o.has_metrics}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"replica {i}: {n}" for i, n in counts.items())
        findings.append(
            f"Replicas logged different numbers of steps ({detail}): the run length itself "
            "is not deterministic (early stopping on a noisy metric, a time budget, or a crash)."
        )
    return findings


def _coverage_findings(
    comparisons: Sequence[MetricComparison], outcomes: Sequence[ReplicaOutcome]
) -> list[str]:
    counts = {o.series.n_steps for o in outcomes if o.has_metrics}
    if len(counts) > 1:
        return []  # already reported as different step counts
    out = []
    for c in comparisons:
        if c.missing_steps:
            detail = ", ".join(f"replica {i} misses {n}" for i, n in c.missing_steps.items())
            out.append(f"{c.metric} is logged at different steps across replicas ({detail}).")
    return out


def _odd_replica_out(
    comparisons: Sequence[MetricComparison], outcomes: Sequence[ReplicaOutcome]
) -> int | None:
    compared = [o for o in outcomes if o.has_metrics]
    if len(compared) < 3:
        return None  # with two replicas, neither is "the odd one"
    deviating: set[int] = set()
    for c in comparisons:
        deviating |= c.deviating_replicas
    return next(iter(deviating)) if len(deviating) == 1 else None


def _has_cuda(env: dict) -> bool:
    for key in ("cuda_available", "cuda"):
        value = env.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, dict) and isinstance(value.get("available"), bool):
            return value["available"]
    torch_info = env.get("torch")
    if isinstance(torch_info, dict):
        return bool(torch_info.get("cuda_available", False))
    return False


def audit_env() -> dict:
    """The same environment audit as `doctor` (rldk_engine.forensics.envaudit)."""
    try:
        from rldk_engine.forensics.envaudit import audit_environment
    except ImportError:  # the audit module is optional at import time
        return {"error": "rldk_engine.forensics.envaudit unavailable"}
    try:
        return audit_environment()
    except Exception as exc:  # an audit failure must not hide the check's result
        return {"error": f"environment audit failed: {exc}"}


def seeds_seen(argv: Sequence[str], outcomes: Sequence[ReplicaOutcome]) -> dict:
    """Seeds visible to us: seed flags on the command line, PYTHONHASHSEED, logged seeds."""
    flags = {}
    for i, arg in enumerate(argv):
        key, _, inline = arg.partition("=")
        if "seed" in key.lower() and key.startswith("-"):
            if inline:
                flags[key] = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                flags[key] = argv[i + 1]
            else:
                flags[key] = True
    logged = {}
    for o in outcomes:
        mask = o.series.logged.get("seed")
        if mask is not None and mask.any():
            logged[str(o.index)] = _json_number(float(o.series.values["seed"][mask][0]))
    return {
        "cmd_flags": flags,
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        "logged": logged,
    }


# ----------------------------------------------------------------------------- card


def _json_number(value: float):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def culprit_order(comparisons: Sequence[MetricComparison]) -> list[str]:
    """Diverging metrics, worst first: largest relative gap, then most cells, then earliest."""
    diverged = [c for c in comparisons if c.n_mismatches]
    diverged.sort(key=lambda c: (-c.max_rel_diff, -c.n_mismatches, c.first_divergence or 0))
    return [c.metric for c in diverged]


def build_card(
    *,
    outcomes: Sequence[ReplicaOutcome],
    comparisons: Sequence[MetricComparison],
    compare: Sequence[str],
    atol: float,
    rtol: float,
    env: dict,
    wall_time_s: float,
    argv: Sequence[str] | None,
    error: str | None = None,
) -> dict:
    mismatches = sum(c.n_mismatches for c in comparisons)
    recs = build_recommendations(comparisons, outcomes, env) if error is None else []
    passed = error is None and mismatches == 0 and not recs
    env = dict(env)
    env["seeds_seen"] = seeds_seen(argv or [], outcomes)
    return {
        "tool": "rldk",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passed": passed,
        "replicas": len(outcomes),
        "compare": list(compare),
        "tolerance": atol,
        "rtol": rtol,
        "mismatches": mismatches,
        "max_abs_diff": {c.metric: _json_number(c.max_abs_diff) for c in comparisons},
        "first_divergence": {c.metric: c.first_divergence for c in comparisons},
        "culprit_metrics": culprit_order(comparisons),
        "recommendations": recs,
        "env": env,
        "wall_time_s": round(wall_time_s, 3),
        "exit_codes": [o.exit_code for o in outcomes],
        "replica_steps": [o.series.n_steps for o in outcomes],
        "replica_wall_time_s": [o.wall_time_s for o in outcomes],
        "compared_steps": {c.metric: int(c.steps.size) for c in comparisons},
        "cmd": list(argv) if argv else None,
        "sources": [o.source for o in outcomes],
        "error": error,
    }


def write_card(card: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CARD_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- running


@dataclass
class ReplicaProgress:
    """Shared between a replica's reader thread and the display (plain ints: GIL-safe).

    `latest` is the latest value per metric (the reader swaps in a new dict, never
    mutates the shown one); `max_diff` is the largest across-replica |difference| so far
    over the compared metrics, at the steps every replica has passed (the same number on
    every replica; None until one such step exists). A live estimate: the card decides."""

    state: str = "waiting"  # waiting | running | done | failed
    steps: int = 0
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    latest: dict[str, float] = field(default_factory=dict)
    max_diff: float | None = None
    # (step, metrics) in arrival order, appended by the reader, consumed by _LiveDiff.
    feed: list = field(default_factory=list, repr=False)

    def observe(self, record) -> None:
        """One parsed record (`.step`, `.metrics`) from the replica's reader thread."""
        metrics = {name: _as_float(value) for name, value in record.metrics.items()}
        self.latest = {**self.latest, **metrics}
        self.feed.append((int(record.step), metrics))


class _LiveDiff:
    """Folds the replicas' feeds into `max_diff`, on the thread that calls `on_tick`.

    A step counts once every replica has logged a later step or ended (a step logged in
    several lines is complete by then). Only the steps not yet complete are kept."""

    def __init__(self, progress: Sequence[ReplicaProgress], compare: Sequence[str]) -> None:
        self.progress = progress
        self.compare = [canonical_name(name) for name in compare]
        self.read = [0] * len(progress)
        self.last_step = [-math.inf] * len(progress)
        self.pending: dict[int, list[dict[str, float] | None]] = {}

    def update(self) -> None:
        n = len(self.progress)
        for i, p in enumerate(self.progress):
            new = p.feed[self.read[i]:]  # a slice: safe while the reader appends
            del p.feed[:len(new)]  # consumed: memory stays bounded by the lag
            self.read[i] = 0
            for step, metrics in new:
                cells = self.pending.setdefault(step, [None] * n)
                cells[i] = {**(cells[i] or {}), **metrics}
                self.last_step[i] = max(self.last_step[i], step)
        reached = min(
            math.inf if p.state in ("done", "failed") else self.last_step[i]
            for i, p in enumerate(self.progress)
        )
        for step in sorted(s for s in self.pending if s < reached):
            self._fold(self.pending.pop(step))

    def _fold(self, cells: list[dict[str, float] | None]) -> None:
        if any(cell is None for cell in cells):
            return  # not logged by every replica: not a shared step
        names = self.compare or [
            name for name in cells[0] if name not in CLOCK_KEYS
            and all(name in cell for cell in cells)
        ]
        for name in names:
            if not all(name in cell for cell in cells):
                continue
            diff = _spread([cell[name] for cell in cells])
            for p in self.progress:
                p.max_diff = diff if p.max_diff is None else max(p.max_diff, diff)


def _spread(values: list[float]) -> float:
    """max - min with compare_metric's rules: NaN equals NaN, the same inf equals itself,
    any other non-finite mix is infinitely apart."""
    if all(math.isfinite(v) for v in values):
        return max(values) - min(values)
    if all(math.isnan(v) for v in values) or len(set(values)) == 1:
        return 0.0
    return math.inf


def resolve_command(cmd: str | Sequence[str], launch_dir: Path) -> list[str]:
    """Split (shlex, no shell) and make the command runnable from a replica folder:
    the executable must exist, and arguments naming files that exist relative to where
    rldk was launched become absolute (`python demos/x.py` still finds demos/x.py)."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if not argv:
        raise DeterminismError("--cmd is empty")
    exe = argv[0]
    if os.sep in exe or (os.altsep and os.altsep in exe):
        found = launch_dir / exe
        if not (found.is_file() and os.access(found, os.X_OK)):
            raise DeterminismError(f"command not found: {exe}")
        argv[0] = os.path.abspath(found)  # no resolve(): a venv's python is a symlink
    else:
        which = shutil.which(exe)
        if which is None:
            raise DeterminismError(f"command not found: {exe}")
        argv[0] = which
    for i in range(1, len(argv)):
        arg = argv[i]
        if arg.startswith("-") or os.path.isabs(arg):
            continue
        candidate = launch_dir / arg
        if candidate.exists():
            argv[i] = os.path.abspath(candidate)
    return argv


def _replica_env(index: int) -> dict[str, str]:
    env = dict(os.environ)
    env["RLDK_REPLICA"] = str(index)
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as they are printed, not at exit
    return env


class _Launcher:
    """Starts replicas, tracks their process groups so Ctrl-C stops them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen] = {}
        self.cancelled = False

    def start(self, index: int, argv: list[str], cwd: Path, stdout, stderr) -> subprocess.Popen:
        with self._lock:
            if self.cancelled:
                raise DeterminismError("cancelled")
            proc = subprocess.Popen(
                argv, cwd=cwd, env=_replica_env(index), stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=stderr, start_new_session=True,
                text=True, errors="replace", bufsize=1,
            )
            self._procs[index] = proc
            return proc

    def finished(self, index: int) -> None:
        with self._lock:
            self._procs.pop(index, None)

    def kill_all(self) -> None:
        with self._lock:
            self.cancelled = True
            for proc in self._procs.values():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _stderr_tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip()][-STDERR_TAIL_LINES:]


def _run_stdout_replica(
    index: int, argv: list[str], workdir: Path, launcher: _Launcher, progress: ReplicaProgress
) -> ReplicaOutcome:
    from rldk_engine.ingest.parse import LineParser

    parser = LineParser()
    records = []
    stderr_path = workdir / "stderr.log"
    with open(workdir / "stdout.log", "w") as raw, open(stderr_path, "w") as err:
        proc = launcher.start(index, argv, workdir, subprocess.PIPE, err)
        progress.state, progress.started = "running", time.monotonic()
        assert proc.stdout is not None
        read_all = threading.Event()
        threading.Thread(target=_end_leftovers, args=(proc, read_all), daemon=True).start()
        for line in proc.stdout:
            raw.write(line)
            record = parser.feed(line)
            if record is not None:
                records.append(record)
                progress.observe(record)
                progress.steps = len(records)
        read_all.set()
        exit_code = proc.wait()
    launcher.finished(index)
    return ReplicaOutcome(
        index=index, workdir=str(workdir), exit_code=exit_code,
        series=series_from_records(records), source=str(workdir / "stdout.log"),
        n_lines=parser.n_lines, n_rejected=parser.n_rejected,
        stderr_tail=_stderr_tail(stderr_path),
    )


def _end_leftovers(proc: subprocess.Popen, read_all: threading.Event) -> None:
    """The replica exited but a background process of its group (`cmd &`, a server it
    spawned) still holds stdout open: after a short grace, end the group so reading stops
    instead of waiting for that process (forever, for a daemon). Lines already written
    stay readable in the pipe."""
    proc.wait()
    if read_all.wait(LEFTOVER_GRACE_S):
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _metrics_file_path(workdir: Path, pattern: str, index: int) -> Path | None:
    pattern = pattern.replace("{replica}", str(index))
    matches = sorted(glob.glob(str(workdir / pattern)))
    return Path(matches[0]) if matches else None


def _run_file_replica(
    index: int, argv: list[str], workdir: Path, pattern: str,
    launcher: _Launcher, progress: ReplicaProgress,
) -> ReplicaOutcome:
    from rldk_engine.errors import InputError
    from rldk_engine.ingest.parse import LineParser
    from rldk_engine.ingest.readers import read_run

    stderr_path = workdir / "stderr.log"
    with open(workdir / "stdout.log", "w") as out, open(stderr_path, "w") as err:
        proc = launcher.start(index, argv, workdir, out, err)
        progress.state, progress.started = "running", time.monotonic()
        tail = _FileTail(LineParser())
        while proc.poll() is None:
            path = _metrics_file_path(workdir, pattern, index)
            if path is not None:
                progress.steps = tail.poll(path, progress)
            time.sleep(0.1)
        exit_code = proc.returncode
    launcher.finished(index)
    path = _metrics_file_path(workdir, pattern, index)
    error = None
    series = Series.empty()
    if path is None:
        error = f"replica {index}: metrics file {pattern!r} not found in {workdir}"
    else:
        try:
            series = series_from_run(read_run(path))
        except InputError as exc:
            error = str(exc)
    return ReplicaOutcome(
        index=index, workdir=str(workdir), exit_code=exit_code, series=series,
        source=str(path or workdir / pattern), error=error,
        stderr_tail=_stderr_tail(stderr_path),
    )


class _FileTail:
    """Counts records appended to a growing metrics file, for the progress line only."""

    def __init__(self, parser) -> None:
        self.parser = parser
        self.offset = 0
        self.partial = ""
        self.records = 0

    def poll(self, path: Path, progress: ReplicaProgress | None = None) -> int:
        try:
            with open(path, errors="replace") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except OSError:
            return self.records
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            record = self.parser.feed(line)
            if record is not None:
                self.records += 1
                if progress is not None:
                    progress.observe(record)
        return self.records


def run_replicas(
    argv: list[str],
    replicas: int,
    out_dir: Path,
    *,
    parallel: int | None = None,
    metrics_file: str | None = None,
    on_tick: Callable[[list[ReplicaProgress]], None] | None = None,
    compare: Sequence[str] = (),
) -> list[ReplicaOutcome]:
    """Run the replicas (at most `parallel` at a time; default all at once) and collect
    their metrics. `on_tick` is called ~10x/s with live progress from the main thread;
    `compare` names the metrics its `max_diff` covers (empty: all shared ones)."""
    progress = [ReplicaProgress() for _ in range(replicas)]
    live_diff = _LiveDiff(progress, compare)
    launcher = _Launcher()
    workdirs = []
    for i in range(replicas):
        workdir = out_dir / f"replica_{i}"
        workdir.mkdir(parents=True, exist_ok=True)
        workdirs.append(workdir)

    def work(i: int) -> ReplicaOutcome:
        started = time.monotonic()
        try:
            if metrics_file:
                outcome = _run_file_replica(i, argv, workdirs[i], metrics_file, launcher, progress[i])
            else:
                outcome = _run_stdout_replica(i, argv, workdirs[i], launcher, progress[i])
        except OSError as exc:  # exec failed (permission, bad interpreter...)
            outcome = ReplicaOutcome(
                index=i, workdir=str(workdirs[i]), exit_code=None, series=Series.empty(),
                source=str(workdirs[i]), error=f"replica {i}: could not start: {exc}",
            )
        outcome.wall_time_s = round(time.monotonic() - started, 3)
        progress[i].exit_code = outcome.exit_code
        progress[i].steps = outcome.series.n_steps or progress[i].steps
        progress[i].state = "done" if outcome.exit_code == 0 else "failed"
        progress[i].ended = time.monotonic()
        return outcome

    workers = max(1, min(parallel or replicas, replicas))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rldk-replica")
    futures = [pool.submit(work, i) for i in range(replicas)]
    try:
        while wait(futures, timeout=0.1).not_done:  # returns as soon as the last one ends
            if on_tick is not None:
                live_diff.update()
                on_tick(progress)
        if on_tick is not None:
            live_diff.update()
            on_tick(progress)
        return [f.result() for f in futures]
    except BaseException:
        launcher.kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- orchestration


@dataclass
class DeterminismResult:
    card: dict
    exit_code: int
    card_path: Path | None
    figure_path: Path | None
    reason: str | None  # one-line reason when exit_code == 2


def evaluate(
    outcomes: list[ReplicaOutcome],
    compare: Sequence[str],
    atol: float,
    rtol: float,
    argv: Sequence[str] | None,
) -> tuple[list[str], list[MetricComparison]]:
    """Check the outcomes can be compared (raises DeterminismError) and compare them."""
    with_metrics = [o for o in outcomes if o.has_metrics]
    if argv is not None and outcomes and all(o.exit_code != 0 for o in outcomes):
        first = outcomes[0]
        why = first.error or (first.stderr_tail[-1] if first.stderr_tail else "no stderr")
        codes = ", ".join(str(o.exit_code) for o in outcomes)
        raise DeterminismError(f"every replica crashed (exit codes {codes}); replica 0: {why}")
    if not with_metrics:
        errors = [o.error for o in outcomes if o.error]
        detail = f" ({errors[0]})" if errors else ""
        raise DeterminismError(f"no metrics found in any replica's output{detail}")
    names = resolve_compare(compare, with_metrics)
    ids = [o.index for o in with_metrics]
    comparisons = [
        compare_metric(name, [o.series for o in with_metrics], ids, atol, rtol) for name in names
    ]
    return names, comparisons


def finish(
    outcomes: list[ReplicaOutcome],
    compare: Sequence[str],
    atol: float,
    rtol: float,
    out_dir: Path,
    argv: Sequence[str] | None,
    started: float,
    make_figure: bool = True,
    env: dict | None = None,
) -> DeterminismResult:
    env = audit_env() if env is None else env
    try:
        names, comparisons = evaluate(outcomes, compare, atol, rtol, argv)
    except DeterminismError as exc:
        card = build_card(
            outcomes=outcomes, comparisons=[], compare=list(compare), atol=atol, rtol=rtol,
            env=env, wall_time_s=time.monotonic() - started, argv=argv, error=str(exc),
        )
        return DeterminismResult(card, 2, write_card(card, out_dir), None, str(exc))
    card = build_card(
        outcomes=outcomes, comparisons=comparisons, compare=names, atol=atol, rtol=rtol,
        env=env, wall_time_s=time.monotonic() - started, argv=argv,
    )
    figure = None
    if make_figure:
        from rldk_engine.plots.determinism import plot_determinism_mismatch

        try:
            figure = plot_determinism_mismatch(
                {c.metric: (c.steps, c.spread) for c in comparisons}, atol, out_dir / FIGURE_NAME
            )
        except Exception as exc:  # a figure problem must not lose the card
            card["figure_error"] = f"{FIGURE_NAME}: {exc}"
    card["figure"] = str(figure) if figure else None
    card_path = write_card(card, out_dir)
    return DeterminismResult(card, 0 if card["passed"] else 1, card_path, figure, None)


def check_command(
    cmd: str | Sequence[str],
    *,
    compare: Sequence[str] = (),
    replicas: int = 4,
    out_dir: Path,
    atol: float = 1e-6,
    rtol: float = 0.0,
    parallel: int | None = None,
    metrics_file: str | None = None,
    on_tick: Callable[[list[ReplicaProgress]], None] | None = None,
    make_figure: bool = True,
) -> DeterminismResult:
    """Run `cmd` as `replicas` replicas and write the card. Raises DeterminismError only
    for bad usage before anything runs (the CLI turns it into exit 2)."""
    if replicas < 2:
        raise DeterminismError(f"--replicas must be at least 2 (got {replicas})")
    if parallel is not None and parallel < 1:
        raise DeterminismError(f"--parallel must be at least 1 (got {parallel})")
    _check_tolerances(atol, rtol)
    out_dir = Path(out_dir)
    argv = resolve_command(cmd, Path.cwd())
    started = time.monotonic()
    prepared = _Prepared(make_figure)
    outcomes = run_replicas(
        argv, replicas, out_dir, parallel=parallel, metrics_file=metrics_file, on_tick=on_tick,
        compare=compare,
    )
    return finish(
        outcomes, compare, atol, rtol, out_dir, argv, started, make_figure, prepared.env()
    )


class _Prepared:
    """Work that does not depend on the replicas, done while they run so the card comes
    right after the last replica: the environment audit (it may import torch, 1-2 s) and
    the matplotlib import for the figure."""

    def __init__(self, make_figure: bool) -> None:
        self._env: dict | None = None
        self._thread = threading.Thread(
            target=self._work, args=(make_figure,), name="rldk-prepare", daemon=True
        )
        self._thread.start()

    def _work(self, make_figure: bool) -> None:
        self._env = audit_env()
        if make_figure:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot  # noqa: F401
            except Exception:  # the figure step reports its own failure later
                pass

    def env(self) -> dict:
        self._thread.join()
        return self._env if self._env is not None else audit_env()


def check_runs(
    paths: Sequence[str | Path],
    *,
    compare: Sequence[str] = (),
    out_dir: Path,
    atol: float = 1e-6,
    rtol: float = 0.0,
    fmt: str | None = None,
    make_figure: bool = True,
) -> DeterminismResult:
    """Compare logs that already exist (one file or run folder per replica)."""
    from rldk_engine.errors import InputError
    from rldk_engine.ingest.readers import read_run

    if len(paths) < 2:
        raise DeterminismError(f"--runs needs at least 2 logs (got {len(paths)})")
    _check_tolerances(atol, rtol)
    started = time.monotonic()
    outcomes = []
    for i, path in enumerate(paths):
        try:
            run = read_run(Path(path), fmt)
        except InputError as exc:
            raise DeterminismError(str(exc)) from None
        outcomes.append(ReplicaOutcome(
            index=i, workdir=None, exit_code=None, series=series_from_run(run), source=str(path),
        ))
    return finish(outcomes, compare, atol, rtol, Path(out_dir), None, started, make_figure)


def _check_tolerances(atol: float, rtol: float) -> None:
    for flag, value in (("--tolerance", atol), ("--rtol", rtol)):
        if not (value >= 0 and math.isfinite(value)):
            raise DeterminismError(f"{flag} must be a finite number >= 0 (got {value})")


def summary_line(result: DeterminismResult) -> str:
    card = result.card
    if result.reason:
        return f"determinism: could not run: {result.reason}"
    verdict = "PASSED" if card["passed"] else "FAILED"
    culprits = ", ".join(card["culprit_metrics"]) or "none"
    return (
        f"determinism: {verdict} ({card['replicas']} replicas, {card['mismatches']} mismatched "
        f"cells, culprits: {culprits}, {card['wall_time_s']:.1f} s)"
    )
