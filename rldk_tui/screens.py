"""Modal screens: confirm a kill, choose what quitting does to a live run, list the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


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
            yield Static(f"The monitor kills the trainer's whole process group.\n{self.run_dir}")
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
k        stop the run now (asks first; the monitor kills the process group)
q        quit (asks first while the trainer runs: stop it, or leave it guarded)
?        this help
tab      move focus (switch, tables, inputs); space/enter toggles the switch
ctrl+pageup / ctrl+pagedown   previous / next tab (or click the tab)

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
