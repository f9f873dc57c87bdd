"""Modal screens: confirm a kill, choose what quitting does to a live run, list the keys,
and one alert's details."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from rldk_tui.safe_text import plain
from rldk_tui.widgets.metric_chart import MetricChart


class ConfirmKillScreen(ModalScreen[bool]):
    """Dismisses True only on an explicit yes (`y` or the button); Esc/`n` cancel."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes, stop it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Stop the run now?", classes="dialog-title")
            yield Static(Text("The monitor kills the trainer's whole process group.\n")
                         + plain(self.run_dir))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop run (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QuitScreen(ModalScreen[str | None]):
    """'stop' | 'leave' | None (cancel). Leaving keeps the headless guardrail on the run."""

    BINDINGS = [
        Binding("s", "answer('stop')", "Stop run and quit"),
        Binding("l", "answer('leave')", "Leave running"),
        Binding("c,escape", "answer(None)", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("The trainer is still running.", classes="dialog-title")
            yield Static("Stop it, or leave it running under the headless guardrail\n"
                         "(reattach later with: rldk-tui watch RUN_DIR)?")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop run (s)", variant="error", id="stop")
                yield Button("Leave running (l)", variant="primary", id="leave")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)


HELP_TEXT = """\
Runs tab (the workspace)
  enter    open the run          space   select it for overlay     p   pin it to the top
Run tab
  /        filter the charts by name (esc clears)     tab   move between charts/tables
  + / -    zoom in / out over steps                   [ / ]  pan left / right
  0        whole history again                        l     log scale (focused chart, or all)
  a        go to the alerts table; enter on an alert opens its details
  esc      back to the Runs tab
Everywhere
  k        stop the run now (asks first; the monitor kills the process group)
  q        quit (asks first while the trainer runs: stop it, or leave it guarded)
  ?        this help        ctrl+pageup / ctrl+pagedown   previous / next tab

The guardrail runs in a separate headless monitor: closing this screen or losing
the SSH connection leaves the run guarded. Reattach with: rldk-tui watch RUN_DIR
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            yield Static(HELP_TEXT)

    def action_close(self) -> None:
        self.dismiss(None)


def scan_command(run_dir: object) -> str:
    return f"rldk-engine scan {shlex.quote(str(run_dir))}"


def alert_facts(alert: dict) -> Text:
    """The alert's own row from alerts.jsonl: what fired, where, and its evidence."""
    text = Text()
    for label, key in (("metric", "metric"), ("step", "step"), ("value", "value"),
                       ("threshold", "threshold"), ("severity", "severity"),
                       ("action", "action")):
        if alert.get(key) is not None:
            text.append(f"{label} ", style="dim")
            text.append_text(plain(alert[key]))
            text.append("   ")
    if alert.get("message"):
        text.append("\n")
        text.append_text(plain(alert["message"]))
    evidence = alert.get("evidence")
    if isinstance(evidence, dict) and evidence:
        text.append("\nevidence: ", style="bold")
        text.append_text(plain(", ".join(f"{k}={v}" for k, v in evidence.items())))
    return text


def rule_advice(rule_id: str, rule_text: str | None) -> Text:
    """What the rule usually means and what to try, from the rule registry."""
    from rldk_engine.rulebook import rule_info

    info = rule_info(rule_id)
    text = Text()
    if rule_text:
        text.append("rule in force: ", style="bold")
        text.append_text(plain(rule_text))
        text.append("\n")
    if info is None:
        text.append("no entry for this rule in the rule registry", style="dim")
        return text
    text.append_text(plain(info.title, "bold"))
    text.append("\nwhat it usually means: ", style="bold")
    text.append_text(plain(info.meaning))
    if info.fixes:
        text.append("\nwhat to try:", style="bold")
        for fix in info.fixes:
            text.append("\n  • ")
            text.append_text(plain(fix))
    return text


class AlertScreen(ModalScreen[None]):
    """One alert opened from the alerts table: rule, evidence, its window on the chart,
    the registry's meaning and fixes, and the offline scan command."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, alert: dict, run_dir: object, chart: MetricChart | None,
                 rule_text: str | None) -> None:
        super().__init__()
        self.alert = alert
        self.run_dir = run_dir
        self.chart = chart
        self.rule_text = rule_text

    def compose(self) -> ComposeResult:
        rule = str(self.alert.get("rule", "?"))
        with VerticalScroll(classes="dialog alert-dialog"):
            yield Label(plain(f"alert {rule} at step {self.alert.get('step', '?')}"),
                        classes="dialog-title")
            yield Static(alert_facts(self.alert), classes="alert-facts")
            if self.chart is not None:
                yield self.chart
            yield Static(rule_advice(rule, self.rule_text), classes="alert-advice")
            yield Static(Text("scan offline: ", style="bold") + plain(scan_command(self.run_dir)),
                         classes="alert-scan")

    def action_close(self) -> None:
        self.dismiss(None)
