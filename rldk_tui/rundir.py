"""Client side of a monitor run directory (docs/CONTRACTS.md "Run directory").

Nothing here imports Textual: a `RunDirTailer` reads only the *new* bytes of the growing
files (run.jsonl, alerts.jsonl, monitor.log), keeps partial trailing lines for the next
read, and folds everything into a bounded `LiveState`. The app reads that state from a
thread worker and a ~10 Hz timer copies a `LiveSnapshot` into the widgets, so a trainer
printing 50,000 lines/s never costs one widget update per line.

Clients never signal pids: `send_control` appends to control.jsonl and the monitor acts.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson

# The run-directory protocol (file names, status, control commands) has one owner.
from rldk_engine.ingest.tail import FileTail
from rldk_engine.live.protocol import (
    ACTIVE_STATES,
    RUN_DIR_FILES,
    SUPERVISOR_LOG,
    auto_stop_command,
    describe_state,
    is_active,
    read_status,
    run_dir_problem,
    send_control,
    stop_command,
)
from rldk_engine.live.protocol import ALERTS_JSONL as ALERTS_FILE
from rldk_engine.live.protocol import CONTROL_JSONL as CONTROL_FILE
from rldk_engine.live.protocol import MONITOR_LOG as LOG_FILE
from rldk_engine.live.protocol import RUN_JSONL as RUN_FILE
from rldk_engine.live.protocol import STATUS_JSON as STATUS_FILE

__all__ = ["ACTIVE_STATES", "RUN_DIR_FILES", "SUPERVISOR_LOG", "ALERTS_FILE", "CONTROL_FILE",
           "LOG_FILE", "RUN_FILE", "STATUS_FILE", "describe_state", "is_active", "read_status",
           "run_dir_problem", "send_control"]

# Panes show these first (issue 7 order), then whatever else the run has.
KEY_METRICS = ("kl", "reward_mean", "entropy", "grad_norm", "clip_frac", "response_len_mean")
READ_CHUNK = 1 << 16  # bytes per file per poll: bounds the work done between UI ticks


def to_float(value: object) -> float:
    """Run-directory values are numbers or the strings "NaN"/"Infinity"/"-Infinity"."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


class LineTail(FileTail):
    """New complete non-blank lines of one growing run-directory file (the shared
    FileTail: size-capped, non-blocking, no symlinks, truncation and rotation handled)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, nofollow=True)

    def read_lines(self, max_bytes: int = READ_CHUNK) -> list[bytes]:
        try:
            lines = super().read_lines(max_bytes)
        except OSError:  # a FIFO or symlink planted in the run directory: nothing to show
            return []
        return [line for line in lines if line.strip()]


@dataclass
class MetricSeries:
    """One metric's recent finite points plus running current/min/max over the whole run."""

    history: int
    points: deque = field(init=False)
    current: float = math.nan
    low: float = math.inf
    high: float = -math.inf
    count: int = 0

    def __post_init__(self) -> None:
        self.points = deque(maxlen=self.history)

    def add(self, value: float) -> None:
        self.extend([value])

    def extend(self, values: list[float]) -> None:
        """A chunk's values in order: C-level passes, no Python call per value."""
        if not values:
            return
        self.current = values[-1]
        self.count += len(values)
        # Sparkline raises on NaN/inf: keep them out of the points (x - x is 0 only if finite).
        finite = [v for v in values if v - v == 0.0]
        if finite:
            self.points.extend(finite[-self.history:])
            self.low = min(self.low, min(finite))
            self.high = max(self.high, max(finite))


def to_floats(values: list) -> list[float]:
    """float() accepts every number and the strings "NaN"/"Infinity"; anything else
    (null, a nested object) is NaN, one value at a time."""
    try:
        return list(map(float, values))
    except (TypeError, ValueError):
        return [to_float(value) for value in values]


def parse_rows(lines: list[bytes]) -> tuple[list[dict], int]:
    """(the JSON-object rows, how many lines were not one). One orjson call for a clean
    chunk; line by line only when the chunk holds a bad line."""
    try:
        rows = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        rows = []
        for line in lines:
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    good = [row for row in rows if type(row) is dict]
    return good, len(lines) - len(good)


