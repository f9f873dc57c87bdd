"""Grid of MetricPanes, one per key metric the run has (KL first)."""

from __future__ import annotations

from textual.containers import Grid

from rldk_tui.rundir import PaneData
from rldk_tui.widgets.metric_pane import MetricPane


class MetricGrid(Grid):
    def show(self, panes: tuple[PaneData, ...]) -> None:
        existing = {pane.metric: pane for pane in self.query(MetricPane)}
        new_panes = []
        for data in panes:
            if data.name not in existing:
                pane = MetricPane(data.name, id=f"pane-{len(existing)}")
                existing[data.name] = pane
                new_panes.append(pane)
            existing[data.name].show(data.points, data.current, data.low, data.high,
                                     data.alerting)
        if new_panes:
            self.mount(*new_panes)  # one mount, one layout pass for all of them
