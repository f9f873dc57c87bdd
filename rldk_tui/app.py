"""RldkApp: tabs Runs (the workspace), Run, Scan and Determinism. Renders and controls;
rldk_engine computes."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, TabbedContent, TabPane

from rldk_tui.screens import AlertScreen, ConfirmKillScreen, HelpScreen, QuitScreen
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.determinism_view import DeterminismView
from rldk_tui.widgets.live_view import LiveView
from rldk_tui.widgets.scan_view import ScanView
from rldk_tui.widgets.workspace_view import WorkspaceView


@dataclass
class AppConfig:
    """What the CLI asked for; tests build one directly."""

    run_dir: Path | None = None
    launch_cmd: list[str] | None = None
    preset: str | None = None
    rules: str | None = None
    scan_paths: list[str] = field(default_factory=list)
    scan_preset: str = "auto"
    initial_tab: str = "live"
    clock: Callable[[], float] = time.time
    gpu: bool = True
    refresh_s: float = 0.1
    determinism: tuple[str, int, str, str] = ("", 2, "", "rldk_reports/determinism")
    workspace: Path | None = None  # the folder the Runs tab lists
    overlays: list[Path] = field(default_factory=list)
    baseline: str | None = None


class RldkApp(App[str | None]):
    """Exit result: None, or 'left-running' when the user left a live run guarded."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "rldk"
    BINDINGS = [
        Binding("k", "kill", "Kill run", priority=True),
        Binding("q", "quit_app", "Quit"),
        Binding("question_mark", "help", "Keys"),
        Binding("ctrl+pagedown", "next_tab", "Next tab", show=False, priority=True),
        Binding("ctrl+pageup", "previous_tab", "Previous tab", show=False, priority=True),
        # The Run tab's keys (check_action greys them out on the other tabs).
        Binding("slash", "run_key('filter')", "Filter"),
        Binding("plus,equals_sign", "run_key('zoom_in')", "Zoom"),
        Binding("minus", "run_key('zoom_out')", "Zoom out", show=False),
        Binding("left_square_bracket", "run_key('pan_left')", "Pan", show=False),
        Binding("right_square_bracket", "run_key('pan_right')", "Pan right", show=False),
        Binding("0", "run_key('reset')", "All steps", show=False),
        Binding("l", "run_key('log')", "Log scale"),
        Binding("a", "run_key('alerts')", "Alerts"),
        Binding("escape", "go_back", "Back", show=False),
    ]
    TABS = ("runs", "live", "scan", "determinism")

    def __init__(self, config: AppConfig | None = None) -> None:
        super().__init__()
        self.config = config or AppConfig()

    def compose(self) -> ComposeResult:
        cfg = self.config
        with TabbedContent(initial=cfg.initial_tab, id="tabs"):
            with TabPane("Runs", id="runs"):
                yield WorkspaceView(cfg.workspace, clock=cfg.clock, id="workspace-view")
            with TabPane("Run", id="live"):
                yield self._live_view(cfg.run_dir, cfg.launch_cmd, cfg.overlays)
            with TabPane("Scan", id="scan"):
                yield ScanView(cfg.scan_paths, preset=cfg.scan_preset, id="scan-view")
            with TabPane("Determinism", id="determinism"):
                yield DeterminismView(*cfg.determinism, id="determinism-view")
        yield Footer()

    def _live_view(self, run_dir: Path | None, launch_cmd: list[str] | None,
                   overlays: list[Path]) -> LiveView:
        cfg = self.config
        return LiveView(run_dir, launch_cmd, cfg.preset, cfg.rules, clock=cfg.clock,
                        refresh_s=cfg.refresh_s, gpu=cfg.gpu, overlays=overlays,
                        baseline=cfg.baseline, id="live-view")

    def on_ready(self) -> None:
        if self.active_tab == "runs":
            self.query_one(WorkspaceView).focus_table()  # keyboard first: enter/space/p
        # Everything built so far (Textual, widgets, CSS, imported modules) lives as long
        # as the app. Freezing it keeps the collector from walking it again: a full
        # collection under a streaming run otherwise stalls keys for 30+ ms.
        gc.freeze()

    @property
    def live(self) -> LiveView:
        return self.query_one(LiveView)

    @property
    def active_tab(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "live":
            self.live.refresh_view(force=True)  # it drew nothing while hidden
        elif event.pane.id == "runs":
            self.query_one(WorkspaceView).focus_table()
        self.refresh_bindings()

    def on_live_view_run_state_changed(self, event: LiveView.RunStateChanged) -> None:
        self.refresh_bindings()  # greys the kill key out once nothing runs

    def on_determinism_view_finished(self, event: DeterminismView.Finished) -> None:
        """Said wherever the user is: a check takes minutes and they may have moved on."""
        card = event.card
        verdict = "could not run" if card.get("error") else \
            "passed" if card.get("passed") else "FAILED"
        self.notify(f"determinism check {verdict}", markup=False,
                    severity="information" if card.get("passed") else "warning")

    # -- the workspace ------------------------------------------------------------------
    async def on_workspace_view_open_run(self, event: WorkspaceView.OpenRun) -> None:
        await self.open_run(event.path, event.overlays)

    def on_workspace_view_guardrail_stopped(self, event: WorkspaceView.GuardrailStopped) -> None:
        self.bell()
        self.notify(f"{event.run.name}: stopped by its guardrail ({event.run.last_alert})",
                    severity="error", markup=False)

    async def open_run(self, path: Path, overlays: list[Path] | None = None) -> None:
        """Show `path` in the Run tab (the run it showed keeps going: only its view goes)."""
        old = self.live
        if old.run_dir == path and list(old.overlay_dirs) == list(overlays or []):
            self.query_one(TabbedContent).active = "live"
            return
        pane = self.query_one("#live", TabPane)
        if old.monitor is not None:
            self.config.launch_cmd = None  # its monitor runs on, detached, as after a quit
        await old.remove()
        await pane.mount(self._live_view(path, None, list(overlays or [])))
        self.query_one(TabbedContent).active = "live"

    def action_go_back(self) -> None:
        if isinstance(self.screen, (AlertScreen, HelpScreen)):
            return
        if self.active_tab == "live":
            if self.live.close_filter():
                return
            if self.config.workspace is not None:
                self.query_one(TabbedContent).active = "runs"

    # -- the Run tab's keys ---------------------------------------------------------------
    def action_run_key(self, key: str) -> None:
        live = self.live
        if key == "filter":
            live.open_filter()
        elif key == "zoom_in":
            live.zoom(0.5)
        elif key == "zoom_out":
            live.zoom(2.0)
        elif key == "pan_left":
            live.pan(-0.25)
        elif key == "pan_right":
            live.pan(0.25)
        elif key == "reset":
            live.reset_zoom()
        elif key == "log":
            live.toggle_log()
        elif key == "alerts":
            live.focus_alerts()

    def on_alerts_table_alert_chosen(self, event: AlertsTable.AlertChosen) -> None:
        live = self.live
        rule = live.guardrails.rule(str(event.alert.get("rule", "")))
        self.push_screen(AlertScreen(event.alert, live.run_dir, live.alert_chart(event.alert),
                                     rule.describe() if rule is not None else None))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "kill":
            try:
                return True if self.live.is_running else None
            except Exception:  # noqa: BLE001 - before compose: nothing to kill yet
                return None
        if action == "run_key":
            try:
                return self.active_tab == "live" and self.live.run_dir is not None
            except Exception:  # noqa: BLE001 - before compose
                return False
        return True

    def action_kill(self) -> None:
        if not self.live.is_running or isinstance(self.screen, ConfirmKillScreen):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.live.request_stop()
                self.notify("stop requested: the monitor is stopping the run")

        self.push_screen(ConfirmKillScreen(str(self.live.run_dir)), answered)

    def action_quit_app(self) -> None:
        if not self.live.is_running:
            self.exit(None)
            return

        async def answered(choice: str | None) -> None:
            if choice == "stop":
                self.live.request_stop()
                await self.live.flush_control()
                self.exit("stopped")
            elif choice == "leave":
                self.exit("left-running")

        self.push_screen(QuitScreen(), answered)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def _switch_tab(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        index = self.TABS.index(tabs.active) if tabs.active in self.TABS else 0
        tabs.active = self.TABS[(index + delta) % len(self.TABS)]

    def action_next_tab(self) -> None:
        self._switch_tab(1)

    def action_previous_tab(self) -> None:
        self._switch_tab(-1)