@dataclass(frozen=True)
class PaneData:
    name: str
    points: tuple[float, ...]
    current: float
    low: float
    high: float
    alerting: tuple[str, ...]


@dataclass(frozen=True)
class LiveSnapshot:
    rows: int
    last_step: int | None
    steps_per_s: float | None
    panes: tuple[PaneData, ...]
    new_alerts: tuple[dict, ...]
    new_log_lines: tuple[str, ...]
    status: dict
    bad_lines: int
    version: int


class LiveState:
    """Everything the Live view shows, bounded, filled by one reader thread."""

    def __init__(self, history: int = 240, log_cap: int = 2000, alert_cap: int = 500) -> None:
        self.history = history
        self.series: dict[str, MetricSeries] = {}
        self.rows = 0
        self.last_step: int | None = None
        self.bad_lines = 0
        self.row_times: deque[tuple[int, float]] = deque(maxlen=200)
        self.active: dict[str, set[str]] = {}
        self.status: dict = {}
        self.version = 0
        self._new_alerts: deque[dict] = deque(maxlen=alert_cap)
        self._new_log: deque[str] = deque(maxlen=log_cap)
        self._lock = threading.Lock()

    # -- writer side (reader thread) ---------------------------------------------------
    def add_rows(self, lines: list[bytes]) -> None:
        if not lines:
            return
        # Parse and split into columns outside the lock: the UI tick never waits on it.
        rows, bad = parse_rows(lines)
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = {key: to_floats([row[key] for row in rows if key in row])
                   for key in keys if key != "step" and key != "time"}
        last_step = next((row["step"] for row in reversed(rows)
                          if type(row.get("step")) is int), None)
        tail = rows[-(self.row_times.maxlen or 1):]  # steps/s looks at recent rows only
        stamps = [(offset, row.get("time")) for offset, row in enumerate(tail, len(rows) - len(tail) + 1)]
        with self._lock:
            for key, values in columns.items():
                target = self.series.get(key)
                if target is None:
                    target = self.series[key] = MetricSeries(self.history)
                target.extend(values)
            base = self.rows
            self.rows += len(rows)
            self.bad_lines += bad
            if last_step is not None:
                self.last_step = last_step
            self.row_times.extend((base + offset, float(stamp)) for offset, stamp in stamps
                                  if type(stamp) in (int, float))
            self.version += 1

    def add_alerts(self, lines: list[bytes]) -> None:
        if not lines:
            return
        with self._lock:
            for line in lines:
                try:
                    alert = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.bad_lines += 1
                    continue
                if not isinstance(alert, dict):
                    continue
                rules = self.active.setdefault(str(alert.get("metric", "")), set())
                if alert.get("event", "fire") == "clear":
                    rules.discard(str(alert.get("rule", "")))
                else:
                    rules.add(str(alert.get("rule", "")))
                    self._new_alerts.append(alert)
            self.version += 1

    def add_log(self, lines: list[bytes]) -> None:
        if not lines:
            return
        with self._lock:
            self._new_log.extend(line.decode("utf-8", "replace").rstrip("\r") for line in lines)
            self.version += 1

    def status_copy(self) -> dict:
        """The status alone, without draining the new alerts/log (a hidden tab's tick)."""
        with self._lock:
            return dict(self.status)

    def set_status(self, status: dict) -> None:
        with self._lock:
            if status != self.status:
                self.status = status
                self.version += 1

    # -- reader side (UI timer) ----------------------------------------------------------
    def steps_per_s(self) -> float | None:
        if len(self.row_times) < 2:
            return None
        (rows0, t0), (rows1, t1) = self.row_times[0], self.row_times[-1]
        if t1 <= t0:
            return None
        return (rows1 - rows0) / (t1 - t0)

    def snapshot(self, max_panes: int = 6) -> LiveSnapshot:
        with self._lock:
            names = [m for m in KEY_METRICS if m in self.series]
            names += [m for m in self.series if m not in KEY_METRICS]
            panes = tuple(
                PaneData(
                    name,
                    tuple(self.series[name].points),
                    self.series[name].current,
                    self.series[name].low,
                    self.series[name].high,
                    tuple(sorted(self.active.get(name, ()))),
                )
                for name in names[:max_panes]
            )
            snap = LiveSnapshot(
                rows=self.rows,
                last_step=self.last_step,
                steps_per_s=self.steps_per_s(),
                panes=panes,
                new_alerts=tuple(self._new_alerts),
                new_log_lines=tuple(self._new_log),
                status=dict(self.status),
                bad_lines=self.bad_lines,
                version=self.version,
            )
            self._new_alerts.clear()
            self._new_log.clear()
            return snap


