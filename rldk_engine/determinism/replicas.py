"""Run the replicas: N copies of one command side by side, each in its own process group
and working folder (`DIR/replica_i/`), with `RLDK_REPLICA=i` and `RLDK_METRICS_PATH`.

Where a replica's metrics come from (the card's `metrics_from` says which, per replica):
- `--metrics-file PATTERN`: only the file the pattern names in the replica's folder;
- otherwise its stdout, parsed line by line with the shared `LineParser` (the monitor's
  ingest), and the file `RLDK_METRICS_PATH` points at (`DIR/replica_i/rldk_metrics.jsonl`)
  when the command writes it, as the original kit's scripts do. A metric the file holds is
  taken from the file; a metric only stdout holds is taken from stdout.
"""

from __future__ import annotations

import glob
import math
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rldk_engine.determinism.base import CLOCK_KEYS, DeterminismError, as_float, spread_of
from rldk_engine.ingest.metrics import canonical_name

if TYPE_CHECKING:
    from rldk_engine.ingest.parse import Record
    from rldk_engine.ingest.run import Run
    from rldk_engine.live.process import ProcessGroup

# numpy (through Run and the comparison) is imported by the reader threads once a replica
# ends, never before the replicas start: its import is start-up time the check waits for.

METRICS_ENV = "RLDK_METRICS_PATH"
METRICS_FILE_NAME = "rldk_metrics.jsonl"
STDERR_TAIL_LINES = 5
# After a replica exits, how long its stdout may stay open (held by a leftover background
# process of its group) before that group is ended.
LEFTOVER_GRACE_S = 1.0
STOP_GRACE_S = 0.5  # per signal when stopping a replica's process tree
TICK_S = 0.1


@dataclass
class ReplicaOutcome:
    index: int
    workdir: str | None
    exit_code: int | None
    run: Run
    source: str
    metrics_from: str = "stdout"  # stdout | file | file+stdout | log (--runs) | none
    metrics_file: str | None = None
    wall_time_s: float = 0.0
    n_lines: int = 0
    n_rejected: int = 0
    error: str | None = None
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def has_metrics(self) -> bool:
        return self.run.n_steps > 0

    @property
    def crashed(self) -> bool:
        return self.exit_code not in (None, 0)


# ----------------------------------------------------------------------------- live progress


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
    # (step, metrics) in arrival order, appended by the reader, consumed by LiveDiff.
    feed: list = field(default_factory=list, repr=False)

    def observe(self, record: Record) -> None:
        """One parsed record (`.step`, `.metrics`) from the replica's reader thread."""
        metrics = {name: as_float(value) for name, value in record.metrics.items()}
        self.latest = {**self.latest, **metrics}
        self.feed.append((int(record.step), metrics))


class LiveDiff:
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

    def _fold(self, maybe_cells: list[dict[str, float] | None]) -> None:
        cells = [cell for cell in maybe_cells if cell is not None]
        if len(cells) < len(maybe_cells):
            return  # not logged by every replica: not a shared step
        names = self.compare or [
            name for name in cells[0] if name not in CLOCK_KEYS
            and all(name in cell for cell in cells)
        ]
        for name in names:
            if not all(name in cell for cell in cells):
                continue
            diff = spread_of([cell[name] for cell in cells])
            for p in self.progress:
                p.max_diff = diff if p.max_diff is None else max(p.max_diff, diff)


# ----------------------------------------------------------------------------- launching


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


