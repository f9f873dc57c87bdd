"""One metric: title, sparkline of recent finite points, current value and min/max."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


def format_value(value: float, digits: int = 4) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


class MetricPane(Vertical):
    """Turns to the alert colour (class `-alert`) while any rule on its metric holds."""

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self._data: tuple | None = None
        self._texts: tuple[str, str] | None = None  # what the two labels show now

    def compose(self) -> ComposeResult:
        yield Label(self.metric, classes="pane-title")
        yield Sparkline([], summary_function=max)
        yield Label("", classes="pane-stats")

    def show(self, points: tuple[float, ...], current: float, low: float, high: float,
             alerting: tuple[str, ...]) -> None:
        self._data = (points, current, low, high, alerting)
        if self.is_mounted:
            self._apply()

    def on_mount(self) -> None:
        self._apply()

    def _apply(self) -> None:
        if self._data is None:
            return
        points, current, low, high, alerting = self._data
        # Points are finite by construction (LiveState filters them): Sparkline raises on NaN.
        # At most one point per column: more only costs render time, never resolution.
        sparkline = self.query_one(Sparkline)
        width = sparkline.size.width or len(points)
        sparkline.data = list(points[-width:])  # a reactive: repaints only when it differs
        span = "" if not math.isfinite(low) else f"  ▼{format_value(low, 3)} ▲{format_value(high, 3)}"
        title = self.metric + (f"  ⚠ {', '.join(alerting)}" if alerting else "")
        texts = (title, f"now {format_value(current)}{span}")
        if texts != self._texts:
            # Label.update repaints even with the same words: only when they change.
            # Fixed-size lines (see app.tcss): layout=False skips a whole-screen reflow.
            self._texts = texts
            self.query_one(".pane-title", Label).update(texts[0], layout=False)
            self.query_one(".pane-stats", Label).update(texts[1], layout=False)
        self.set_class(bool(alerting), "-alert")
