"""RldkApp: tabs Live, Scan and Determinism. Renders and controls; rldk_engine computes."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, TabbedContent, TabPane

from rldk_tui.screens import ConfirmKillScreen, HelpScreen, QuitScreen
from rldk_tui.widgets.determinism_view import DeterminismView
from rldk_tui.widgets.live_view import LiveView
from rldk_tui.widgets.scan_view import ScanView


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


class RldkApp(App[str | None]):
    """Exit result: None, or 'left-running' when the user left a live run guarded."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "rldk"
    BINDINGS = [
        Binding("k", "kill", "Kill run", priority=True),
        Binding("q", "quit_app", "Quit"),
        Binding("question_mark", "help", "Keys"),
        Binding("ctrl+pagedown", "next_tab", "Next tab", show=False),
        Binding("ctrl+pageup", "previous_tab", "Previous tab", show=False),
    ]
    TABS = ("live", "scan", "determinism")

    def __init__(self, config: AppConfig | None = None) -> None:
        super().__init__()
        self.config = config or AppConfig()

    def compose(self) -> ComposeResult:
        cfg = self.config
        with TabbedContent(initial=cfg.initial_tab, id="tabs"):
            with TabPane("Live", id="live"):
                yield LiveView(cfg.run_dir, cfg.launch_cmd, cfg.preset, cfg.rules,
                               clock=cfg.clock, refresh_s=cfg.refresh_s, gpu=cfg.gpu,
                               id="live-view")
            with TabPane("Scan", id="scan"):
                yield ScanView(cfg.scan_paths, preset=cfg.scan_preset, id="scan-view")
            with TabPane("Determinism", id="determinism"):
                yield DeterminismView(*cfg.determinism, id="determinism-view")
        yield Footer()

    def on_ready(self) -> None:
        # Everything built so far (Textual, widgets, CSS, imported modules) lives as long
        # as the app. Freezing it keeps the collector from walking it again: a full
        # collection under a streaming run otherwise stalls keys for 30+ ms.
        gc.freeze()

    @property
    def live(self) -> LiveView:
        return self.query_one(LiveView)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "live":
            self.live.refresh_view(force=True)  # it drew nothing while hidden

    def on_live_view_run_state_changed(self, event: LiveView.RunStateChanged) -> None:
        self.refresh_bindings()  # greys the kill key out once nothing runs

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "kill":
            try:
                return True if self.live.is_running else None
            except Exception:  # noqa: BLE001 - before compose: nothing to kill yet
                return None
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

        def answered(choice: str | None) -> None:
            if choice == "stop":
                self.live.request_stop()
                self.live.flush_control()
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
