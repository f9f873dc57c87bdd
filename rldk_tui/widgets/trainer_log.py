"""Bounded pane of the trainer's raw output (monitor.log); written in batches, as plain
text with control characters escaped."""

from __future__ import annotations

from textual.widgets import Log

from rldk_tui.safe_text import escape_controls


class TrainerLog(Log):
    """Always follows the tail: it is a live view, the whole output is in monitor.log."""

    DEFAULT_CSS = """
    TrainerLog { height: 1fr; border: round $primary 50%; }
    """

    def __init__(self, max_lines: int = 1000, **kwargs) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=False, **kwargs)

    def add_lines(self, lines: tuple[str, ...]) -> None:
        if lines:
            self.write_lines([escape_controls(line) for line in lines[-(self.max_lines or 1000):]],
                             scroll_end=False)
            # Scroll once layout knows the new height (Log's own check can miss a batch
            # written before the first layout, and then never scrolls again).
            self.call_after_refresh(self._follow)

    def _follow(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self) -> None:
        self.call_after_refresh(self._follow)
