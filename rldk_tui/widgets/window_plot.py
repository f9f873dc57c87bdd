"""A one-metric strip chart with an anomaly's step window marked (plain text, any width)."""

from __future__ import annotations

import math

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

BLOCKS = "▁▂▃▄▅▆▇█"


def bucket(steps: list[int], values: list[float], width: int) -> list[tuple[int, int, float]]:
    """Split the series into <= width columns: (first step, last step, column max)."""
    n = len(steps)
    if n == 0 or width <= 0:
        return []
    columns = []
    count = min(n, width)  # fractional buckets: the plot fills the width it has
    for index in range(count):
        start, end = index * n // count, (index + 1) * n // count
        chunk = [v for v in values[start:end] if math.isfinite(v)]
        peak = max(chunk) if chunk else math.nan
        columns.append((steps[start], steps[end - 1], peak))
    return columns


def plot_text(steps: list[int], values: list[float], window: tuple[int, int] | None,
              width: int, height: int = 4) -> Text:
    columns = bucket(steps, values, width)
    finite = [c[2] for c in columns if math.isfinite(c[2])]
    if not columns or not finite:
        return Text("no finite values to plot", style="dim")
    low, high = min(finite), max(finite)
    levels = height * len(BLOCKS)
    rows = [Text() for _ in range(height)]
    for first, last, peak in columns:
        inside = window is not None and last >= window[0] and first <= window[1]
        style = "bold red" if inside else "green"
        if not math.isfinite(peak):
            for row in rows:
                row.append("×" if row is rows[-1] else " ", style="magenta")
            continue
        level = 1 + round((peak - low) / (high - low) * (levels - 1)) if high > low else levels // 2
        for index, row in enumerate(rows):
            floor = (height - 1 - index) * len(BLOCKS)
            fill = level - floor
            char = " " if fill <= 0 else BLOCKS[min(fill, len(BLOCKS)) - 1]
            row.append(char, style=style)
    axis = f"step {steps[0]} … {steps[-1]}   range {low:.4g} … {high:.4g}"
    if window is not None:
        axis += f"   window {window[0]}–{window[1]} (red)"
    return Text("\n").join([*rows, Text(axis, style="dim")])


class WindowPlot(Widget):
    """A metric over steps with the anomaly window marked; styles live in app.tcss."""

    title: reactive[str] = reactive("")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._series: tuple[list[int], list[float]] = ([], [])
        self._window: tuple[int, int] | None = None

    def show(self, steps: list[int], values: list[float], window: tuple[int, int] | None,
             title: str = "") -> None:
        self._series, self._window = (list(steps), list(values)), window
        self.border_title = title
        self.refresh()

    def render(self) -> Text:
        steps, values = self._series
        if not steps:
            return Text("select an anomaly to plot its metric", style="dim")
        return plot_text(steps, values, self._window, max(8, self.size.width),
                         max(1, self.size.height - 1))
