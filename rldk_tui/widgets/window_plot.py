"""One metric of a scanned run, its whole history across the panel's width, with the
selected anomaly's step window shaded (drawn by rldk_tui.chart, like the Run tab)."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from rldk_tui.chart import PALETTE, ChartSpec, Line, Marker, render_chart
from rldk_tui.safe_text import plain


class WindowPlot(Widget):
    DEFAULT_CSS = """
    WindowPlot { height: 10; border: round $accent 50%; }
    """

    series: reactive[tuple[tuple[int, ...], tuple[float, ...]]] = reactive(((), ()))
    window: reactive[tuple[int, int] | None] = reactive(None)

    def show(self, steps: list[int], values: list[float], window: tuple[int, int] | None,
             title: str = "") -> None:
        self.border_title = plain(title)
        self.series = (tuple(steps), tuple(values))
        self.window = window

    def render(self) -> Text:
        steps, values = self.series
        if not steps:
            return Text("select an anomaly to plot its metric", style="dim")
        line = Line("", np.asarray(steps, dtype=float), np.asarray(values, dtype=float),
                    PALETTE[0])
        markers = [Marker(float(self.window[0]), "critical")] if self.window else []
        spec = ChartSpec([line], window=self.window, markers=markers)
        return render_chart(spec, self.content_size.width, self.content_size.height)
