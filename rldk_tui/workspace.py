"""Every run directory under a folder, summarised in one row each (no Textual).

`rldk-engine monitor`, `rldk-tui run` and `RLDKCallback` all write the same run directory
(run.jsonl, alerts.jsonl, status.json). `WorkspaceScanner.poll()` finds them (a few levels
deep: the HF callback writes `<output_dir>/rldk`), reads each status.json only when it
changed and each alerts.jsonl only from where it stopped, so a folder of 200 runs is
summarised again every second for the cost of a few hundred stat calls.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from rldk_tui import rundir

MAX_DEPTH = 3  # DIR/run, DIR/experiment/run, DIR/output/rldk ...
MAX_ENTRIES = 20_000  # directory entries looked at per discovery pass: a huge folder stays cheap
STALE_AFTER_S = 1800.0  # "running" with no status update for this long: nobody is writing it
SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", ".venv", "checkpoints"})


def looks_like_run_dir(names: set[str]) -> bool:
    return rundir.STATUS_FILE in names or rundir.RUN_FILE in names


def discover(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Run directories under `root` (root itself when it is one), sorted by path."""
    found: list[Path] = []
    budget = [MAX_ENTRIES]

    def walk(folder: Path, depth: int) -> None:
        try:
            with os.scandir(folder) as entries:
                items = []
                for entry in entries:
                    budget[0] -= 1
                    if budget[0] < 0:
                        break
                    items.append(entry)
        except OSError:
            return
        names = {entry.name for entry in items}
        if looks_like_run_dir(names):
            found.append(folder)
            return  # a run directory's own sub-folders (checkpoints) are not runs
        if depth >= max_depth:
            return
        for entry in sorted(items, key=lambda e: e.name):
            if entry.name in SKIP_DIRS or entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), depth + 1)
            except OSError:
                continue

    walk(Path(root), 0)
    return found


def classify(status: dict, now: float, pid_alive=rundir.pid_alive) -> str:
    """One word (or three) for a run's state, from its status.json."""
    if not status:
        return "no status"
    state = status.get("state")
    reason = status.get("stop_reason")
    if state in rundir.ACTIVE_STATES:
        if pid_alive(status.get("monitor_pid")) is False:
            return "stale"
        updated = status.get("updated")
        if isinstance(updated, (int, float)) and now - float(updated) > STALE_AFTER_S:
            return "stale"
        return "stopping" if state == "stopping" else "running"
    if state == "stopped":
        if reason == "guardrail":
            return "stopped by guardrail"
        if reason == "user":
            return "stopped by user"
        return "stopped"
    if state == "exited":
        return "finished" if status.get("exit_code") == 0 else "crashed"
    if state in ("failed", "lost"):  # the monitor failed, or died and its watchdog stopped all
        return "crashed"
    return str(state or "unknown")


def format_age(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "--"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    state: str
    step: int | None
    steps_per_s: float | None
    health: str  # "ok" | "warning" | "critical": the worst alert holding now
    active_alerts: int
    last_alert: str  # "kl_spike @ 56" or ""
    updated: float | None
    notice: str = ""


@dataclass
class _Tracked:
    path: Path
    alerts: rundir.LineTail
    status: dict = field(default_factory=dict)
    status_key: tuple | None = None
    active: dict[tuple[str, str], str] = field(default_factory=dict)  # (rule, metric) -> severity
    last_alert: dict | None = None
    rate: float | None = None
    prev: tuple[float, float] | None = None  # (steps, updated) at the last status change


SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class WorkspaceScanner:
    """Summaries of the run directories under `root`, refreshed by `poll()`."""

    def __init__(self, root: Path, clock=time.time) -> None:
        self.root = Path(root)
        self.clock = clock
        self._runs: dict[Path, _Tracked] = {}

    def poll(self) -> list[RunSummary]:
        paths = discover(self.root)
        seen = set(paths)
        for gone in set(self._runs) - seen:
            del self._runs[gone]
        now = self.clock()
        summaries = []
        for path in paths:
            tracked = self._runs.get(path)
            if tracked is None:
                tracked = self._runs[path] = _Tracked(path, rundir.LineTail(path / rundir.ALERTS_FILE))
            self._refresh(tracked)
            summaries.append(self._summary(tracked, now))
        return summaries

    def _refresh(self, tracked: _Tracked) -> None:
        try:
            info = (tracked.path / rundir.STATUS_FILE).stat()
            key = (info.st_mtime_ns, info.st_ino, info.st_size)
        except OSError:
            key = None
        if key is not None and key != tracked.status_key:
            status = rundir.read_status(tracked.path)
            if status:
                tracked.status_key = key
                self._update_rate(tracked, status)
                tracked.status = status
        # Read alerts.jsonl to its end (64 KiB a pass): health is the alerts holding now.
        for _ in range(64):
            lines = tracked.alerts.read_lines()
            if not lines:
                break
            for line in lines:
                try:
                    alert = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(alert, dict):
                    continue
                ident = (str(alert.get("rule", "")), str(alert.get("metric", "")))
                if alert.get("event", "fire") == "clear":
                    tracked.active.pop(ident, None)
                else:
                    tracked.active[ident] = str(alert.get("severity", "warning"))
                    tracked.last_alert = alert

    @staticmethod
    def _update_rate(tracked: _Tracked, status: dict) -> None:
        steps, updated, started = status.get("steps"), status.get("updated"), status.get("started")
        if not isinstance(steps, (int, float)) or not isinstance(updated, (int, float)):
            return
        if tracked.prev is not None and updated > tracked.prev[1] and steps >= tracked.prev[0]:
            tracked.rate = (steps - tracked.prev[0]) / (updated - tracked.prev[1])
        elif isinstance(started, (int, float)) and updated > started:
            tracked.rate = steps / (updated - started)
        tracked.prev = (float(steps), float(updated))

    def _summary(self, tracked: _Tracked, now: float) -> RunSummary:
        status = tracked.status
        state = classify(status, now)
        worst = max(tracked.active.values(), key=lambda s: SEVERITY_RANK.get(s, 1), default=None)
        last = tracked.last_alert
        last_text = ""
        if last is not None:
            last_text = f"{last.get('rule', '?')} @ {last.get('step', '?')}"
        step = status.get("last_step")
        updated = status.get("updated")
        running = state in ("running", "stopping")
        try:
            name = str(tracked.path.relative_to(self.root)) or tracked.path.name
        except ValueError:
            name = tracked.path.name
        if name == ".":
            name = tracked.path.name
        return RunSummary(
            path=tracked.path,
            name=name,
            state=state,
            step=step if isinstance(step, int) and not isinstance(step, bool) else None,
            steps_per_s=tracked.rate if running else None,
            health=worst or "ok",
            active_alerts=len(tracked.active),
            last_alert=last_text,
            updated=float(updated) if isinstance(updated, (int, float)) else None,
            notice=str(status.get("notice") or ""),
        )
