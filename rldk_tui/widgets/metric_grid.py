"""Every metric a run logs as a grid of MetricCharts: the six key metrics first, filtered
by name (`/`), as many columns as the terminal's width allows."""

from __future__ import annotations

from textual.containers import Grid
from textual.reactive import reactive

from rldk_tui.live_state import ordered_metrics
from rldk_tui.widgets.metric_chart import MetricChart


def columns_for(width: int) -> int:
    """Charts side by side: one under 100 columns, two up to 170, three beyond."""
    return 1 if width < 100 else 2 if width < 170 else 3


def chart_height(height: int) -> int:
    """Taller charts on a tall terminal; at 24 rows two charts still fit beside the rest."""
    return 12 if height >= 50 else 10 if height >= 36 else 8


def matches(metric: str, text: str) -> bool:
    """Every space-separated word of the filter appears in the name (case-insensitive)."""
    name = metric.lower()
    return all(word in name for word in text.lower().split())


class MetricGrid(Grid):
    DEFAULT_CSS = """
    MetricGrid {
        grid-size: 2;
        grid-gutter: 0 1;
        grid-rows: 10;
        height: auto;
    }
    """

    filter_text: reactive[str] = reactive("")
    chart_rows: reactive[int] = reactive(10)  # each chart's height, set by `fit`

    def charts(self) -> dict[str, MetricChart]:
        return {chart.metric: chart for chart in self.query_children(MetricChart)}

    def ensure(self, metrics: list[str]) -> dict[str, MetricChart]:
        """A chart for each metric, in key-first order; returns all of them by name."""
        existing = self.charts()
        missing = [m for m in metrics if m not in existing]
        if missing:
            order = ordered_metrics([*existing, *missing])
            for metric in missing:
                chart = MetricChart(metric)
                chart.display = matches(metric, self.filter_text)
                chart.styles.height = self.chart_rows
                later = [existing[m] for m in order[order.index(metric) + 1:] if m in existing]
                if later:
                    self.mount(chart, before=later[0])
                else:
                    self.mount(chart)
                existing[metric] = chart
        return existing

    def shown_charts(self) -> list[MetricChart]:
        return [chart for chart in self.query_children(MetricChart) if chart.display]

    def watch_filter_text(self, text: str) -> None:
        for metric, chart in self.charts().items():
            chart.display = matches(metric, text)

    def fit(self, width: int, height: int) -> None:
        """Columns and chart height for a terminal of this size."""
        self.styles.grid_size_columns = columns_for(width)
        self.chart_rows = chart_height(height)

    def watch_chart_rows(self, rows: int) -> None:
        self.styles.grid_rows = str(rows)
        for chart in self.query_children(MetricChart):
            chart.styles.height = rows
