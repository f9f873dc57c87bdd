"""One metric's chart: the whole history with axes, guardrail lines, alert markers and
overlays (rldk_tui.chart draws it; this widget holds what to draw and when to redraw)."""

from __future__ import annotations

import math

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from rldk_tui.chart import ChartSpec, Line, Marker, Threshold, render_chart
from rldk_tui.numbers import format_value
from rldk_tui.safe_text import plain


class MetricChart(Widget, can_focus=True):
    """Focusable (tab moves between charts); class `-alert` while a rule on it holds."""

    DEFAULT_CSS = """
    MetricChart {
        height: 10;
        border: round $primary 40%;
        border-title-color: $accent;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        padding: 0 0;
    }
    MetricChart:focus { border: round $accent; }
    MetricChart.-alert { border: round $error; border-title-color: $error; }
    """

    log_scale: reactive[bool] = reactive(False)
    x_range: reactive[tuple[float, float] | None] = reactive(None)
    alerting: reactive[tuple[str, ...]] = reactive(())
    current: reactive[float] = reactive(math.nan)

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.lines: list[Line] = []
        self.thresholds: list[Threshold] = []
        self.markers: list[Marker] = []
        self.window: tuple[float, float] | None = None

    def on_mount(self) -> None:
        self._update_titles()

    def set_data(self, lines: list[Line], thresholds: list[Threshold], markers: list[Marker],
                 current: float, alerting: tuple[str, ...],
                 window: tuple[float, float] | None = None) -> None:
        self.lines, self.thresholds, self.markers, self.window = lines, thresholds, markers, window
        self.current = current
        self.alerting = alerting
        self.refresh()

    def watch_alerting(self, alerting: tuple[str, ...]) -> None:
        self.set_class(bool(alerting), "-alert")
        self._update_titles()

    def watch_current(self) -> None:
        self._update_titles()

    def watch_log_scale(self) -> None:
        self._update_titles()

    def _update_titles(self) -> None:
        title = plain(self.metric)
        if self.alerting:
            title.append("  ⚠ " + ", ".join(self.alerting))
        self.border_title = title
        sub = Text(f"now {format_value(self.current)}")
        if self.thresholds:
            sub.append(f"  limit {format_value(self.thresholds[0].value, 3)}")
        if self.log_scale:
            sub.append("  log")
        self.border_subtitle = sub

    def render(self) -> Text:
        spec = ChartSpec(self.lines, x_range=self.x_range, log=self.log_scale,
                         thresholds=self.thresholds, markers=self.markers,
                         window=self.window, legend=len(self.lines) > 1)
        return render_chart(spec, self.content_size.width, self.content_size.height)
