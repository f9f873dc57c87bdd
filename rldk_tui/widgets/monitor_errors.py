"""One line with the monitor's own problems (status.json "errors", e.g. an unwritable run
dir or a full disk): the trainer keeps running, but what it writes may be lost."""

from __future__ import annotations

from textual.widgets import Static

from rldk_tui.rundir import monitor_errors_text


class MonitorErrors(Static):
    _shown: str | None = None

    def show(self, status: dict) -> None:
        text = monitor_errors_text(status)
        if text == self._shown:
            return  # called ~10x/s: no reflow unless the words change
        self._shown = text
        self.display = text is not None
        if text is not None:
            self.update(text)
