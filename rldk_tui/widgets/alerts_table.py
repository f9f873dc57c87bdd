"""Alerts DataTable: newest last, capped (the full history stays in alerts.jsonl).
Enter on a row posts `AlertsTable.AlertChosen` with the alert's row from alerts.jsonl."""

from __future__ import annotations

import time

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from rldk_tui.numbers import format_value
from rldk_tui.safe_text import plain

# Severity and action first: at 80 columns a long metric name cuts the tail, not them.
COLUMNS = ("severity", "action", "step", "rule", "metric", "value", "threshold", "time")
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def alert_cells(alert: dict) -> tuple[Text, ...]:
    stamp = alert.get("time")
    when = time.strftime("%H:%M:%S", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "--"

    def number(value: object) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return format_value(float(value))
        return "--" if value is None else str(value)

    severity = str(alert.get("severity", ""))
    metric = str(alert.get("metric", ""))
    return (
        plain(severity, SEVERITY_STYLE.get(severity, "")),
        plain(alert.get("action", "")),
        plain(alert.get("step", "--")),
        plain(alert.get("rule", "")),
        plain(metric if len(metric) <= 28 else metric[:27] + "…"),
        plain(number(alert.get("value"))),
        plain(number(alert.get("threshold"))),
        Text(when),
    )


class AlertsTable(DataTable):
    DEFAULT_CSS = """
    AlertsTable { height: 1fr; border: round $primary 50%; }
    """

    class AlertChosen(Message):
        def __init__(self, alert: dict) -> None:
            super().__init__()
            self.alert = alert

    def __init__(self, max_rows: int = 300, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.max_rows = max_rows
        self.alerts: dict[str, dict] = {}  # row key -> the alert it shows
        self._next_key = 0

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)
        self.border_title = "alerts (enter: details)"

    def add_alerts(self, alerts: tuple[dict, ...]) -> None:
        if not alerts:
            return
        for alert in alerts[-self.max_rows:]:
            key = str(self._next_key)
            self._next_key += 1
            self.alerts[key] = alert
            self.add_row(*alert_cells(alert), key=key)
        excess = self.row_count - self.max_rows
        if excess > 0:
            # remove_row is O(n): trim in one batch, a quarter of the cap at a time.
            excess = max(excess, self.max_rows // 4)
            for row_key in list(self.rows)[:excess]:
                self.alerts.pop(str(row_key.value), None)
                self.remove_row(row_key)
        self.move_cursor(row=self.row_count - 1)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        alert = self.alerts.get(str(event.row_key.value))
        if alert is not None:
            self.post_message(self.AlertChosen(alert))
