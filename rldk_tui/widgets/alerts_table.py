"""Alerts DataTable: newest last, capped (the full history stays in alerts.jsonl)."""

from __future__ import annotations

import time

from textual.widgets import DataTable

from rldk_tui.widgets.metric_pane import format_value

COLUMNS = ("time", "step", "rule", "metric", "value", "threshold", "severity", "action")
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def alert_cells(alert: dict) -> tuple:
    from rich.text import Text

    stamp = alert.get("time")
    when = time.strftime("%H:%M:%S", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "--"

    def number(value: object) -> str:
        if isinstance(value, (int, float)):
            return format_value(float(value))
        return "--" if value is None else str(value)

    severity = str(alert.get("severity", ""))
    return (
        when,
        str(alert.get("step", "--")),
        str(alert.get("rule", "")),
        str(alert.get("metric", "")),
        number(alert.get("value")),
        number(alert.get("threshold")),
        Text(severity, style=SEVERITY_STYLE.get(severity, "")),
        str(alert.get("action", "")),
    )


class AlertsTable(DataTable):
    def __init__(self, max_rows: int = 300, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.max_rows = max_rows

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def add_alerts(self, alerts: tuple[dict, ...]) -> None:
        if not alerts:
            return
        alerts = alerts[-self.max_rows:]
        self.add_rows(alert_cells(alert) for alert in alerts)
        excess = self.row_count - self.max_rows
        if excess > 0:
            # remove_row is O(n): trim in one batch, a quarter of the cap at a time.
            excess = max(excess, self.max_rows // 4)
            for key in list(self.rows)[:excess]:
                self.remove_row(key)
        self.move_cursor(row=self.row_count - 1)
