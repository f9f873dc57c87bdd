"""The Live tab's header: command, pid, elapsed time, steps/s and the run's state."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from rldk_tui.safe_text import escape_controls


def format_elapsed(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class RunHeader(Static):
    """Reactive fields; the LiveView sets them at most ~10 times a second."""

    DEFAULT_CSS = """
    RunHeader {
        height: 2;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        padding: 0 1;
        background: $boost;
    }
    """

    command: reactive[str] = reactive("")
    pid: reactive[int | None] = reactive(None)
    elapsed: reactive[float | None] = reactive(None)
    steps_per_s: reactive[float | None] = reactive(None)
    step: reactive[int | None] = reactive(None)
    state_text: reactive[str] = reactive("waiting for monitor")
    state_kind: reactive[str] = reactive("idle")  # running | alert | done | idle
    skipped: reactive[int] = reactive(0)  # run.jsonl lines that were not a JSON object
    notice: reactive[str] = reactive("")  # status.json "notice": e.g. no metrics recognised yet

    def watch_notice(self, notice: str) -> None:
        self.styles.height = 3 if notice else 2  # a fixed height: lines never wrap

    def render(self) -> Text:
        rate = "--" if self.steps_per_s is None else f"{self.steps_per_s:,.1f}"
        step = "--" if self.step is None else str(self.step)
        pid = "--" if self.pid is None else str(self.pid)
        line1 = Text.assemble(("$ ", "bold"), (escape_controls(self.command) or "(no command)", "bold"))
        state_style = {
            "running": "bold green",
            "alert": "bold white on red",
            "done": "bold yellow",
        }.get(self.state_kind, "bold")
        # State first: at 80 columns the numbers may be cut, the state never is.
        line2 = Text.assemble(
            (f" {escape_controls(self.state_text)} ", state_style),
            ("   pid ", "dim"), pid,
            ("   elapsed ", "dim"), format_elapsed(self.elapsed),
            ("   step ", "dim"), step,
            ("   steps/s ", "dim"), rate,
        )
        if self.skipped:
            line2.append(f"   skipped {self.skipped} bad line(s)", style="yellow")
        lines = [line1, line2]
        if self.notice:
            lines.append(Text("notice: " + escape_controls(self.notice), style="bold yellow"))
        text = Text("\n").join(lines)
        text.no_wrap, text.overflow = True, "ellipsis"  # a long command must not hide the state
        return text
