"""In-process guardrails for Hugging Face / TRL trainers (optional extra `hf`).

    from rldk_engine.integrations.hf import RLDKCallback
    trainer = Trainer(..., callbacks=[RLDKCallback(preset="ppo", run_dir="runs/rldk")])

Every `on_log` row is mapped through the alias table (rldk_engine.ingest.parse.canonical_metrics), fed to
the streaming rules (rldk_engine.live.rules.Guard) and written to the same run directory the
monitor writes (run.jsonl, alerts.jsonl, status.json), so `rldk-tui watch RUN_DIR` and
`rldk-engine scan RUN_DIR/run.jsonl` work on it. A stop rule sets
`control.should_training_stop`; the Trainer then ends after the current step.

Keeping the work: with `save_on_stop=True` (the default) the stop also sets
`control.should_save`, so the Trainer writes `<output_dir>/checkpoint-N` at the step it
stops (Hugging Face does not save on its own when training is stopped between save_steps);
the folder is recorded in status.json "checkpoint_saved", and the resume plan (last healthy
step, newest checkpoint at or before it, fixes) in status.json "resume".

`exit_code_on_stop=3` (opt-in; default None leaves the exit code alone): when the run was
stopped by a guardrail or a stop request, the Python process ends with that code, the one
`rldk-engine monitor` uses, so shell scripts and schedulers see the stop. How: an atexit
hook registered when the callback is created runs after the script's own code (everything
after `trainer.train()` still runs), flushes stdout/stderr and logging, and calls
`os._exit(code)`; exit hooks registered before the callback was created (rare: modules that
register at import) are skipped. An uncaught exception keeps Python's own exit code 1.

`notify=[URL, ...]`: Apprise URLs that get critical alerts and the stop (rldk_engine.live.notify).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from rldk_engine.ingest.parse import canonical_metrics
from rldk_engine.integrations import missing_extra_message
from rldk_engine.live import protocol
from rldk_engine.live.protocol import ControlChannel, RunDirLocked, canonical_row, parse_flag
from rldk_engine.live.rules import Alert, Guard, Rule
from rldk_engine.resume import ResumeTracker, write_plans

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


class _RLDKCallbackLogic:
    """Streaming guardrails on every `on_log`; stops training when a stop rule fires.

    preset: "ppo" or "grpo" rules (ignored when `rules` is given).
    rules: a list of `Rule`s or the path of a rules YAML file.
    run_dir: where run.jsonl/alerts.jsonl/status.json go; default `<output_dir>/rldk`.
    auto_stop: False keeps alerting but never stops the trainer.
    save_on_stop: save a checkpoint at the step training stops (default True).
    exit_code_on_stop: end the Python process with this code after a stop (default None:
        unchanged; 3 is what `rldk-engine monitor` returns). See the module docstring.
    notify: Apprise URLs for critical alerts and the stop (e.g. ["ntfy://my-topic"]); a URL
        Apprise does not understand raises NotifyError (a ValueError) here, not mid-training.
    """

    def __init__(
        self,
        preset: str | None = "ppo",
        rules: list[Rule] | str | os.PathLike | None = None,
        run_dir: str | os.PathLike | None = None,
        auto_stop: bool = True,
        save_on_stop: bool = True,
        exit_code_on_stop: int | None = None,
        notify: list[str] | tuple[str, ...] | None = None,
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
        self.save_on_stop = save_on_stop
        self.checkpoint_saved: str | None = None
        self.resume_plan: dict[str, Any] | None = None
        self.notify_urls = list(notify or [])
        self.notifier: Any = None
        self._apprise: Any = None
        if self.notify_urls:  # a URL Apprise cannot use fails here, before training starts
            from rldk_engine.live.notify import build_apprise

            self._apprise = build_apprise(self.notify_urls)
        self.tracker = ResumeTracker()
        self._output_dir: Path | None = None
        self._stop_saved = False
        self.exit_code_on_stop = exit_code_on_stop
        if exit_code_on_stop is not None:
            _ExitCode.arm()

    @property
    def stopped(self) -> bool:
        return self.stop_rule is not None

    def on_train_begin(self, args, state, control, **kwargs):
        self._output_dir = Path(args.output_dir)
        if self.run_dir is None:
            self.run_dir = Path(args.output_dir) / "rldk"
        # every rank sees the same logs and decides the same; one rank writes the files
        if state.is_world_process_zero and self.writer is None:
            try:
                self.writer = RunDirWriter(self.run_dir, self.preset)
                self.writer.status["auto_stop"] = self.auto_stop
            except RunDirLocked as exc:  # guard anyway; the files belong to the other writer
                logger.warning("rldk: %s", exc)
            if self.notify_urls and self.notifier is None:
                from rldk_engine.live.notify import Notifier

                self.notifier = Notifier(self.notify_urls, run=str(self.run_dir),
                                         log_path=self.run_dir / protocol.MONITOR_LOG,
                                         report=lambda m: logger.warning("rldk: %s", m),
                                         apprise_obj=self._apprise)
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
        self.tracker.step(step)
        if self.writer is not None:
            self.writer.row(step, metrics)
        for alert in self.guard.observe(step, metrics).alerts:
            self._handle_alert(alert, control)

    def _handle_alert(self, alert: Alert, control) -> None:
        self.alerts.append(alert)
        if alert.event == "fire":
            rule = next((r for r in self.guard.engine.rules if r.id == alert.rule), None)
            self.tracker.alert(alert.rule, alert.step, alert.severity, rule.window_n if rule else 1)
        if self.writer is not None:
            self.writer.alert(alert)
        if alert.event != "fire":
            logger.info("rldk: [clear] %s", alert.message)
            if self.notifier is not None:
                self.notifier.alert(alert.to_dict())
            return
        stop = alert.action == "stop" and self.auto_stop
        if self.notifier is not None and not (stop and not self.stopped):
            self.notifier.alert(alert.to_dict())
        if not stop:
            suffix = " (auto-stop off)" if alert.action == "stop" else ""
            logger.warning("rldk: [%s] %s at step %s: %s%s", alert.severity, alert.rule,
                           alert.step, alert.message, suffix)
            return
        control.should_training_stop = True
        self._save_now(control)
        if self.stopped:
            return
        self.stop_rule, self.stop_step = alert.rule, alert.step
        logger.warning("rldk: guardrail %s fired at step %s (%s) -> stopping training: %s",
                       alert.rule, alert.step, _value_text(alert), alert.message)
        if self.writer is not None:
            self.writer.write_status(force=True, state="stopping", stop_reason="guardrail",
                                     stop_rule=alert.rule, stop_step=alert.step)
        if self.notifier is not None:
            self.notifier.stop("guardrail", alert.step, alert.to_dict(), plan=self._plan)

    def _save_now(self, control) -> None:
        """Ask the Trainer to save at this step (it checks should_save right after on_log
        and on_step_end); once per stop."""
        if self.save_on_stop and not self._stop_saved:
            control.should_save = True
            self._stop_saved = True

    def _plan(self) -> dict[str, Any]:
        dirs = [self._output_dir] if self._output_dir is not None else []
        scan = f"rldk-engine scan {self.run_dir / 'run.jsonl'}" if self.run_dir else ""
        return self.tracker.plan(dirs, scan)

    def on_save(self, args, state, control, **kwargs):
        if not self._stop_saved or self.checkpoint_saved is not None:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            self.checkpoint_saved = str(path)
            logger.warning("rldk: saved %s at the stop step", path)
            if self.writer is not None:
                self.writer.write_status(force=True, checkpoint_saved=self.checkpoint_saved)

    def on_step_end(self, args, state, control, **kwargs):
        for cmd in self.control.poll() if self.control is not None else ():
            self._handle_command(cmd, int(state.global_step))
        if (self.stopped and self.auto_stop) or self.stopped_by_user:
            control.should_training_stop = True  # keep the request alive if something reset it
            self._save_now(control)

    def _handle_command(self, cmd: dict, step: int) -> None:
        action = cmd.get("action")
        if action == "stop" and not self.stopped_by_user:
            self.stopped_by_user = True
            logger.warning("rldk: stop requested by %s at step %s -> stopping training",
                           cmd.get("by", "a client"), step)
            if self.writer is not None:
                self.writer.write_status(force=True, state="stopping", stop_reason="user", stop_step=step)
            if self.notifier is not None:
                self.notifier.stop("user", step, None, plan=self._plan)
        elif action == "auto_stop":
            self.auto_stop = parse_flag(cmd.get("enabled", True))
            logger.warning("rldk: auto-stop %s", "on" if self.auto_stop else "off")
            if self.writer is not None:
                self.writer.write_status(force=True, auto_stop=self.auto_stop)

    def on_train_end(self, args, state, control, **kwargs):
        stopped = self.stopped or self.stopped_by_user
        if self.writer is not None:
            if stopped:
                self.resume_plan = self._plan()
                self.writer.write_status(force=True, resume=self.resume_plan)
                try:
                    write_plans([{"run_id": Path(args.output_dir).name, "source": str(self.writer.run_dir / "run.jsonl"),
                                  "resume": self.resume_plan}], Path(args.output_dir) / "rldk_reports")
                except OSError as exc:
                    self.writer.report(f"cannot write the resume plan: {exc.strerror or exc}")
            self.writer.close(stopped=stopped)
            self.writer = None
        if self.notifier is not None:
            from rldk_engine.live.notify import CLOSE_WAIT

            self.notifier.close(CLOSE_WAIT)  # after training: never delays a step
            self.notifier = None
        if stopped and self.exit_code_on_stop is not None:
            _ExitCode.code = self.exit_code_on_stop
            logger.warning("rldk: the run was stopped; this process will exit with code %s",
                           self.exit_code_on_stop)


class _ExitCode:
    """One process-wide atexit hook that turns a clean exit after a stop into `code`."""

    code: int | None = None
    armed = False
    crashed = False

    @classmethod
    def arm(cls) -> None:
        if cls.armed:
            return
        cls.armed = True
        previous = sys.excepthook

        def excepthook(exc_type, exc, tb):
            cls.crashed = True  # an uncaught exception keeps Python's exit code
            previous(exc_type, exc, tb)

        sys.excepthook = excepthook
        atexit.register(cls._exit)

    @classmethod
    def _exit(cls) -> None:
        if cls.code is None or cls.crashed:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        logging.shutdown()
        os._exit(cls.code)


def _value_text(alert: Alert) -> str:
    if alert.value is None:
        return alert.metric
    return f"{alert.metric}={alert.value:.4g}" + (
        f", threshold {alert.threshold:.4g}" if alert.threshold is not None else "")


def __getattr__(name: str) -> Any:
    if name == "RLDKCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _callback_class() -> type:
    """`RLDKCallback` is a transformers `TrainerCallback`, made on first use: importing this
    module imports neither transformers nor torch (the engine never loads torch at import)."""
    try:
        from transformers import TrainerCallback
    except ImportError as exc:  # the extra is optional; say which one to install
        raise ImportError(missing_extra_message("hf", "rldk_engine.integrations.hf.RLDKCallback")) from exc
    cls = type("RLDKCallback", (_RLDKCallbackLogic, TrainerCallback),
               {"__doc__": _RLDKCallbackLogic.__doc__, "__module__": __name__,
                "__qualname__": "RLDKCallback"})
    globals()["RLDKCallback"] = cls  # later look-ups find it without __getattr__
    return cls
