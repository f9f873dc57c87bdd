"""The Live tab: a client of one run directory (header, panes, alerts, raw log, switch).

One thread worker tails the directory into a LiveState; a 10 Hz timer copies a snapshot
into the widgets. Nothing here signals a pid: stop and auto-stop go to control.jsonl.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Label, Switch
from textual.worker import get_current_worker

from rldk_tui import rundir
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.gpu_strip import GpuStrip
from rldk_tui.widgets.metric_grid import MetricGrid
from rldk_tui.widgets.monitor_errors import MonitorErrors
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner
from rldk_tui.widgets.trainer_log import TrainerLog

MONITOR_GRACE_S = 1.5  # a monitor that exited this long ago without a final status failed


def gone_banner(status: dict) -> str:
    pgid = status.get("pgid")
    how_to = f"; to stop it: kill -- -{pgid}" if pgid else ""
    return (f"SUPERVISOR GONE: the trainer (pid {status.get('child_pid', '?')}) may still run, "
            f"unguarded, and rldk-tui cannot stop it{how_to}")


def header_state(status: dict) -> tuple[str, str]:
    text = rundir.describe_state(status)
    if status.get("stop_reason") == "guardrail" or status.get("state") in ("failed", "lost"):
        return text, "alert"
    if rundir.is_active(status):
        return text, "running"
    return text, "done" if status else "idle"


class LiveView(Vertical):
    """Watches `run_dir`; with `launch_cmd` it first starts the headless monitor there."""

    class RunStateChanged(Message):
        def __init__(self, active: bool, status: dict) -> None:
            super().__init__()
            self.active = active
            self.status = status

    def __init__(
        self,
        run_dir: Path | None,
        launch_cmd: list[str] | None = None,
        preset: str | None = None,
        rules: str | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 0.1,
        gpu: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.run_dir = Path(run_dir) if run_dir else None
        self.launch_cmd = launch_cmd
        self.preset = preset
        self.rules = rules
        self.clock = clock
        self.refresh_s = refresh_s
        self.gpu = gpu
        self.state = rundir.LiveState()
        self.monitor: subprocess.Popen | None = None
        self.rows_shown = 0
        self._last_version = -1
        self._active = False
        self._status: dict = {}
        self._monitor_exit_seen: float | None = None
        self._gone_shown: str | None = None
        self._auto_stop_sent: tuple[bool, float] | None = None
        # The monitor ignores control lines written before it started: hold them until
        # its first status.json shows it is up.
        self._pending_control: list[dict] = []

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield GpuStrip(enabled=self.gpu, id="gpu-strip")
        yield StopBanner(id="stop-banner")
        yield MonitorErrors(id="monitor-errors")
        yield MetricGrid(id="metric-grid")
        with Horizontal(id="live-bottom"):
            yield AlertsTable(id="alerts")
            yield TrainerLog(id="trainer-log")
        with Horizontal(id="live-controls"):
            yield Label("auto-stop on guardrail", id="auto-stop-label")
            yield Switch(value=True, id="auto-stop")
            yield Label("", id="run-dir-label")

    def on_mount(self) -> None:
        self.query_one(StopBanner).display = False
        self.query_one(MonitorErrors).display = False
        self.query_one(AlertsTable).border_title = "alerts"
        self.query_one(TrainerLog).border_title = "trainer output"
        if self.run_dir is None:
            self.query_one(RunHeader).state_text = "no run attached (rldk-tui run / watch)"
            return
        self.query_one("#run-dir-label", Label).update(f"run dir: {self.run_dir}")
        if self.launch_cmd:
            self.query_one(RunHeader).command = " ".join(self.launch_cmd)
            self.monitor = rundir.launch_monitor(self.launch_cmd, self.run_dir, self.preset,
                                                 self.rules)
        self.tail()
        self.set_interval(self.refresh_s, self.refresh_view)

    # -- I/O -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="tail")
    def tail(self) -> None:
        tailer = rundir.RunDirTailer(self.run_dir, self.state)
        worker = get_current_worker()
        while not worker.is_cancelled:
            started = time.perf_counter()
            busy = tailer.poll()
            # Parsing is CPU-bound Python holding the GIL: after each chunk (<= 64 KiB a
            # file) sleep as long as it took, so the event loop always gets at least half
            # of the interpreter and keys and redraws never queue behind a backlog.
            time.sleep(max(0.002, time.perf_counter() - started) if busy else 0.05)

    # -- down: push a snapshot into the widgets --------------------------------------------
    def _is_shown(self) -> bool:
        """False while another tab is active (its TabPane has display: none)."""
        return all(node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def refresh_view(self, force: bool = False) -> None:
        """The ~10 Hz tick. Hidden: only the run state (kill key, held commands) is kept
        current, nothing is drawn and new alerts/log lines wait, bounded, in the state.
        `force` (tab activation) redraws everything at once."""
        if self.run_dir is None or not self.is_mounted:
            return
        if not force and not self._is_shown():
            status = self.state.status_copy()
            self._track_run(status, self._dir_gone() or self._supervisor_gone(status))
            return
        snap = self.state.snapshot()
        status = snap.status
        dir_gone = self._dir_gone()
        gone = dir_gone or self._supervisor_gone(status)
        header = self.query_one(RunHeader)
        self._show_elapsed(header, status, gone)
        if snap.version == self._last_version and gone == self._gone_shown and not force:
            self._track_run(status, gone)
            return
        self._last_version, self._gone_shown = snap.version, gone
        if status.get("cmd"):
            header.command = " ".join(map(str, status["cmd"]))
        header.pid = status.get("child_pid")
        header.step = snap.last_step
        # Rounded as shown, so an unchanged number does not repaint the header.
        header.steps_per_s = None if snap.steps_per_s is None else round(snap.steps_per_s, 1)
        header.skipped = snap.bad_lines
        header.state_text, header.state_kind = header_state(status)
        if dir_gone:
            header.state_text, header.state_kind = dir_gone, "alert"
        elif gone:
            header.state_text, header.state_kind = rundir.supervisor_gone_text(status, gone), "alert"
        self.rows_shown = snap.rows
        self.query_one(MetricGrid).show(snap.panes)
        self.query_one(AlertsTable).add_alerts(snap.new_alerts)
        self.query_one(TrainerLog).add_lines(snap.new_log_lines)
        self.query_one(StopBanner).show(
            status, (dir_gone.upper() if dir_gone else gone_banner(status)) if gone else None)
        self.query_one(MonitorErrors).show(status)
        self._track_run(status, gone)

    def _track_run(self, status: dict, gone: str | None) -> None:
        """Run state for the bindings, and commands held until the monitor is up."""
        if status and self._pending_control and not gone:
            for message in self._pending_control:
                rundir.send_control(self.run_dir, message)
            self._pending_control.clear()
        self._sync_switch(status)
        # A dead supervisor cannot act on a stop: nothing the app may do runs any more.
        active = (rundir.is_active(status) or (not status and self._monitor_alive())) \
            and not gone
        if active != self._active or status != self._status:
            self._active, self._status = active, status
            self.post_message(self.RunStateChanged(active, status))

    def _show_elapsed(self, header: RunHeader, status: dict, gone: str | None) -> None:
        started = status.get("started")
        if not isinstance(started, (int, float)):
            return
        ticking = rundir.is_active(status) and not gone
        end = self.clock() if ticking else status.get("updated", started)
        # Whole seconds, as shown: the reactive then repaints once a second, not per tick.
        header.elapsed = float(math.floor(float(end) - float(started)))

    def _dir_gone(self) -> str | None:
        """Words for a run directory deleted under us: no status, no control channel."""
        if self.run_dir is None or self.run_dir.is_dir():
            return None
        return f"run directory gone ({self.run_dir}): the run cannot be seen or stopped from here"

    def _monitor_alive(self) -> bool:
        return self.monitor is not None and self.monitor.poll() is None

    def _supervisor_gone(self, status: dict) -> str | None:
        """How the supervisor died (e.g. 'killed by SIGKILL') when it is gone without a
        final status; None while it runs or once it wrote how the run ended. Its own
        child (`run`): the exit code; another's (`watch`): status.json's monitor_pid."""
        if self.monitor is not None:
            code = self.monitor.poll()
            dead = code is not None and (not status or rundir.is_active(status))
            how = rundir.exit_description(code)
        else:
            dead = rundir.is_active(status) and \
                rundir.pid_alive(status.get("monitor_pid")) is False
            how = "is not running"
        if not dead:
            self._monitor_exit_seen = None
            return None
        # A monitor that just wrote its final status.json may exit before we read it.
        if self._monitor_exit_seen is None:
            self._monitor_exit_seen = time.monotonic()
        if time.monotonic() - self._monitor_exit_seen <= MONITOR_GRACE_S:
            return None
        return how

    def _sync_switch(self, status: dict) -> None:
        wanted = status.get("auto_stop")
        if not isinstance(wanted, bool):
            return
        if self._auto_stop_sent is not None:
            value, sent_at = self._auto_stop_sent
            if wanted != value and time.monotonic() - sent_at < 3.0:
                return  # the monitor has not applied our change yet
            self._auto_stop_sent = None
        switch = self.query_one("#auto-stop", Switch)
        if switch.value != wanted:
            with switch.prevent(Switch.Changed):
                switch.value = wanted

    # -- up: user controls, acted on by the monitor ----------------------------------------
    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        if self.run_dir is None:
            return
        self._send({"action": "auto_stop", "enabled": bool(event.value)})
        self._auto_stop_sent = (event.value, time.monotonic())

    @property
    def is_running(self) -> bool:
        return self._active

    def request_stop(self) -> None:
        self._send({"action": "stop", "by": "rldk-tui"})

    def _send(self, message: dict) -> None:
        if self.run_dir is None:
            return
        if self.monitor is not None and not self.state.status:
            self._pending_control.append(message)
        else:
            try:
                rundir.send_control(self.run_dir, message)
            except OSError as error:  # run dir deleted or unwritable: say so, never crash
                self.notify(f"cannot reach the monitor: {error}", severity="error")

    def flush_control(self, wait_s: float = 5.0) -> None:
        """Before exiting: deliver held commands once the monitor is up (bounded wait)."""
        if not self._pending_control or self.run_dir is None:
            return
        deadline = time.monotonic() + wait_s
        while not rundir.read_status(self.run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        for message in self._pending_control:
            rundir.send_control(self.run_dir, message)
        self._pending_control.clear()
