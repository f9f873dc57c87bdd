"""The Runs tab: every run directory under a folder, one row each, updated live.

A thread worker polls a WorkspaceScanner once a second and posts the summaries; the table
is updated cell by cell (rows only move when the order changes). Enter opens a run
(`WorkspaceView.OpenRun`), space selects runs to overlay, `p` pins a run to the top.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Label
from textual.worker import get_current_worker

from rldk_tui.safe_text import plain
from rldk_tui.workspace import RunSummary, WorkspaceScanner, format_age

COLUMNS = ("", "run", "state", "health", "step", "steps/s", "last alert", "age")
STATE_STYLE = {
    "running": "bold green", "stopping": "bold yellow", "stopped by guardrail": "bold red",
    "crashed": "bold magenta", "stale": "yellow", "finished": "green",
    "stopped by user": "cyan", "no status": "dim",
}
HINT = "enter: open   space: select to overlay   p: pin   q: quit   ?: keys"
EMPTY_HINT = ("no run directories here yet: start one with  rldk-tui run -- python train.py  "
              "or  rldk-engine monitor --run-dir DIR -- CMD  (they appear as they start)")
HEALTH_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red", "info": "cyan"}
STATE_ORDER = {"running": 0, "stopping": 0, "stale": 1, "stopped by guardrail": 2,
               "crashed": 3, "stopped by user": 4, "stopped": 4, "finished": 5}


def row_cells(run: RunSummary, now: float, selected: bool, pinned: bool) -> tuple:
    mark = ("▸" if selected else " ") + ("⚑" if pinned else " ")
    rate = "--" if run.steps_per_s is None else f"{run.steps_per_s:,.1f}"
    health = run.health if run.health == "ok" else f"{run.health} ({run.active_alerts})"
    age = format_age(now - run.updated if run.updated is not None else None)
    name = run.name if len(run.name) <= 32 else "…" + run.name[-31:]
    return (
        Text(mark, style="bold cyan"),
        plain(name),
        plain(run.state, STATE_STYLE.get(run.state, "")),
        plain(health, HEALTH_STYLE.get(run.health, "")),
        Text("--" if run.step is None else str(run.step), justify="right"),
        Text(rate, justify="right"),
        plain(run.last_alert or "--"),
        Text(age, justify="right"),
    )


class WorkspaceView(Vertical):
    DEFAULT_CSS = """
    WorkspaceView { height: 1fr; }
    WorkspaceView #workspace-title { height: 1; padding: 0 1; background: $boost; }
    WorkspaceView #workspace-runs { height: 1fr; border: round $primary 50%; }
    WorkspaceView #workspace-hint { height: 1; padding: 0 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("space", "select", "Select to overlay"),
        Binding("p", "pin", "Pin"),
    ]

    class OpenRun(Message):
        def __init__(self, path: Path, overlays: list[Path]) -> None:
            super().__init__()
            self.path = path
            self.overlays = overlays

    class RunsUpdated(Message):
        def __init__(self, runs: list[RunSummary], now: float) -> None:
            super().__init__()
            self.runs = runs
            self.now = now

    class GuardrailStopped(Message):
        """A run seen running is now stopped by its guardrail (the app rings the bell)."""

        def __init__(self, run: RunSummary) -> None:
            super().__init__()
            self.run = run

    selected: reactive[frozenset[Path]] = reactive(frozenset())
    pinned: reactive[frozenset[Path]] = reactive(frozenset())

    def __init__(self, root: Path | None, clock=time.time, poll_s: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root) if root is not None else None
        self.clock = clock
        self.poll_s = poll_s
        self.runs: list[RunSummary] = []
        self._now = 0.0
        self._order: list[Path] = []
        self._row_cells: dict[Path, tuple] = {}  # cells as drawn: DataTable updates per cell
        self._states: dict[Path, str] = {}
        self._behind = False

    def compose(self) -> ComposeResult:
        title = Text("runs under ", style="bold")
        title.append_text(plain(self.root if self.root is not None else "(no folder)"))
        yield Label(title, id="workspace-title")
        yield DataTable(id="workspace-runs", cursor_type="row", zebra_stripes=True)
        yield Label(HINT, id="workspace-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name or "mark")
        if self.root is not None:
            self.scan()

    @work(thread=True, exclusive=True, group="workspace")
    def scan(self) -> None:
        if self.root is None:
            return
        scanner = WorkspaceScanner(self.root, clock=self.clock)
        worker = get_current_worker()
        while not worker.is_cancelled:
            started = time.monotonic()
            runs = scanner.poll()
            if worker.is_cancelled:
                return
            self.post_message(self.RunsUpdated(runs, self.clock()))  # thread-safe
            time.sleep(max(0.05, self.poll_s - (time.monotonic() - started)))

    def sort_key(self, run: RunSummary) -> tuple:
        # Live runs rewrite status.json twice a second: ordering them by that time would
        # reorder (and rebuild) the whole table on every poll, so they sort by name; runs
        # that ended sort newest first (their time no longer moves).
        state = STATE_ORDER.get(run.state, 6)
        recency = 0.0 if state == 0 else -(run.updated or 0.0)
        return (run.path not in self.pinned, state, recency, run.name)

    def on_workspace_view_runs_updated(self, event: RunsUpdated) -> None:
        event.stop()
        for run in event.runs:
            before = self._states.get(run.path)
            if before in ("running", "stopping") and run.state == "stopped by guardrail":
                self.post_message(self.GuardrailStopped(run))
            self._states[run.path] = run.state
        self.runs, self._now = event.runs, event.now
        if all(node.display for node in self.ancestors_with_self if isinstance(node, Widget)):
            self.redraw()
        else:
            self._behind = True  # another tab is shown: redraw when this one is

    def redraw(self) -> None:
        table = self.query_one(DataTable)
        self.query_one("#workspace-hint", Label).update(HINT if self.runs else EMPTY_HINT)
        runs = sorted(self.runs, key=self.sort_key)
        order = [run.path for run in runs]
        rows = {run.path: row_cells(run, self._now, run.path in self.selected,
                                    run.path in self.pinned) for run in runs}
        if order != self._order:
            current = self.cursor_path()
            table.clear()
            for path in order:
                table.add_row(*rows[path], key=str(path))
            self._order, self._row_cells = order, rows
            if current in order:
                table.move_cursor(row=order.index(current))
            return
        for path in order:
            if rows[path] == self._row_cells.get(path):
                continue
            for column, (old, new) in enumerate(zip(self._row_cells[path], rows[path], strict=True)):
                if old != new:
                    table.update_cell(str(path), COLUMNS[column] or "mark", new)
            self._row_cells[path] = rows[path]

    def focus_table(self) -> None:
        """The tab was activated: catch up on what changed while hidden, take the keys."""
        if self._behind:
            self._behind = False
            self.redraw()
        self.query_one(DataTable).focus()

    def cursor_path(self) -> Path | None:
        table = self.query_one(DataTable)
        if not self._order or table.cursor_row < 0 or table.cursor_row >= len(self._order):
            return None
        return self._order[table.cursor_row]

    def action_select(self) -> None:
        path = self.cursor_path()
        if path is not None:
            self.selected = self.selected ^ {path}

    def action_pin(self) -> None:
        path = self.cursor_path()
        if path is not None:
            self.pinned = self.pinned ^ {path}

    def watch_selected(self) -> None:
        if self.is_mounted:
            self.redraw()

    def watch_pinned(self) -> None:
        if self.is_mounted:
            self.redraw()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        path = Path(str(event.row_key.value))
        overlays = [p for p in self._order if p in self.selected and p != path]
        self.post_message(self.OpenRun(path, overlays))
