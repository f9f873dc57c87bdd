"""What a run view shows, filled from a run directory by one reader thread.

`RunDirTailer.poll` reads only the new bytes of run.jsonl, alerts.jsonl and monitor.log
and folds them into a `LiveState`: each metric's whole history (rldk_tui.series), the
fired alerts, the raw log tail and status.json. The UI takes a `LiveSnapshot` ~10 times
a second, so a trainer printing 50,000 lines/s never costs one widget update per line.
No Textual import.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from rldk_tui import rundir
from rldk_tui.series import SeriesStore, SeriesView

# Charts show these first (issue 7 order), then every other metric by name.
KEY_METRICS = ("kl", "reward_mean", "entropy", "grad_norm", "clip_frac", "response_len_mean")


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


def to_floats(values: list) -> list[float]:
    """float() accepts every number and the strings "NaN"/"Infinity"; anything else
    (null, a nested object) is NaN, one value at a time."""
    try:
        return list(map(float, values))
    except (TypeError, ValueError, OverflowError):
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


def ordered_metrics(names) -> list[str]:
    """The six key metrics first (in their order), then the rest by name."""
    present = set(names)
    return [m for m in KEY_METRICS if m in present] + sorted(present - set(KEY_METRICS))


@dataclass(frozen=True)
class LiveSnapshot:
    rows: int
    last_step: int | None
    steps_per_s: float | None
    series: dict[str, SeriesView]  # key metrics first, then by name
    alerting: dict[str, tuple[str, ...]]  # metric -> rules holding now
    alert_history: tuple[dict, ...]  # fired alerts, oldest first (bounded)
    new_alerts: tuple[dict, ...]
    new_log_lines: tuple[str, ...]
    status: dict
    bad_lines: int
    version: int


class LiveState:
    """Everything a run view shows, filled by one reader thread."""

    def __init__(self, log_cap: int = 2000, alert_cap: int = 500,
                 history_cap: int = 5000) -> None:
        self.series: dict[str, SeriesStore] = {}
        self.rows = 0
        self.last_step: int | None = None
        self.bad_lines = 0
        self.row_times: deque[tuple[int, float]] = deque(maxlen=200)
        self.active: dict[str, set[str]] = {}
        self.status: dict = {}
        self.version = 0
        self._alert_history: deque[dict] = deque(maxlen=history_cap)
        self._new_alerts: deque[dict] = deque(maxlen=alert_cap)
        self._new_log: deque[str] = deque(maxlen=log_cap)
        self._lock = threading.Lock()

    # -- writer side (reader thread) ---------------------------------------------------
    def add_rows(self, lines: list[bytes]) -> None:
        if not lines:
            return
        # Parse and split into columns outside the lock: the UI tick never waits on it.
        rows, bad = parse_rows(lines)
        base = self.rows
        # A row without an integer step is placed at its row number: still drawn, in order.
        steps = [row["step"] if type(row.get("step")) is int else base + i
                 for i, row in enumerate(rows)]
        columns: dict[str, tuple] = {}
        first_keys = rows[0].keys() if rows else {}.keys()
        if all(row.keys() == first_keys for row in rows):
            # The usual chunk: every row logs the same keys, so they share one step array.
            step_array = np.asarray(steps, dtype=np.float64)
            for key in first_keys:
                if key != "step" and key != "time":
                    columns[key] = (step_array, to_floats([row[key] for row in rows]))
        else:
            keys: dict[str, None] = {}
            for row in rows:
                keys.update(dict.fromkeys(row))
            keys.pop("step", None)
            keys.pop("time", None)
            for key in keys:
                picked = [i for i, row in enumerate(rows) if key in row]
                columns[key] = ([steps[i] for i in picked],
                                to_floats([rows[i][key] for i in picked]))
        last_step = next((row["step"] for row in reversed(rows)
                          if type(row.get("step")) is int), None)
        tail = rows[-(self.row_times.maxlen or 1):]  # steps/s looks at recent rows only
        stamps = [(offset, row.get("time"))
                  for offset, row in enumerate(tail, len(rows) - len(tail) + 1)]
        with self._lock:
            for key, (key_steps, values) in columns.items():
                target = self.series.get(key)
                if target is None:
                    target = self.series[key] = SeriesStore()
                target.extend(key_steps, values)
            self.rows += len(rows)
            self.bad_lines += bad
            if last_step is not None:
                self.last_step = last_step
            self.row_times.extend((base + offset, float(stamp)) for offset, stamp in stamps
                                  if isinstance(stamp, (int, float)))
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
                    self._alert_history.append(alert)
            self.version += 1

    def add_log(self, lines: list[bytes]) -> None:
        if not lines:
            return
        with self._lock:
            self._new_log.extend(line.decode("utf-8", "replace").rstrip("\r") for line in lines)
            self.version += 1

    def status_copy(self) -> dict:
        """The status alone, without draining the new alerts/log (a hidden view's tick)."""
        with self._lock:
            return dict(self.status)

    def set_status(self, status: dict) -> None:
        with self._lock:
            if status != self.status:
                self.status = status
                self.version += 1

    # -- reader side (UI timer) ----------------------------------------------------------
    def series_view(self, metric: str) -> SeriesView | None:
        """One metric's history (an overlaid run needs no full snapshot)."""
        with self._lock:
            store = self.series.get(metric)
            return store.snapshot() if store is not None else None

    def steps_per_s(self) -> float | None:
        if len(self.row_times) < 2:
            return None
        (rows0, t0), (rows1, t1) = self.row_times[0], self.row_times[-1]
        if t1 <= t0:
            return None
        return (rows1 - rows0) / (t1 - t0)

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            series = {name: self.series[name].snapshot() for name in ordered_metrics(self.series)}
            snap = LiveSnapshot(
                rows=self.rows,
                last_step=self.last_step,
                steps_per_s=self.steps_per_s(),
                series=series,
                alerting={name: tuple(sorted(rules)) for name, rules in self.active.items()
                          if rules},
                alert_history=tuple(self._alert_history),
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

    def __init__(self, run_dir: Path, state: LiveState, with_log: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.state = state
        self.run = rundir.LineTail(self.run_dir / rundir.RUN_FILE)
        self.alerts = rundir.LineTail(self.run_dir / rundir.ALERTS_FILE)
        self.log = rundir.LineTail(self.run_dir / rundir.LOG_FILE) if with_log else None
        self._status_mtime: tuple | None = None

    def poll(self) -> bool:
        """One pass over every file; True when something new was read (poll again soon)."""
        rows = self.run.read_lines()
        alerts = self.alerts.read_lines()
        log = self.log.read_lines() if self.log is not None else []
        self.state.add_rows(rows)
        self.state.add_alerts(alerts)
        self.state.add_log(log)
        self._poll_status()
        return bool(rows or alerts or log)

    def _poll_status(self) -> None:
        try:
            info = (self.run_dir / rundir.STATUS_FILE).stat()
        except OSError:
            return
        # The monitor replaces the file (new inode); mtime alone can repeat within a tick.
        mtime = (info.st_mtime_ns, info.st_ino, info.st_size)
        if mtime != self._status_mtime:
            status = rundir.read_status(self.run_dir)
            if status:
                self._status_mtime = mtime
                self.state.set_status(status)
