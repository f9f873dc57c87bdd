"""The Determinism tab: run replicas via rldk_engine.determinism and show the card."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Static

from rldk_tui.numbers import format_value
from rldk_tui.safe_text import escape_controls, plain


@dataclass(frozen=True)
class ReplicaRow:
    """A copy of one engine ReplicaProgress, safe to hand to the UI thread."""

    index: int
    state: str
    steps: int
    exit_code: int | None
    latest: dict
    max_diff: float | None


def copy_progress(progress: list) -> list[ReplicaRow]:
    # Called on the engine's thread: copy now, the replicas' readers keep writing.
    return [
        ReplicaRow(i, str(p.state), int(p.steps), p.exit_code, dict(p.latest), p.max_diff)
        for i, p in enumerate(progress)
    ]


def replica_cells(row: ReplicaRow, compare: list[str]) -> tuple[str, ...]:
    diff = "--" if row.max_diff is None else format_value(row.max_diff)
    return (str(row.index), row.state, str(row.steps),
            "--" if row.exit_code is None else str(row.exit_code),
            latest_text(row.latest, compare), diff)


def latest_text(latest: dict, metrics: list[str]) -> str:
    names = [m for m in metrics if m in latest] or list(latest)[:3]
    text = "  ".join(f"{name}={format_value(float(latest[name]))}" for name in names) or "--"
    return escape(escape_controls(text))  # a DataTable string cell is read as markup


def card_text(card: dict) -> str:
    if card.get("error"):
        return f"COULD NOT RUN: {card['error']}"
    verdict = "PASSED" if card.get("passed") else "FAILED"
    lines = [f"{verdict}: {card.get('replicas')} replicas, {card.get('mismatches')} mismatched "
             f"cells beyond tolerance {card.get('tolerance')}"]
    culprits = card.get("culprit_metrics") or []
    lines.append("culprits: " + (", ".join(culprits) if culprits else "none"))
    for metric in culprits:
        diff = card.get("max_abs_diff", {}).get(metric)
        first = card.get("first_divergence", {}).get(metric)
        lines.append(f"  {metric}: max |diff| {diff}, first divergence at step {first}")
    recs = card.get("recommendations") or []
    if recs:
        lines.append("recommendations:")
        lines += [f"  • {rec}" for rec in recs]
    return "\n".join(lines)


class DeterminismView(Vertical):
    class Finished(Message):
        def __init__(self, card: dict) -> None:
            super().__init__()
            self.card = card

    def __init__(self, command: str = "", replicas: int = 2, metrics: str = "",
                 out_dir: str = "rldk_reports/determinism", **kwargs) -> None:
        super().__init__(**kwargs)
        self.command, self.replicas, self.metrics, self.out_dir = command, replicas, metrics, out_dir
        self.running = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="det-row"):
            yield Label("command", classes="det-label")
            yield Input(self.command, placeholder="python train.py --seed 1", id="det-cmd")
        with Horizontal(classes="det-row"):
            yield Label("replicas", classes="det-label")
            yield Input(str(self.replicas), type="integer", id="det-replicas")
            yield Label("metrics", classes="det-label")
            yield Input(self.metrics, placeholder="kl,reward_mean (empty: all shared)",
                        id="det-metrics")
            yield Button("Run", id="det-go", variant="primary")
        yield Label("", id="det-status")
        table: DataTable[str] = DataTable(id="det-replicas-table", cursor_type="row")
        table.border_title = "replicas"
        yield table
        card = Static("", id="det-card")
        card.border_title = "verdict"
        yield card

    def on_mount(self) -> None:
        self.query_one("#det-replicas-table", DataTable).add_columns(
            "replica", "state", "steps", "exit", "latest values", "max diff so far")

    def compare_list(self) -> list[str]:
        text = self.query_one("#det-metrics", Input).value
        return [m.strip() for m in text.split(",") if m.strip()]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "det-go":
            self.start()

    def start(self) -> None:
        if self.running:
            return
        command = self.query_one("#det-cmd", Input).value.strip()
        try:
            replicas = int(self.query_one("#det-replicas", Input).value or "0")
        except ValueError:
            replicas = 0
        if not command or replicas < 2:
            self.query_one("#det-status", Label).update(
                "need a command and at least 2 replicas")
            return
        self.running = True
        self.query_one("#det-status", Label).update(plain(f"running {replicas} replicas of: {command}"))
        self.query_one("#det-card", Static).update("")
        self.run_check(command, replicas, self.compare_list())

    @work(thread=True, exclusive=True, group="determinism")
    def run_check(self, command: str, replicas: int, compare: list[str]) -> None:
        from pathlib import Path

        from rldk_engine.determinism import DeterminismError, check_command

        def on_tick(progress: list) -> None:
            self.app.call_from_thread(self.show_progress, copy_progress(progress), compare)

        try:
            result = check_command(shlex.split(command), compare=compare, replicas=replicas,
                                   out_dir=Path(self.out_dir), on_tick=on_tick)
        except (DeterminismError, OSError) as error:
            self.app.call_from_thread(self.show_card, {"error": str(error)})
            return
        self.app.call_from_thread(self.show_card, result.card)

    def show_progress(self, rows: list[ReplicaRow], compare: list[str]) -> None:
        """~10x/s while replicas run: update changed cells in place (no table rebuild)."""
        table = self.query_one("#det-replicas-table", DataTable)
        if table.row_count != len(rows):
            table.clear()
            for row in rows:
                table.add_row(*replica_cells(row, compare), key=str(row.index))
            return
        for row in rows:
            for column, cell in enumerate(replica_cells(row, compare)):
                if table.get_cell_at(Coordinate(row.index, column)) != cell:
                    table.update_cell_at(Coordinate(row.index, column), cell)

    def show_card(self, card: dict) -> None:
        """Also the entry point for snapshots (inject a card)."""
        self.running = False
        self.query_one("#det-status", Label).update(
            plain(f"card: {self.out_dir}/determinism_card.json" if not card.get("error") else ""))
        widget = self.query_one("#det-card", Static)
        widget.update(plain(card_text(card)))
        widget.set_class(not card.get("passed"), "-failed")
        self.post_message(self.Finished(card))
