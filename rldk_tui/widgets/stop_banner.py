"""Says plainly why the run ended (guardrail with rule and step, user, exit code) and,
after a guardrail stop, the resume plan from status.json "resume"."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from rldk_tui.safe_text import escape_controls, plain


def banner_text(status: dict) -> str | None:
    state, reason = status.get("state"), status.get("stop_reason")
    if state in ("stopped", "stopping") and reason == "guardrail":
        return (f"GUARDRAIL STOPPED THE RUN: rule {status.get('stop_rule')} "
                f"at step {status.get('stop_step')}")
    if state == "stopped" and reason == "user":
        return "RUN STOPPED BY USER"
    if state == "stopped":
        return f"RUN STOPPED ({reason or 'unknown reason'})"
    if state == "lost":  # the monitor died; its watchdog stopped the trainer (protocol.STATES)
        return f"MONITOR LOST: {status.get('notice') or 'the watchdog stopped the trainer'}"
    if state == "lost":  # the monitor died; its watchdog stopped the trainer (protocol.STATES)
        return f"MONITOR LOST: {status.get('notice') or 'the watchdog stopped the trainer'}"
    if state == "exited":
        return f"TRAINER EXITED WITH CODE {status.get('exit_code')}"
    if state == "failed":
        errors = status.get("errors") or ["see supervisor.log"]
        return f"MONITOR FAILED: {errors[-1]}"
    return None


def resume_lines(status: dict) -> list[Text]:
    """status.json "resume" (issue 18): where to restart from and what to change first."""
    plan = status.get("resume")
    if not isinstance(plan, dict):
        checkpoint = status.get("checkpoint_saved")
        return [plain(f"checkpoint saved: {checkpoint}")] if checkpoint else []
    first = Text("resume: ", style="bold")
    healthy = plan.get("last_healthy_step")
    first.append(f"last healthy step {healthy if healthy is not None else 'unknown'}")
    if plan.get("first_bad_step") is not None:
        first.append(f" (first bad step {plan.get('first_bad_step')})")
    checkpoint = plan.get("checkpoint") or status.get("checkpoint_saved")
    first.append("   checkpoint ")
    first.append_text(plain(checkpoint) if checkpoint else Text("none found", style="italic"))
    lines = [first]
    fixes = [escape_controls(fix) for fix in plan.get("fixes") or [] if str(fix).strip()]
    if fixes:
        lines.append(Text("try: ", style="bold") + plain("; ".join(fixes)))
    if plan.get("scan_command"):
        lines.append(Text("scan: ", style="bold") + plain(plan["scan_command"]))
    return lines


class StopBanner(Static):
    """Hidden while the run goes; `status` and `override` are set by the run view."""

    DEFAULT_CSS = """
    StopBanner {
        height: auto;
        max-height: 4;
        padding: 0 1;
        background: $warning 40%;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    StopBanner > .stop-banner--title { text-style: bold; }
    StopBanner.-guardrail { background: $error; color: $text; }
    """

    status: reactive[dict] = reactive(dict, always_update=False)
    # Words the status cannot say (the supervisor died without writing one).
    override: reactive[str | None] = reactive(None)

    def on_mount(self) -> None:
        self._apply()

    def watch_status(self) -> None:
        self._apply()

    def watch_override(self) -> None:
        self._apply()

    def _apply(self) -> None:
        title = self.override or banner_text(self.status)
        self.display = title is not None
        if title is None:
            return
        self.set_class(self.override is not None or self.status.get("stop_reason") == "guardrail",
                       "-guardrail")
        text = plain(title, style="bold")
        if self.override is None and self.status.get("stop_reason") == "guardrail":
            for line in resume_lines(self.status):
                text.append("\n")
                text.append_text(line)
        self.update(text)
