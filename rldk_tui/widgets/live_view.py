"""The Run tab: a client of one run directory (header, charts, alerts, raw log, switch),
with other runs or a baseline overlaid on its charts.

One thread worker tails the directory (and the overlaid ones) into LiveStates; a 10 Hz
timer copies a snapshot into the widgets. Nothing here signals a pid: stop and auto-stop
go to control.jsonl.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label, Switch
from textual.worker import get_current_worker

from rldk_engine.live.protocol import ControlCommand, auto_stop_command, stop_command
from rldk_tui import rundir
from rldk_tui.chart import PALETTE, Line, Marker, full_range
from rldk_tui.guardrails import RulesInForce, rules_in_force
from rldk_tui.live_state import LiveSnapshot, LiveState, RunDirTailer
from rldk_tui.safe_text import plain
from rldk_tui.series import SeriesView
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.gpu_strip import GpuStrip
from rldk_tui.widgets.metric_chart import MetricChart
from rldk_tui.widgets.metric_grid import MetricGrid
from rldk_tui.widgets.monitor_errors import MonitorErrors
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner
from rldk_tui.widgets.trainer_log import TrainerLog

MONITOR_GRACE_S = 1.5  # a monitor that exited this long ago without a final status failed
CHART_REDRAW_S = 0.25  # charts of a streaming run redraw at most 4x/s (keys stay snappy)


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


def baseline_series(path: str) -> dict[str, SeriesView]:
    """Any format rldk reads (rldk_engine.ingest.readers), as one series per metric."""
    from rldk_engine.ingest.readers import read_run

    run = read_run(path)
    steps = run.steps.astype(float)
    series = {}
    for name in run.metrics:
        values = run.columns[name]
        series[name] = SeriesView(steps, values, float(values[-1]) if len(values) else math.nan,
                                  math.nan, math.nan, len(values))
    return series


def zoomed(extent: tuple[float, float], view: tuple[float, float] | None,
           factor: float) -> tuple[float, float] | None:
    """The step range after zooming by `factor` (<1 in) about the view's centre; None
    when that covers the whole run."""
    low, high = view or extent
    centre, half = (low + high) / 2, (high - low) / 2 * factor
    half = max(half, 2.0)
    if half * 2 >= extent[1] - extent[0]:
        return None
    low, high = centre - half, centre + half
    if low < extent[0]:
        low, high = extent[0], extent[0] + 2 * half
    if high > extent[1]:
        low, high = extent[1] - 2 * half, extent[1]
    return low, high


def panned(extent: tuple[float, float], view: tuple[float, float] | None,
           fraction: float) -> tuple[float, float] | None:
    if view is None:
        return None
    shift = (view[1] - view[0]) * fraction
    shift = max(extent[0] - view[0], min(shift, extent[1] - view[1]))
    return view[0] + shift, view[1] + shift


class LiveView(Vertical):
    """Watches `run_dir`; with `launch_cmd` it first starts the headless monitor there."""

    DEFAULT_CSS = """
    LiveView { height: 1fr; }
    LiveView #chart-filter { height: 1; border: none; padding: 0 1; display: none; }
    LiveView #chart-filter.-shown { display: block; }
    LiveView #charts { height: 1fr; min-height: 8; }
    LiveView #live-bottom { height: 9; }
    LiveView TrainerLog { width: 1fr; }
    LiveView AlertsTable { width: 2fr; }
    LiveView #live-controls { height: 1; padding: 0 1; }
    LiveView #auto-stop-label { padding: 0 1 0 0; }
    LiveView #auto-stop { height: 1; border: none; padding: 0; }
    LiveView #run-dir-label { padding: 0 0 0 2; color: $text-muted; }
    """

    class RunStateChanged(Message):
        def __init__(self, active: bool, status: dict) -> None:
            super().__init__()
            self.active = active
            self.status = status

    x_range: reactive[tuple[float, float] | None] = reactive(None)
    log_all: reactive[bool] = reactive(False)

    def __init__(
        self,
        run_dir: Path | None,
        launch_cmd: list[str] | None = None,
        preset: str | None = None,
        rules: str | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 0.1,
        gpu: bool = True,
        overlays: list[Path] | None = None,
        baseline: str | None = None,
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
        self.state = LiveState()
        self.overlay_dirs = [Path(p) for p in overlays or [] if Path(p) != self.run_dir]
        self.overlay_states = {path: LiveState(log_cap=1) for path in self.overlay_dirs}
        self.baseline_path = baseline
        self.baseline: dict[str, SeriesView] = {}
        self.monitor: subprocess.Popen | None = None
        self.rows_shown = 0
        self.snapshot: LiveSnapshot | None = None
        self.guardrails: RulesInForce = rules_in_force(preset, rules)
        self._last_version = -1
        self._charts_drawn_at = 0.0
        self._charts_version = -1  # the LiveState version the charts show
        self._active = False
        self._monitor_exit_seen: float | None = None
        self._gone_shown: str | None = None
        self._auto_stop_sent: tuple[bool, float] | None = None
        self._seen_active = False
        self._rang_for: object = None
        # The monitor ignores control lines written before it started: hold them until
        # its first status.json shows it is up.
        self._pending_control: list[ControlCommand] = []

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield GpuStrip(enabled=self.gpu, id="gpu-strip")
        yield StopBanner(id="stop-banner")
        yield MonitorErrors(id="monitor-errors")
        yield Input(placeholder="filter metrics by name (esc clears)", id="chart-filter")
        with VerticalScroll(id="charts"):
            yield MetricGrid(id="metric-grid")
        with Horizontal(id="live-bottom"):
            yield AlertsTable(id="alerts")
            yield TrainerLog(id="trainer-log")
        with Horizontal(id="live-controls"):
            yield Label("auto-stop on guardrail", id="auto-stop-label")
            yield Switch(value=True, id="auto-stop")
            yield Label("", id="run-dir-label")

    def on_mount(self) -> None:
        self.query_one(TrainerLog).border_title = "trainer output"
        if self.run_dir is None:
            self.query_one(RunHeader).state_text = "no run attached (rldk-tui run / watch)"
            return
        self.query_one("#run-dir-label", Label).update(plain(f"run dir: {self.run_dir}"))
        if self.launch_cmd:
            self.query_one(RunHeader).command = " ".join(self.launch_cmd)
            self.monitor = rundir.launch_monitor(self.launch_cmd, self.run_dir, self.preset,
                                                 self.rules)
        if self.baseline_path:
            self.load_baseline(self.baseline_path)
        self.tail()
        self.set_interval(self.refresh_s, self.refresh_view)

    def on_resize(self) -> None:
        height = self.app.size.height
        self.query_one(MetricGrid).fit(self.size.width, height)
        # A short terminal keeps room for one chart: smaller alerts/log panes and a
        # two-line stop banner (title and resume line).
        short = height < 36
        self.query_one("#live-bottom").styles.height = 6 if short else 9
        self.query_one(StopBanner).styles.max_height = 2 if short else 4

    # -- I/O -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="tail")
    def tail(self) -> None:
        if self.run_dir is None:
            return
        tailers = [RunDirTailer(self.run_dir, self.state)]
        tailers += [RunDirTailer(path, state, with_log=False)
                    for path, state in self.overlay_states.items()]
        worker = get_current_worker()
        while not worker.is_cancelled:
            started = time.perf_counter()
            busy = False
            for tailer in tailers:
                busy = tailer.poll() or busy
            # Parsing is CPU-bound Python holding the GIL: after each chunk (<= 64 KiB a
            # file) sleep as long as it took, so the event loop always gets at least half
            # of the interpreter and keys and redraws never queue behind a backlog.
            time.sleep(max(0.002, time.perf_counter() - started) if busy else 0.05)

    class BaselineLoaded(Message):
        def __init__(self, series: dict[str, SeriesView], error: str | None) -> None:
            super().__init__()
            self.series = series
            self.error = error

    @work(thread=True, exclusive=True, group="baseline")
    def load_baseline(self, path: str) -> None:
        try:
            series, error = baseline_series(path), None
        except Exception as exc:  # noqa: BLE001 - one line in a notification, never a traceback
            series, error = {}, f"{type(exc).__name__}: {exc}"
        self.post_message(self.BaselineLoaded(series, error))  # thread-safe; no widget access

    def on_live_view_baseline_loaded(self, event: BaselineLoaded) -> None:
        event.stop()
        if event.error:
            self.notify(f"baseline {self.baseline_path}: {event.error}", severity="error",
                        markup=False)
        self.baseline = event.series
        self.refresh_view(force=True)

    # -- down: push a snapshot into the widgets --------------------------------------------
    def _is_shown(self) -> bool:
        """False while another tab is active (its TabPane has display: none)."""
        return all(node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def refresh_view(self, force: bool = False) -> None:
        """The ~10 Hz tick. Hidden: only the run state (kill key, held commands) is kept
        current, nothing is drawn and new alerts/log lines wait, bounded, in the state.
        `force` (tab activation, a key) redraws everything at once."""
        if self.run_dir is None or not self.is_mounted:
            return
        if not force and not self._is_shown():
            status = self.state.status_copy()
            self._track_run(status, self._dir_gone() or self._supervisor_gone(status))
            return
        snap = self.state.snapshot()
        status = snap.status
        # the preset may arrive in status.json after the rows: its thresholds redraw the charts
        force = self._take_preset(status) or force
        dir_gone = self._dir_gone()
        gone = dir_gone or self._supervisor_gone(status)
        header = self.query_one(RunHeader)
        self._show_elapsed(header, status, gone)
        if snap.version == self._last_version and gone == self._gone_shown and not force:
            if self._charts_version != snap.version:
                self._draw_charts_when_due(snap)  # a redraw skipped to keep 4 Hz, made up
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
        header.notice = str(status.get("notice") or "")
        header.state_text, header.state_kind = header_state(status)
        if dir_gone:
            header.state_text, header.state_kind = dir_gone, "alert"
        elif gone:
            header.state_text, header.state_kind = rundir.supervisor_gone_text(status, gone), "alert"
        self.rows_shown = snap.rows
        self.snapshot = snap
        self._draw_charts_when_due(snap, force)
        self.query_one(AlertsTable).add_alerts(snap.new_alerts)
        self.query_one(TrainerLog).add_lines(snap.new_log_lines)
        banner = self.query_one(StopBanner)
        banner.status = status
        banner.override = ((dir_gone.upper() if dir_gone else gone_banner(status))
                           if gone else None)
        self.query_one(MonitorErrors).show(status)
        self._ring_on_stop(status)
        self._track_run(status, gone)

    def _take_preset(self, status: dict) -> bool:
        """Adopt the preset the monitor runs with (unless rules were given); True when the
        thresholds drawn on the charts changed."""
        preset = status.get("preset")
        if not preset or preset == self.preset or self.rules:
            return False
        self.preset = str(preset)
        self.guardrails = rules_in_force(self.preset, None)
        return True

    def _draw_charts_when_due(self, snap: LiveSnapshot, force: bool = False) -> None:
        """Charts of a streaming run redraw at most every CHART_REDRAW_S; the data they
        skipped is drawn on a later tick even when nothing new arrives by then."""
        now = time.monotonic()
        if force or now - self._charts_drawn_at >= CHART_REDRAW_S:
            self._charts_drawn_at, self._charts_version = now, snap.version
            self.draw_charts(snap)

    def _ring_on_stop(self, status: dict) -> None:
        """The terminal bell once, when a run we watched going is stopped by its guardrail."""
        if rundir.is_active(status) and status.get("stop_reason") != "guardrail":
            self._seen_active = True
            return
        stop = (status.get("stop_rule"), status.get("stop_step"))
        if self._seen_active and status.get("stop_reason") == "guardrail" and stop != self._rang_for:
            self._rang_for = stop
            self.app.bell()

    def overlay_lines(self, metric: str) -> list[tuple[str, SeriesView]]:
        out = []
        for path, state in self.overlay_states.items():
            view = state.series_view(metric)
            if view is not None and len(view.steps):
                out.append((path.name, view))
        if metric in self.baseline:
            out.append((f"baseline {Path(str(self.baseline_path)).name}", self.baseline[metric]))
        return out

    def draw_charts(self, snap: LiveSnapshot) -> None:
        grid = self.query_one(MetricGrid)
        names = list(snap.series)
        names += [m for m in self.baseline if m not in snap.series]
        charts = grid.ensure(names)
        markers_by_metric: dict[str, list[Marker]] = {}
        for alert in snap.alert_history:
            step = alert.get("step")
            if isinstance(step, (int, float)) and not isinstance(step, bool):
                markers_by_metric.setdefault(str(alert.get("metric", "")), []).append(
                    Marker(float(step), str(alert.get("severity", "warning"))))
        name = self.run_dir.name if self.run_dir else "run"
        for metric, chart in charts.items():
            if not chart.display:
                continue
            view = snap.series.get(metric)
            lines = []
            if view is not None:
                lines.append(Line(name, view.steps, view.values, PALETTE[0]))
            for index, (label, other) in enumerate(self.overlay_lines(metric), start=1):
                lines.append(Line(label, other.steps, other.values, PALETTE[index % len(PALETTE)]))
            markers = markers_by_metric.get(metric, [])
            markers += [Marker(step, "critical") for step in (view.non_finite_steps if view else ())]
            low = view.low if view is not None else 0.0
            chart.set_data(lines, self.guardrails.thresholds(metric, low), markers,
                           view.current if view is not None else math.nan,
                           snap.alerting.get(metric, ()))

    # -- keys (bound on the app; it calls these while this tab is shown) ---------------------
    def extent(self) -> tuple[float, float] | None:
        if self.snapshot is None:
            return None
        lines = [Line("", v.steps, v.values, "") for v in self.snapshot.series.values()]
        return full_range(lines)

    def zoom(self, factor: float) -> None:
        extent = self.extent()
        if extent is not None:
            self.x_range = zoomed(extent, self.x_range, factor)

    def pan(self, fraction: float) -> None:
        extent = self.extent()
        if extent is not None:
            self.x_range = panned(extent, self.x_range, fraction)

    def reset_zoom(self) -> None:
        self.x_range = None

    def watch_x_range(self, x_range: tuple[float, float] | None) -> None:
        for chart in self.query(MetricChart):
            chart.x_range = x_range

    def toggle_log(self) -> None:
        """The focused chart alone, or every chart when none has focus."""
        focused = self.app.focused
        if isinstance(focused, MetricChart) and focused in self.query(MetricChart):
            focused.log_scale = not focused.log_scale
        else:
            self.log_all = not self.log_all

    def watch_log_all(self, value: bool) -> None:
        for chart in self.query(MetricChart):
            chart.log_scale = value

    def open_filter(self) -> None:
        box = self.query_one("#chart-filter", Input)
        box.add_class("-shown")
        box.focus()

    def close_filter(self) -> bool:
        """Esc: clears and hides the filter; False when it was not open."""
        box = self.query_one("#chart-filter", Input)
        if not box.has_class("-shown"):
            return False
        box.value = ""
        box.remove_class("-shown")
        self.app.set_focus(None)
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "chart-filter":
            event.stop()
            self.query_one(MetricGrid).filter_text = event.value
            self.refresh_view(force=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "chart-filter":
            event.stop()
            charts = self.query_one(MetricGrid).shown_charts()
            if charts:
                charts[0].focus()

    def focus_alerts(self) -> None:
        self.query_one(AlertsTable).focus()

    def alert_chart(self, alert: dict) -> MetricChart | None:
        """The alerted metric's chart around the alert's window, for the alert panel."""
        metric = str(alert.get("metric", ""))
        snap = self.snapshot
        view = snap.series.get(metric) if snap is not None else None
        if view is None:
            return None
        window = self.guardrails.window(alert)
        chart = MetricChart(metric)
        lines = [Line(self.run_dir.name if self.run_dir else "run", view.steps, view.values,
                      PALETTE[0])]
        for index, (label, other) in enumerate(self.overlay_lines(metric), start=1):
            lines.append(Line(label, other.steps, other.values, PALETTE[index % len(PALETTE)]))
        markers = [Marker(float(a["step"]), str(a.get("severity", "warning")))
                   for a in (snap.alert_history if snap is not None else ())
                   if a.get("metric") == metric and isinstance(a.get("step"), int)]
        if window is not None and len(view.steps):
            span = max(20.0, float(window[1] - window[0]) * 4)
            low = max(float(view.steps[0]), window[0] - span)
            high = min(float(view.steps[-1]), window[1] + span)
            chart.x_range = (low, high) if high > low else None
        chart.set_data(lines, self.guardrails.thresholds(metric, view.low), markers, view.current,
                       (), window)
        return chart

    def _track_run(self, status: dict, gone: str | None) -> None:
        """Run state for the bindings, and commands held until the monitor is up."""
        if status and self._pending_control and not gone and self.run_dir is not None:
            for message in self._pending_control:
                rundir.send_control(self.run_dir, message)
            self._pending_control.clear()
        self._sync_switch(status)
        # A dead supervisor cannot act on a stop: nothing the app may do runs any more.
        active = (rundir.is_active(status) or (not status and self._monitor_alive())) \
            and not gone
        # Only a change of "does it run" matters to the app (the kill key, quitting): a
        # status.json rewritten twice a second must not rebuild the footer each time.
        if active != self._active:
            self._active = active
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
        self._send(auto_stop_command(bool(event.value)))
        self._auto_stop_sent = (event.value, time.monotonic())

    @property
    def is_running(self) -> bool:
        return self._active

    def request_stop(self) -> None:
        self._send(stop_command("rldk-tui"))

    def _send(self, message: ControlCommand) -> None:
        if self.run_dir is None:
            return
        if self.monitor is not None and not self.state.status:
            self._pending_control.append(message)
        else:
            try:
                rundir.send_control(self.run_dir, message)
            except OSError as error:  # run dir deleted or unwritable: say so, never crash
                self.notify(f"cannot reach the monitor: {error}", severity="error", markup=False)

    async def flush_control(self, wait_s: float = 5.0) -> None:
        """Before exiting: deliver held commands once the monitor is up (bounded wait,
        awaited, so the UI keeps drawing meanwhile)."""
        if not self._pending_control or self.run_dir is None:
            return
        deadline = time.monotonic() + wait_s
        while not rundir.read_status(self.run_dir) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for message in self._pending_control:
            rundir.send_control(self.run_dir, message)
        self._pending_control.clear()