def replica_env(index: int, metrics_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RLDK_REPLICA"] = str(index)
    env[METRICS_ENV] = str(metrics_path)
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as they are printed, not at exit
    return env


class Launcher:
    """Starts each replica as a `ProcessGroup` (the monitor's: a new session, a parent-death
    signal, escaped descendants found through /proc, never a recycled pid signalled) and
    stops them all on Ctrl-C: SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, ProcessGroup] = {}
        self.cancelled = False

    def start(self, index: int, argv: list[str], cwd: Path, stdout, stderr) -> ProcessGroup:
        from rldk_engine.live.process import ProcessGroup

        with self._lock:
            if self.cancelled:
                raise DeterminismError("cancelled")
            group = ProcessGroup.spawn(
                argv, cwd=cwd, env=replica_env(index, (cwd / METRICS_FILE_NAME).absolute()),
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, bufsize=1,
                subreaper=False,  # replicas share this process: no process-wide reparenting
                text=True, errors="replace",
            )
            self._groups[index] = group
            return group

    def finished(self, index: int) -> None:
        """The replica's leader exited and its output was read: end whatever of its tree
        still runs (a daemon it left behind would skew the next replicas), then forget it."""
        with self._lock:
            group = self._groups.pop(index, None)
        if group is not None:
            group.stop_leftovers(term_grace=STOP_GRACE_S)
            group.close()

    def kill_all(self) -> None:
        with self._lock:
            self.cancelled = True
            groups = list(self._groups.values())
        for group in groups:  # every replica gets SIGINT at once, then each escalates
            group.send(signal.SIGINT)
        for group in groups:
            if not group.wait_gone(STOP_GRACE_S):
                group.escalate([(int(signal.SIGTERM), STOP_GRACE_S),
                                (int(signal.SIGKILL), STOP_GRACE_S * 4)])


def _end_leftovers(group: ProcessGroup, read_all: threading.Event) -> None:
    """The replica exited but a background process of its tree (`cmd &`, a server it
    spawned) still holds stdout open: after a short grace, end that tree so reading stops
    instead of waiting for that process (forever, for a daemon). Lines already written
    stay readable in the pipe."""
    group.wait()
    if read_all.wait(LEFTOVER_GRACE_S):
        return
    group.stop_leftovers(term_grace=STOP_GRACE_S)


def _stderr_tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip()][-STDERR_TAIL_LINES:]


# ----------------------------------------------------------------------------- metrics files


def _pattern_path(workdir: Path, pattern: str, index: int) -> Path | None:
    pattern = pattern.replace("{replica}", str(index))
    matches = sorted(glob.glob(str(workdir / pattern)))
    return Path(matches[0]) if matches else None


def _read_metrics_file(path: Path) -> tuple[Run, str | None]:
    from rldk_engine.determinism.compare import empty_run
    from rldk_engine.errors import InputError
    from rldk_engine.ingest.readers import read_run

    try:
        return read_run(path), None
    except InputError as exc:
        return empty_run(str(path)), str(exc)


def merge_runs(primary: Run, secondary: Run) -> Run:
    """`primary`'s metrics, plus the metrics only `secondary` logged, on the union of steps."""
    import numpy as np

    from rldk_engine.ingest.run import Run

    steps = np.union1d(primary.steps, secondary.steps).astype(np.int64)
    columns: dict[str, np.ndarray] = {}
    nonfinite: dict[str, np.ndarray] = {}
    for run, names in ((primary, list(primary.columns)),
                       (secondary, [n for n in secondary.columns if n not in primary.columns])):
        at = np.searchsorted(steps, run.steps)
        for name in names:
            column = np.full(steps.size, np.nan)
            column[at] = run.columns[name]
            columns[name] = column
            if name in run.nonfinite:
                nonfinite[name] = np.asarray(run.nonfinite[name], dtype=np.int64)
    return Run(run_id=primary.run_id, source=primary.source, format=primary.format,
               steps=steps, columns=columns, nonfinite=nonfinite,
               errors=primary.errors + secondary.errors)


# ----------------------------------------------------------------------------- one replica


def _run_replica(
    index: int, argv: list[str], workdir: Path, pattern: str | None,
    launcher: Launcher, progress: ReplicaProgress,
) -> ReplicaOutcome:
    """Run one replica to its end, then take its metrics from where it wrote them."""
    from rldk_engine.determinism.compare import empty_run

    env_file = workdir / METRICS_FILE_NAME
    env_file.unlink(missing_ok=True)  # a file left by an earlier check is not this run's
    exit_code, records, parser = _run_and_read(index, argv, workdir, pattern, launcher, progress)
    outcome = ReplicaOutcome(
        index=index, workdir=str(workdir), exit_code=exit_code, run=empty_run(),
        source=str(workdir / "stdout.log"), n_lines=parser.n_lines,
        n_rejected=parser.n_rejected, stderr_tail=_stderr_tail(workdir / "stderr.log"),
    )
    if pattern is not None:
        return _from_pattern_file(outcome, workdir, pattern)
    return _from_metrics_path_and_stdout(outcome, env_file, records)


def _run_and_read(
    index: int, argv: list[str], workdir: Path, pattern: str | None,
    launcher: Launcher, progress: ReplicaProgress,
) -> tuple[int, list, Any]:
    """Start the replica; parse its stdout line by line (unless --metrics-file names the
    only source) while a watcher tails its metrics file for the live view."""
    from rldk_engine.ingest.parse import LineParser

    parser = LineParser()
    records: list = []
    with open(workdir / "stdout.log", "w") as raw, open(workdir / "stderr.log", "w") as err:
        group = launcher.start(index, argv, workdir, subprocess.PIPE, err)
        proc = group.proc
        progress.state, progress.started = "running", time.monotonic()
        watch_done = threading.Event()
        watcher = threading.Thread(
            target=_watch_metrics_file,
            args=(workdir, pattern, index, workdir / METRICS_FILE_NAME, progress, watch_done),
            daemon=True,
        )
        watcher.start()
        read_all = threading.Event()
        threading.Thread(target=_end_leftovers, args=(group, read_all), daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            raw.write(line)
            if pattern is None:
                record = parser.feed(line)
                if record is not None:
                    records.append(record)
                    progress.observe(record)
                    progress.steps = max(progress.steps, len(records))
        read_all.set()
        exit_code = proc.wait()
        watch_done.set()
        watcher.join()
    launcher.finished(index)
    return exit_code, records, parser


def _from_pattern_file(outcome: ReplicaOutcome, workdir: Path, pattern: str) -> ReplicaOutcome:
    """--metrics-file: the file the pattern names is the only source."""
    path = _pattern_path(workdir, pattern, outcome.index)
    outcome.source = str(path or workdir / pattern)
    if path is None:
        outcome.metrics_from = "none"
        outcome.error = f"replica {outcome.index}: metrics file {pattern!r} not found in {workdir}"
        return outcome
    outcome.run, outcome.error = _read_metrics_file(path)
    outcome.metrics_from, outcome.metrics_file = "file", str(path)
    return outcome


def _from_metrics_path_and_stdout(
    outcome: ReplicaOutcome, env_file: Path, records: list
) -> ReplicaOutcome:
    """The RLDK_METRICS_PATH file when the replica wrote a readable one (plus the metrics
    only stdout has), else stdout; an unreadable file is noted in `error`."""
    from rldk_engine.determinism.compare import logged_metrics, run_from_records

    from_stdout = run_from_records(records, outcome.source)
    if env_file.is_file() and env_file.stat().st_size > 0:
        from_file, error = _read_metrics_file(env_file)
        outcome.metrics_file, outcome.error = str(env_file), error
        if from_file.n_steps:
            extra = set(logged_metrics(from_stdout)) - set(from_file.columns)
            outcome.run = merge_runs(from_file, from_stdout) if extra else from_file
            outcome.metrics_from = "file+stdout" if extra else "file"
            outcome.source = str(env_file)
            return outcome
    outcome.run = from_stdout
    outcome.metrics_from = "stdout" if from_stdout.n_steps else "none"
    return outcome


def _watch_metrics_file(
    workdir: Path, pattern: str | None, index: int, env_file: Path,
    progress: ReplicaProgress, done: threading.Event,
) -> None:
    """Live view only: records appended to the replica's metrics file as it writes them,
    through the shared tailer (the card reads the whole file once the replica ended)."""
    from rldk_engine.ingest.parse import LineParser
    from rldk_engine.ingest.tail import FileTail

    parser = LineParser()
    tail: FileTail | None = None
    records = 0
    try:
        while True:
            finished = done.wait(TICK_S)
            if tail is None:
                path = _pattern_path(workdir, pattern, index) if pattern else env_file
                if path is not None and path.is_file():
                    tail = FileTail(path)
            while tail is not None:
                lines = tail.read_lines()
                for raw in lines:
                    record = parser.feed(raw.decode("utf-8", errors="replace"))
                    if record is not None:
                        records += 1
                        progress.observe(record)
                progress.steps = max(progress.steps, records)
                if not lines or not finished:
                    break  # while running, one chunk per tick; at the end, drain it
            if finished:
                return
    except OSError:  # NotARegularFile and friends: the card reports the file itself
        return
    finally:
        if tail is not None:
            tail.close()


# ----------------------------------------------------------------------------- all replicas


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
    live_diff = LiveDiff(progress, compare)
    launcher = Launcher()
    workdirs = []
    for i in range(replicas):
        workdir = out_dir / f"replica_{i}"
        workdir.mkdir(parents=True, exist_ok=True)
        workdirs.append(workdir)

    def work(i: int) -> ReplicaOutcome:
        started = time.monotonic()
        try:
            outcome = _run_replica(i, argv, workdirs[i], metrics_file, launcher, progress[i])
        except OSError as exc:  # exec failed (permission, bad interpreter...)
            from rldk_engine.determinism.compare import empty_run

            outcome = ReplicaOutcome(
                index=i, workdir=str(workdirs[i]), exit_code=None, run=empty_run(),
                source=str(workdirs[i]), metrics_from="none",
                error=f"replica {i}: could not start: {exc}",
            )
        outcome.wall_time_s = round(time.monotonic() - started, 3)
        progress[i].exit_code = outcome.exit_code
        progress[i].steps = outcome.run.n_steps or progress[i].steps
        progress[i].state = "done" if outcome.exit_code == 0 else "failed"
        progress[i].ended = time.monotonic()
        return outcome

    workers = max(1, min(parallel or replicas, replicas))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rldk-replica")
    futures = [pool.submit(work, i) for i in range(replicas)]
    try:
        while wait(futures, timeout=TICK_S).not_done:  # returns as soon as the last one ends
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
