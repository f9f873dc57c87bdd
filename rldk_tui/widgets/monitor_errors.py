"""One line with the monitor's own problems (status.json "errors", e.g. an unwritable run
dir or a full disk): the trainer keeps running, but what it writes may be lost."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from rldk_tui.rundir import monitor_errors_text
from rldk_tui.safe_text import plain


class MonitorErrors(Static):
    DEFAULT_CSS = """
    MonitorErrors {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        background: $warning 30%;
    }
    """

    text: reactive[str | None] = reactive(None)

    def on_mount(self) -> None:
        self.display = False

    def show(self, status: dict) -> None:
        self.text = monitor_errors_text(status)  # unchanged words: no watcher, no reflow

    def watch_text(self, text: str | None) -> None:
        self.display = text is not None
        if text is not None:
            self.update(plain(text))
