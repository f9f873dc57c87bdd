"""Says plainly why the run ended (guardrail with rule and step, user, exit code)."""

from __future__ import annotations

from textual.widgets import Static


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
    if state == "exited":
        return f"TRAINER EXITED WITH CODE {status.get('exit_code')}"
    if state == "failed":
        errors = status.get("errors") or ["see supervisor.log"]
        return f"MONITOR FAILED: {errors[-1]}"
    return None


class StopBanner(Static):
    _shown: str | None = None

    def show(self, status: dict, override: str | None = None) -> None:
        """`override`: words the status cannot say (the supervisor died without one)."""
        text = override or banner_text(status)
        if text == self._shown:
            return  # called ~10x/s: touch nothing (no reflow) unless the words change
        self._shown = text
        self.display = text is not None
        if text is not None:
            self.update(text)
            self.set_class(override is not None or status.get("stop_reason") == "guardrail",
                           "-guardrail")
