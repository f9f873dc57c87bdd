"""In-process guardrails for Hugging Face / TRL trainers (optional extra `hf`).

    from rldk_engine.integrations.hf import RLDKCallback
    trainer = Trainer(..., callbacks=[RLDKCallback(preset="ppo", run_dir="runs/rldk")])

Every `on_log` row is mapped through the alias table (rldk_engine.ingest.parse.canonical_metrics), fed to
the streaming rules (rldk_engine.live.rules.Guard) and written to the same run directory the
monitor writes (run.jsonl, alerts.jsonl, status.json), so `rldk-tui watch RUN_DIR` and
`rldk-engine scan RUN_DIR/run.jsonl` work on it. A stop rule sets
`control.should_training_stop`; the Trainer then ends after the current step.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from rldk_engine.integrations import missing_extra_message

try:
    from transformers import TrainerCallback
except ImportError as exc:  # the extra is optional; say which one to install
    raise ImportError(missing_extra_message("hf", "rldk_engine.integrations.hf")) from exc

import orjson

from rldk_engine.ingest.parse import canonical_metrics
from rldk_engine.live import protocol
from rldk_engine.live.protocol import ControlChannel, RunDirLocked, canonical_row, parse_flag
from rldk_engine.live.rules import Alert, Guard, Rule

logger = logging.getLogger("rldk")

# HF logs a final summary row (runtime, flops); it is not a training step.
_SUMMARY_KEYS = ("train_runtime", "total_flos")


class RunDirWriter:
    """The monitor's run-directory files (run.jsonl, alerts.jsonl, status.json), written
    from inside the training process through the shared protocol writer (lock, whole
    lines, no symlinks, atomic status). Raises RunDirLocked when a monitor holds the dir."""

    def __init__(self, run_dir: Path, preset: str | None):
        self.run_dir = run_dir
        self.errors: list[str] = []
        self.files = protocol.RunDirWriter(run_dir, self.report, log=False)
        self.status: dict[str, Any] = {
            "monitor_pid": os.getpid(), "child_pid": os.getpid(), "pgid": None,
            "cmd": list(sys.argv), "run_dir": str(run_dir), "preset": preset,
            "started": time.time(), "updated": time.time(), "state": "running",
            "stop_reason": None, "stop_rule": None, "stop_step": None, "exit_code": None,
            "auto_stop": True, "steps": 0, "last_step": None, "lines": 0, "errors": self.errors,
        }
        self.write_status(force=True)

    def report(self, message: str) -> None:
        """Artifact problems are logged once and never stop training."""
        if message not in self.errors:
            self.errors.append(message)
            logger.warning("rldk: %s", message)

    def row(self, step: int, metrics: dict[str, float]) -> None:
        self.files.run_file.write(canonical_row(step, time.time(), metrics))
        self.status["steps"] += 1
        self.status["lines"] += 1
        self.status["last_step"] = step
        self.write_status()

    def alert(self, alert: Alert) -> None:
        self.files.alerts_file.write(orjson.dumps(alert.to_dict()) + b"\n")

    def write_status(self, force: bool = False, **changes: Any) -> None:
        self.status.update(changes)
        if not force and not self.files.status.due():
            return
        self.status["updated"] = time.time()
        self.files.status.write(self.status)

    def close(self, stopped: bool) -> None:
        self.files.close_files()
        self.write_status(force=True, state="stopped" if stopped else "exited",
                          exit_code=protocol.EXIT_STOPPED if stopped else 0)
        self.files.close()


class RLDKCallback(TrainerCallback):
    """Streaming guardrails on every `on_log`; stops training when a stop rule fires.

    preset: "ppo" or "grpo" rules (ignored when `rules` is given).
    rules: a list of `Rule`s or the path of a rules YAML file.
    run_dir: where run.jsonl/alerts.jsonl/status.json go; default `<output_dir>/rldk`.
    auto_stop: False keeps alerting but never stops the trainer.
    """

    def __init__(
        self,
        preset: str | None = "ppo",
        rules: list[Rule] | str | os.PathLike | None = None,
        run_dir: str | os.PathLike | None = None,
        auto_stop: bool = True,
    ):
        self.guard = Guard(preset=preset, rules=rules)
        self.preset = preset if rules is None else None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.auto_stop = auto_stop
        self.alerts: list[Alert] = []
        self.stop_rule: str | None = None
        self.stop_step: int | None = None
        self.writer: RunDirWriter | None = None
        self.control: ControlChannel | None = None
        self.stopped_by_user = False

    @property
    def stopped(self) -> bool:
        return self.stop_rule is not None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.run_dir is None:
            self.run_dir = Path(args.output_dir) / "rldk"
        # every rank sees the same logs and decides the same; one rank writes the files
        if state.is_world_process_zero and self.writer is None:
            try:
                self.writer = RunDirWriter(self.run_dir, self.preset)
                self.writer.status["auto_stop"] = self.auto_stop
            except RunDirLocked as exc:  # guard anyway; the files belong to the other writer
                logger.warning("rldk: %s", exc)
        # every rank reads the same control file, so a stop from `rldk-tui watch` (key k,
        # the auto-stop switch) reaches all ranks at the same step
        if self.control is None:
            self.control = ControlChannel(self.run_dir / protocol.CONTROL_JSONL,
                                          lambda message: logger.warning("rldk: %s", message))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or any(key in logs for key in _SUMMARY_KEYS):
            return
        metrics = canonical_metrics(logs)
        if not metrics:
            return
        step = int(state.global_step)
        if self.writer is not None:
            self.writer.row(step, metrics)
        for alert in self.guard.observe(step, metrics).alerts:
            self._handle_alert(alert, control)

    def _handle_alert(self, alert: Alert, control) -> None:
        self.alerts.append(alert)
        if self.writer is not None:
            self.writer.alert(alert)
        if alert.event != "fire":
            logger.info("rldk: [clear] %s", alert.message)
            return
        stop = alert.action == "stop" and self.auto_stop
        if not stop:
            suffix = " (auto-stop off)" if alert.action == "stop" else ""
            logger.warning("rldk: [%s] %s at step %s: %s%s", alert.severity, alert.rule,
                           alert.step, alert.message, suffix)
            return
        control.should_training_stop = True
        if self.stopped:
            return
        self.stop_rule, self.stop_step = alert.rule, alert.step
        logger.warning("rldk: guardrail %s fired at step %s (%s) -> stopping training: %s",
                       alert.rule, alert.step, _value_text(alert), alert.message)
        if self.writer is not None:
            self.writer.write_status(force=True, state="stopping", stop_reason="guardrail",
                                     stop_rule=alert.rule, stop_step=alert.step)

    def on_step_end(self, args, state, control, **kwargs):
        for cmd in self.control.poll() if self.control is not None else ():
            self._handle_command(cmd, int(state.global_step))
        if (self.stopped and self.auto_stop) or self.stopped_by_user:
            control.should_training_stop = True  # keep the request alive if something reset it

    def _handle_command(self, cmd: dict, step: int) -> None:
        action = cmd.get("action")
        if action == "stop" and not self.stopped_by_user:
            self.stopped_by_user = True
            logger.warning("rldk: stop requested by %s at step %s -> stopping training",
                           cmd.get("by", "a client"), step)
            if self.writer is not None:
                self.writer.write_status(force=True, state="stopping", stop_reason="user", stop_step=step)
        elif action == "auto_stop":
            self.auto_stop = parse_flag(cmd.get("enabled", True))
            logger.warning("rldk: auto-stop %s", "on" if self.auto_stop else "off")
            if self.writer is not None:
                self.writer.write_status(force=True, auto_stop=self.auto_stop)

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close(stopped=self.stopped or self.stopped_by_user)
            self.writer = None


def _value_text(alert: Alert) -> str:
    if alert.value is None:
        return alert.metric
    return f"{alert.metric}={alert.value:.4g}" + (
        f", threshold {alert.threshold:.4g}" if alert.threshold is not None else "")