class RunDirTailer:
    """Polls one run directory and folds new data into a LiveState."""

    def __init__(self, run_dir: Path, state: LiveState) -> None:
        self.run_dir = Path(run_dir)
        self.state = state
        self.run = LineTail(self.run_dir / RUN_FILE)
        self.alerts = LineTail(self.run_dir / ALERTS_FILE)
        self.log = LineTail(self.run_dir / LOG_FILE)
        self._status_mtime: tuple | None = None

    def poll(self) -> bool:
        """One pass over every file; True when something new was read (poll again soon)."""
        rows = self.run.read_lines()
        alerts = self.alerts.read_lines()
        log = self.log.read_lines()
        self.state.add_rows(rows)
        self.state.add_alerts(alerts)
        self.state.add_log(log)
        self._poll_status()
        return bool(rows or alerts or log)

    def _poll_status(self) -> None:
        try:
            info = (self.run_dir / STATUS_FILE).stat()
        except OSError:
            return
        # The monitor replaces the file (new inode); mtime alone can repeat within a tick.
        mtime = (info.st_mtime_ns, info.st_ino, info.st_size)
        if mtime != self._status_mtime:
            status = read_status(self.run_dir)
            if status:
                self._status_mtime = mtime
                self.state.set_status(status)


def request_stop(run_dir: Path) -> None:
    send_control(run_dir, stop_command("rldk-tui"))


def set_auto_stop(run_dir: Path, enabled: bool) -> None:
    send_control(run_dir, auto_stop_command(enabled))


def default_run_dir(root: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root or "rldk_runs") / f"{stamp}-{os.getpid()}"  # beside the monitor's default


def monitor_command(
    cmd: list[str], run_dir: Path, preset: str | None = None, rules: str | None = None
) -> list[str]:
    args = [sys.executable, "-m", "rldk_engine.cli", "monitor", "--run-dir", str(run_dir)]
    if preset:
        args += ["--preset", preset]
    if rules:
        args += ["--rules", str(rules)]
    return [*args, "--", *cmd]


def launch_monitor(
    cmd: list[str], run_dir: Path, preset: str | None = None, rules: str | None = None
) -> subprocess.Popen:
    """Start the headless supervisor in its own session: it outlives this terminal.

    Its passthrough copy of the trainer's stdout goes to /dev/null (monitor.log has it)
    and its own messages (stderr) to DIR/supervisor.log, never to our tty, so a lost SSH
    connection (SIGHUP to our session) reaches neither it nor the trainer.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(run_dir / SUPERVISOR_LOG, "ab") as out:
        return subprocess.Popen(
            monitor_command(cmd, run_dir, preset, rules),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
            env=env,
            close_fds=True,
        )


def pid_alive(pid: object) -> bool | None:
    """Is the process there? None when unknown (no pid). A zombie counts as gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeding is the best we know


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "gone"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def supervisor_gone_text(status: dict, how: str) -> str:
    """Header words when the monitor died without writing a final state."""
    pid = status.get("monitor_pid")
    who = f"monitor pid {pid}" if pid else "monitor"
    return f"supervisor gone ({who} {how}): trainer state unknown, not guarded"


def monitor_errors_text(status: dict) -> str | None:
    """The monitor's own problems (status.json "errors"), newest first, on one line."""
    errors = [str(e) for e in status.get("errors") or [] if str(e).strip()]
    if not errors:
        return None
    more = f"  (+{len(errors) - 1} more in status.json)" if len(errors) > 1 else ""
    return f"monitor error: {errors[-1]}{more}"
