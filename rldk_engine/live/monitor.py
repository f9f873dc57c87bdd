"""The live monitor loop: run a trainer (or tail a log, or read stdin), parse every line,
apply guardrail rules, write the run directory, and stop the trainer's tree on a stop rule.

What it delegates (one owner each):
* rldk_engine.live.protocol    the run directory: file names, whole-line artifact files,
                               status.json, the control channel, the lock;
* rldk_engine.live.process     the trainer's process tree: spawn in a new session, find
                               escaped descendants, escalate signals, leftovers, watchdog;
* rldk_engine.ingest.tail      follow mode's incremental, size-capped, non-blocking reads.

Threads: one reader per child stream (bytes, line by line, passed through to the terminal
at once), the main loop (parse, rules, artifacts, control polling, stall ticks, status) and,
when stopping, one stopper thread that runs the process group's escalation.

Hooks (kept in one place each): every stop goes through `Monitor.request_stop`; the
escalation itself is `Monitor.stop_trainer`; status.json is built by `Monitor.status` (plus
`Monitor.status_extra`) and written only by `Monitor.write_status`.

Stopping well (issue 18): the first signal of a stop is configurable (a trainer's own
checkpoint signal, e.g. SIGUSR1); on a stop the resume plan (rldk_engine.resume: last
healthy step, newest checkpoint at or before it, fixes) goes into status.json "resume", the
summary and `<run_dir>/rldk_reports/resume_plan.json|.txt`; `notify` URLs get critical
alerts and the stop from a background thread (rldk_engine.live.notify), never delaying it.

Artifact failures (ENOSPC, unwritable dir) are reported once per file on stderr and in
status.json "errors"; they never stop the trainer.

Hot path: standard library, orjson, PyYAML, rldk_engine.ingest and rldk_engine.live only.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rldk_engine.ingest.parse import LineParser, Record
from rldk_engine.ingest.ranks import RankMerger
from rldk_engine.ingest.tail import MAX_LINE, FileTail, own_stdin
from rldk_engine.live.process import ProcessGroup, Watchdog, exit_code_of, stop_plan
from rldk_engine.live.protocol import (
    CONTROL_JSONL,
    EXIT_STOPPED,
    MONITOR_LOG,
    RUN_JSONL,
    RunDirLocked,
    RunDirWriter,
    Status,
    canonical_row,
    parse_flag,
)
from rldk_engine.live.rules import Alert, Rule, RuleEngine
from rldk_engine.resume import ResumeTracker, output_dirs_from_cmd, plan_text, write_plans

__all__ = ["EXIT_STOPPED", "Monitor", "MonitorConfig", "MonitorResult", "RunDirLocked",
           "run_monitor", "summary_text", "silence_notice"]

DEFAULT_GRACE_INT = 0.5  # seconds after the first stop signal (SIGINT) before SIGTERM
DEFAULT_GRACE_TERM = 0.5  # seconds after SIGTERM before SIGKILL
DRAIN_AFTER_EXIT = 0.5  # seconds of silence after exit before we stop reading pipes a grandchild still holds
DRAIN_MAX = 10.0  # ... and never longer than this after the trainer exited
BATCH_LINES = 256  # lines handled between two flushes of the artifacts, at most
QUEUE_LINES = 4096  # reader -> main loop backlog; bounded so a fast writer waits instead of growing memory
KEEP_ALERTS = 1000  # alerts kept in memory for the summary; all of them are in alerts.jsonl
CONTROL_POLL = 0.1
TREE_POLL = 1.0  # seconds between two walks of the trainer's process tree (~5 ms each; the
# stop and the exit walk it again, so this only bounds what the watchdog knows)
FOLLOW_POLL = 0.05
KEY_METRICS = ("kl", "approx_kl", "reward_mean", "entropy", "clip_frac", "grad_norm")
SILENCE_LINES = 200  # lines read without one metric before the monitor says so
SILENCE_SECONDS = 120.0  # ... or seconds since the first line
SAMPLE_CHARS = 120
WATCHDOG_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when the watchdog acts
REPORTS_DIR = "rldk_reports"  # under the run directory: the resume plan of a stop


@dataclass
class MonitorConfig:
    rules: list[Rule]
    run_dir: Path
    cmd: list[str] = field(default_factory=list)
    follow: Path | None = None
    stdin: bool = False
    preset: str | None = None
    auto_stop: bool = True
    quiet: bool = False
    grace_int: float = DEFAULT_GRACE_INT  # grace after the first stop signal
    grace_term: float = DEFAULT_GRACE_TERM
    shell: bool = False
    passthrough: bool = True
    stop_signal: int = signal.SIGINT  # the first signal of a stop (a trainer's checkpoint signal)
    watchdog: bool = True  # a helper process stops the trainer if the monitor is SIGKILLed
    notify: list[str] = field(default_factory=list)  # Apprise URLs: critical alerts and the stop
    checkpoints: list[Path] = field(default_factory=list)  # default: output folders named in cmd
    notify_wait: float = 5.0  # seconds the monitor waits at exit for queued messages
    # the CLI: after the run, late INT/TERM/HUP are ignored (the process only prints its
    # summary and exits with the run's code) instead of restoring handlers that would die
    ignore_late_signals: bool = False


@dataclass
class MonitorResult:
    exit_code: int
    stop_reason: str | None
    stop_rule: str | None
    stop_step: int | None
    steps: int
    last_step: int | None
    lines: int
    alerts: list[Alert]
    peaks: dict[str, float]
    run_dir: Path
    errors: list[str]
    n_fired: int = 0  # every fired alert; `alerts` keeps only the first KEEP_ALERTS
    notice: str | None = None
    resume: dict[str, Any] | None = None  # the resume plan of a stop
    resume_path: Path | None = None


def escape_sample(text: str, limit: int = SAMPLE_CHARS) -> str:
    """A trainer line as safe one-line text: control characters escaped, cut at `limit`."""
    out = []
    for ch in text[:limit]:
        out.append(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii"))
    cut = "".join(out)
    return cut + ("…" if len(text) > limit else "")


def silence_notice(lines: int, sample: str | None) -> str:
    """The one-line "I read N lines and recognised no metric" (issue 14)."""
    shown = escape_sample(sample) if sample else "(only empty lines)"
    return (f"no metrics recognised yet — {lines} lines read; sample: {shown}; "
            "see `rldk-engine inspect --stdin`")


# ----------------------------------------------------------------------------- line sources


_EOF = object()


def _pump(stream, name: str, q: queue.Queue, echo) -> None:
    """Read bytes lines (binary-safe, long lines split at MAX_LINE) and queue them."""
    try:
        while True:
            line = stream.readline(MAX_LINE)
            if not line:
                break
            if echo is not None:
                try:
                    echo.write(line)
                    echo.flush()
                except (OSError, ValueError):
                    echo = None  # the terminal went away; the trainer goes on
            q.put((name, line))
    except (OSError, ValueError):
        pass
    finally:
        q.put((name, _EOF))


def _follow(path: Path, q: queue.Queue, stop: threading.Event, echo, report) -> None:
    """Tail a growing file from its start (FileTail: truncation, rotation, size-capped
    non-blocking reads); a special file at the path ends following with a message."""
    tail = FileTail(path, watch_head=True)  # SB3 rewrites progress.csv in place
    try:
        while not stop.is_set():
            try:
                lines = tail.read_lines()
            except OSError as exc:
                report(f"cannot follow {exc}")
                break
            if not lines:
                stop.wait(FOLLOW_POLL)
                continue
            for line in lines:
                line += b"\n"
                if echo is not None:
                    try:
                        echo.write(line)
                        echo.flush()
                    except (OSError, ValueError):
                        echo = None
                q.put(("follow", line))
    finally:
        tail.close()
        q.put(("follow", _EOF))


# ----------------------------------------------------------------------------- the monitor


class Monitor:
    def __init__(self, config: MonitorConfig):
        self.cfg = config
        self.engine = RuleEngine(config.rules)
        self.parser = LineParser()
        self.merger = RankMerger()  # one row per step when several ranks print it
        self.errors: list[str] = []
        self.alerts: list[Alert] = []  # the first KEEP_ALERTS only: memory stays flat on long runs
        self.n_fired = 0
        self.peaks: dict[str, float] = {}
        self.steps = 0
        self.auto_stop = config.auto_stop
        self.state = "starting"
        self.stop_reason: str | None = None
        self.stop_rule: str | None = None
        self.stop_step: int | None = None
        self.exit_code: int | None = None
        self.group: ProcessGroup | None = None
        self.watchdog: Watchdog | None = None
        self.started = time.time()
        self.notice: str | None = None
        self.status_extra: dict[str, Any] = {}  # keys other features add to status.json
        self._sample: str | None = None
        self._first_line_at: float | None = None
        self._silence_said = False
        self._status_dirty = True
        self._stopper: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._signals = 0
        self.out = sys.stdout.buffer if config.passthrough else None
        self.err = sys.stderr.buffer if config.passthrough else None
        # raises RunDirLocked when another monitor writes this run directory
        self.rundir = RunDirWriter(config.run_dir, self.report)
        assert self.rundir.log_file is not None  # the monitor always keeps monitor.log
        self.log_file = self.rundir.log_file
        self.control = self.rundir.control
        self.control_path = config.run_dir / CONTROL_JSONL
        self.tracker = ResumeTracker()
        self.rule_window = {r.id: r.window_n for r in config.rules}
        self.notifier: Any = None
        self.group_stopped = threading.Event()  # set when a stop's escalation is over
        self.resume: dict[str, Any] | None = None
        self.resume_path: Path | None = None

    @property
    def proc(self):
        return self.group.proc if self.group is not None else None

    @property
    def pgid(self) -> int | None:
        return self.group.pgid if self.group is not None else None

    # -- reporting

    def report(self, message: str) -> None:
        """A monitor problem: stderr + status errors; never fatal to the trainer."""
        if message not in self.errors:
            self.errors.append(message)
            self._status_dirty = True
        try:
            print(f"rldk: {message}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def say(self, message: str) -> None:
        if not self.cfg.quiet:
            try:
                print(f"rldk: {message}", file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass

    # -- status / control

    def status(self) -> Status:
        status: Status = {
            "monitor_pid": os.getpid(),
            "child_pid": self.group.pid if self.group else None,
            "pgid": self.pgid,
            "cmd": list(self.cfg.cmd),
            "run_dir": str(self.cfg.run_dir),
            "preset": self.cfg.preset,
            "started": self.started,
            "updated": time.time(),
            "state": self.state,
            "stop_reason": self.stop_reason,
            "stop_rule": self.stop_rule,
            "stop_step": self.stop_step,
            "exit_code": self.exit_code,
            "auto_stop": self.auto_stop,
            "steps": self.steps,
            "last_step": self.parser.last_step,
            "lines": self.parser.n_lines,
            "errors": list(self.errors),
        }
        if self.notice is not None:
            status["notice"] = self.notice
        status.update(self.status_extra)  # type: ignore[typeddict-item]  # keys other features own
        return status

    def write_status(self, force: bool = False) -> None:
        """THE place status.json is written (rate-limited unless forced)."""
        if not force and (not self._status_dirty or not self.rundir.status.due()):
            return
        self._status_dirty = False
        self.rundir.status.write(self.status())

    def set_state(self, state: str) -> None:
        self.state = state
        self.write_status(force=True)

    def poll_control(self) -> None:
        for cmd in self.control.poll():
            action = cmd.get("action")
            if action == "stop":
                self.say(f"stop requested by {cmd.get('by', 'a client')}")
                self.request_stop("user", None, None)
            elif action == "auto_stop":
                self.auto_stop = parse_flag(cmd.get("enabled", True))
                self._status_dirty = True
                self.say(f"auto-stop {'on' if self.auto_stop else 'off'}")
            else:
                self.report(f"{self.control_path}: unknown action {action!r} ignored")

    # -- lines and rules

    def flush_artifacts(self) -> None:
        self.rundir.flush()

    def handle_line(self, line: bytes) -> None:
        self.log_file.add(line if line.endswith(b"\n") else line + b"\n")
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        records = self.parser.feed_all(text)  # tqdm redraws: each \r frame counts
        if not records:
            if self.steps == 0:
                self._watch_silence(text)
            return
        for record in records:
            self.handle_record(record)

    def handle_end_of_input(self) -> None:
        """A block the trainer left open at exit (an SB3 table) still counts as a row."""
        record = self.parser.finish()
        if record is not None:
            self.handle_record(record)

    def handle_record(self, record: Record) -> None:
        merged = self.merger.merge(record)
        if merged is None:
            return  # another rank's copy of a step already seen, with nothing new
        record = merged
        now = time.time()
        self.steps += 1
        if self.notice is not None and self._silence_said:
            self.notice = None  # metrics arrived: the notice no longer applies
        self._status_dirty = True
        metrics = record.metrics
        self.rundir.run_file.add(canonical_row(record.step, now, metrics))
        self.tracker.step(record.step)
        for k in KEY_METRICS:
            v = metrics.get(k)
            if v is not None and v == v and (k not in self.peaks or v > self.peaks[k]):
                self.peaks[k] = v
        self.handle_alerts(self.engine.observe(record.step, metrics, now))

    def _watch_silence(self, text: str) -> None:
        if self._sample is None and text.strip():
            self._sample = text.strip()
        if self._first_line_at is None:
            self._first_line_at = time.monotonic()
        self.check_silence()

    def check_silence(self) -> None:
        """Say ONCE (stderr, monitor.log, status.json "notice") that lines arrive but no
        metric was recognised: a guardrail that sees nothing must not look like one that
        sees a healthy run."""
        if self._silence_said or self.steps or self._first_line_at is None:
            return
        lines = self.parser.n_lines
        if lines < SILENCE_LINES and time.monotonic() - self._first_line_at < SILENCE_SECONDS:
            return
        self._silence_said = True
        self.notice = silence_notice(lines, self._sample)
        self._status_dirty = True
        self.say(self.notice)  # --quiet silences stderr only; status.json and monitor.log keep it
        self.log_file.add(f"rldk: {self.notice}\n".encode("utf-8", "replace"))

    def handle_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            if len(self.alerts) < KEEP_ALERTS:
                self.alerts.append(alert)
            self.n_fired += alert.event == "fire"
            self.rundir.alerts_file.write(orjson.dumps(alert.to_dict()) + b"\n")
            if alert.event == "fire":
                self.tracker.alert(alert.rule, alert.step, alert.severity, self.rule_window.get(alert.rule, 1))
                stop = alert.action == "stop" and self.auto_stop
                suffix = " -> stopping the run" if stop else (
                    " (auto-stop off)" if alert.action == "stop" else "")
                self.say(f"[{alert.severity}] {alert.rule}: {alert.message}{suffix}")
                if stop and not self._stop_requested.is_set():
                    self.request_stop("guardrail", alert.rule, alert.step, alert)
                elif self.notifier is not None:
                    self.notifier.alert(alert.to_dict())
            else:
                self.say(f"[clear] {alert.message}")
                if self.notifier is not None:
                    self.notifier.alert(alert.to_dict())  # the rule's next episode may notify again

    # -- stopping

    def request_stop(self, reason: str, rule: str | None, step: int | None,
                     alert: Alert | None = None) -> None:
        """THE place every stop goes through (guardrail, user, SIGTERM/SIGHUP to the monitor)."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        self.stop_reason, self.stop_rule, self.stop_step = reason, rule, step
        if self.group is not None:  # the signal goes out first; everything else after it
            self._stopper = threading.Thread(target=self.stop_trainer, name="rldk-stopper", daemon=True)
            self._stopper.start()
        self.set_state("stopping")
        if self.notifier is not None:  # queued: the message and its plan are built off this thread
            self.notifier.stop(reason, step if step is not None else self.parser.last_step,
                               alert.to_dict() if alert is not None else None, plan=self.resume_plan,
                               after=self.group_stopped if self.group is not None else None)

    def checkpoint_dirs(self) -> list[Path]:
        return list(self.cfg.checkpoints) or output_dirs_from_cmd(self.cfg.cmd)

    def resume_plan(self) -> dict[str, Any]:
        return self.tracker.plan(self.checkpoint_dirs(), f"rldk-engine scan {self.cfg.run_dir / RUN_JSONL}")

    def write_resume_plan(self) -> None:
        """On a stop: the plan into status.json, the summary and <run_dir>/rldk_reports/."""
        self.resume = self.resume_plan()
        self.status_extra["resume"] = self.resume
        try:
            self.resume_path, _ = write_plans(
                [{"run_id": self.cfg.run_dir.name, "source": str(self.cfg.run_dir / RUN_JSONL),
                  "resume": self.resume}], self.cfg.run_dir / REPORTS_DIR)
        except OSError as exc:
            self.report(f"cannot write the resume plan under {self.cfg.run_dir / REPORTS_DIR}: "
                        f"{exc.strerror or exc}")

    def stop_trainer(self) -> None:
        """The escalation over the trainer's whole tree (runs on the stopper thread)."""
        assert self.group is not None
        first = self.cfg.stop_signal
        try:
            if first in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                self.group.stop(first_signal=first, grace=self.cfg.grace_int, term_grace=self.cfg.grace_term)
            else:  # the trainer's own checkpoint signal, then the usual SIGINT -> SIGTERM -> SIGKILL
                plan = [(int(first), self.cfg.grace_int)] + stop_plan(
                    signal.SIGINT, self.cfg.grace_term, self.cfg.grace_term)
                self.group.escalate(plan)
        finally:
            self.group_stopped.set()  # the stop notification goes out now

    def on_signal(self, signum, frame) -> None:
        """Ctrl-C on the monitor: forward SIGINT to the trainer's tree, escalating on
        repeats (INT, then TERM, then KILL). SIGTERM or SIGHUP (a shutdown, an SSH session
        lost without tmux): stop the trainer with the full escalation, since nobody may be
        there to press Ctrl-C again."""
        self._signals += 1
        if self.stop_reason is None:
            self.stop_reason = "signal"
            self._status_dirty = True
        if self.group is None:
            self._stop_requested.set()
            return
        if signum != signal.SIGINT and self._stopper is None:
            self._stop_requested.set()
            self.state = "stopping"
            self._stopper = threading.Thread(target=self.stop_trainer, name="rldk-stopper", daemon=True)
            self._stopper.start()
            return
        sig = signum if self._signals == 1 else (signal.SIGTERM if self._signals == 2 else signal.SIGKILL)
        self.group.send(sig)

    # -- main loops

    def start_child(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd = self.cfg.cmd
        # --shell takes ONE command string (checked by the CLI); without it argv is passed
        # to exec as is: spaces, ';', '$(...)' stay literal
        if self.cfg.shell:  # several words from the API are quoted, never re-split
            args = ["/bin/sh", "-c", cmd[0] if len(cmd) == 1 else shlex.join(cmd)]
        else:
            args = cmd
        self.group = ProcessGroup.spawn(args, env=env)
        if self.cfg.watchdog:
            self.watchdog = Watchdog(self.group, self.rundir.status.path, WATCHDOG_GRACE)

    def run(self) -> MonitorResult:
        q: queue.Queue = queue.Queue(maxsize=QUEUE_LINES)
        if self.cfg.notify:
            from rldk_engine.live.notify import Notifier, NotifyError

            try:
                self.notifier = Notifier(self.cfg.notify, run=str(self.cfg.run_dir),
                                         log_path=self.cfg.run_dir / MONITOR_LOG, report=self.report)
            except NotifyError as exc:  # the CLI checks URLs first; the API reports and goes on
                self.report(str(exc))
        follow_stop = threading.Event()
        readers: list[threading.Thread] = []
        if self.cfg.follow is not None:
            readers.append(threading.Thread(target=_follow, daemon=True, args=(
                self.cfg.follow, q, follow_stop, self.out, self.report)))
        elif self.cfg.stdin:
            readers.append(threading.Thread(target=_pump, args=(own_stdin(), "stdin", q, self.out), daemon=True))
        else:
            try:
                self.start_child()
            except OSError as exc:
                self.report(f"cannot start {' '.join(self.cfg.cmd)}: {exc.strerror or exc}")
                self.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
                self.set_state("failed")
                self.rundir.close()
                return self.result()
            assert self.proc is not None
            readers.append(threading.Thread(target=_pump, args=(self.proc.stdout, "stdout", q, self.out), daemon=True))
            readers.append(threading.Thread(target=_pump, args=(self.proc.stderr, "stderr", q, self.err), daemon=True))
        old_handlers = self._install_signals()
        try:  # the handlers stay in place through the clean-up: a signal there cannot orphan anything
            for t in readers:
                t.start()
            self.set_state("running")
            self._loop(q, follow_stop, len(readers))
            while not q.empty():  # lines already read are never lost
                name, line = q.get_nowait()
                if line is not _EOF:
                    self.handle_line(line)
            self.handle_end_of_input()
            self.flush_artifacts()
            return self.finish()
        finally:
            self._restore_signals(old_handlers)

    def _loop(self, q: queue.Queue, follow_stop: threading.Event, open_streams: int) -> None:
        next_control = 0.0
        next_tree = 0.0
        exited_at: float | None = None
        last_line_at = time.monotonic()
        while True:
            # one blocking get, then whatever else is already queued (bounded), then
            # one flush: per-line flushing when lines trickle, batches under a flood
            batch = []
            try:
                batch.append(q.get(timeout=0.02))
                while len(batch) < BATCH_LINES:
                    batch.append(q.get_nowait())
            except queue.Empty:
                pass
            for _name, line in batch:
                if line is _EOF:
                    open_streams -= 1
                else:
                    self.handle_line(line)
                    last_line_at = time.monotonic()
            self.flush_artifacts()
            now = time.monotonic()
            if now >= next_control:
                next_control = now + CONTROL_POLL
                self.poll_control()
                self.handle_alerts(self.engine.tick())
                self.check_silence()
            if self.group is not None and now >= next_tree:
                next_tree = now + TREE_POLL
                self.group.refresh()  # remember descendants before they can escape
                if self.watchdog is not None:
                    self.watchdog.report()
            self.write_status()
            if self.group is None:
                if self._stop_requested.is_set() or open_streams == 0:
                    follow_stop.set()
                    return
                continue
            if self.group.poll() is not None:
                exited_at = exited_at or now
                stopper_done = self._stopper is None or not self._stopper.is_alive()
                # a backlog still flowing is drained; a pipe a grandchild holds silently is not
                drained = (now - max(exited_at, last_line_at) > DRAIN_AFTER_EXIT
                           or now - exited_at > DRAIN_MAX)
                if (open_streams == 0 or drained) and stopper_done:
                    return

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
        return {s: signal.signal(s, self.on_signal) for s in sigs}

    def _restore_signals(self, old) -> None:
        if old:
            for s, h in old.items():
                signal.signal(s, signal.SIG_IGN if self.cfg.ignore_late_signals else h)

    def _stop_leftovers(self) -> None:
        """The trainer is gone but processes of its tree live on (workers of an OOM-killed
        or crashed trainer, setsid daemons): they are orphans holding GPUs, so end them."""
        if self.group is None:
            return
        if self.group.has_leftovers():
            self.report(f"trainer exited but processes of its tree (group {self.group.pgid}) "
                        "were still running; stopping them")
            self.group.stop_leftovers(self.cfg.grace_term)

    def finish(self) -> MonitorResult:
        if self.group is not None:
            rc = self.group.wait()
            self._stop_leftovers()
            self.group.close()
            if self.stop_reason in ("guardrail", "user"):
                self.exit_code = EXIT_STOPPED
                self.state = "stopped"
            else:
                self.exit_code = exit_code_of(rc)
                self.state = "stopped" if self.stop_reason == "signal" and self._stopper else "exited"
        else:
            guardrail = self.stop_reason == "guardrail"
            self.exit_code = EXIT_STOPPED if guardrail else 0
            self.state = "stopped" if self._stop_requested.is_set() or self.stop_reason else "exited"
        if self.stop_reason in ("guardrail", "user"):
            self.write_resume_plan()
        self.rundir.close_files()
        self.write_status(force=True)
        self.rundir.close()
        if self.watchdog is not None:
            self.watchdog.close()  # the final status is written: nothing left for it to do
        if self.notifier is not None:  # the trainer is gone: waiting here delays nothing
            self.notifier.close(self.cfg.notify_wait)
        return self.result()

    def result(self) -> MonitorResult:
        return MonitorResult(
            exit_code=self.exit_code if self.exit_code is not None else 1,
            stop_reason=self.stop_reason, stop_rule=self.stop_rule, stop_step=self.stop_step,
            steps=self.steps, last_step=self.parser.last_step, lines=self.parser.n_lines,
            alerts=list(self.alerts), peaks=dict(self.peaks), run_dir=self.cfg.run_dir,
            errors=list(self.errors), n_fired=self.n_fired, notice=self.notice,
            resume=self.resume, resume_path=self.resume_path)


def summary_text(res: MonitorResult) -> str:
    fired = [a for a in res.alerts if a.event == "fire"]
    lines = ["", "rldk monitor summary", f"  steps seen: {res.steps} (last step {res.last_step}), lines read: {res.lines}"]
    if res.peaks:
        lines.append("  peaks: " + ", ".join(f"{k}={v:.4g}" for k, v in res.peaks.items()))
    n_fired = max(res.n_fired, len(fired))
    if fired:
        lines.append(f"  alerts: {n_fired}")
        for a in fired[:20]:
            lines.append(f"    [{a.severity}] step {a.step} {a.rule}: {a.message}")
        if n_fired > 20:
            lines.append(f"    ... {n_fired - 20} more in alerts.jsonl")
    else:
        lines.append("  alerts: none")
    if res.stop_reason == "guardrail":
        why = f"stopped by guardrail {res.stop_rule} at step {res.stop_step}"
    elif res.stop_reason == "user":
        why = "stopped on request (control.jsonl)"
    elif res.stop_reason == "signal":
        why = "interrupted (signal forwarded to the trainer)"
    else:
        why = "trainer exited on its own"
    lines.append(f"  outcome: {why}; exit code {res.exit_code}")
    if res.notice:
        lines.append(f"  notice: {res.notice}")
    if res.resume is not None:
        lines.extend("  " + line for line in plan_text(res.resume).splitlines())
        if res.resume_path is not None:
            lines.append(f"  resume plan: {res.resume_path}")
    d = res.run_dir
    lines.append(f"  artifacts: {d / 'run.jsonl'}, {d / 'alerts.jsonl'}, {d / 'monitor.log'}, {d / 'status.json'}")
    if res.errors:
        lines.append("  monitor errors: " + "; ".join(res.errors[:5]))
    return "\n".join(lines)


def run_monitor(config: MonitorConfig) -> MonitorResult:
    monitor = Monitor(config)
    res = monitor.run()
    if not config.quiet:
        try:
            print(summary_text(res), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
    return res
