"""The live monitor: run a trainer (or tail a log, or read stdin), parse every line,
apply guardrail rules, write the run directory, and stop the process group on a stop rule.

Threads: one reader per child stream (bytes, line by line, passed through to the
terminal at once), the main loop (parse, rules, artifacts, control.jsonl polling, stall
ticks, status.json) and, when stopping, one stopper thread that escalates
SIGINT -> SIGTERM -> SIGKILL on the whole process group.

Artifact failures (ENOSPC, unwritable dir) are reported once per file on stderr and in
status.json "errors"; they never stop the trainer.

Hot path: standard library, orjson, PyYAML and rldk_engine.ingest.parse/rules only.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from rldk_engine.ingest.parse import LineParser
from rldk_engine.ingest.ranks import RankMerger
from rldk_engine.live.rules import Alert, Rule, RuleEngine, json_number

EXIT_STOPPED = 3
MAX_LINE = 16 * 1024 * 1024  # a longer "line" is split, never held whole in memory
DEFAULT_GRACE_INT = 0.5  # seconds after SIGINT before SIGTERM
DEFAULT_GRACE_TERM = 0.5  # seconds after SIGTERM before SIGKILL
DRAIN_AFTER_EXIT = 0.5  # seconds of silence after exit before we stop reading pipes a grandchild still holds
DRAIN_MAX = 10.0  # ... and never longer than this after the trainer exited
BATCH_LINES = 256  # lines handled between two flushes of the artifacts, at most
QUEUE_LINES = 4096  # reader -> main loop backlog; bounded so a fast writer waits instead of growing memory
KEEP_ALERTS = 1000  # alerts kept in memory for the summary; all of them are in alerts.jsonl
CONTROL_POLL = 0.1
STATUS_MIN_INTERVAL = 0.5
KEY_METRICS = ("kl", "approx_kl", "reward_mean", "entropy", "clip_frac", "grad_norm")


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
    grace_int: float = DEFAULT_GRACE_INT
    grace_term: float = DEFAULT_GRACE_TERM
    shell: bool = False
    passthrough: bool = True


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


# ----------------------------------------------------------------------------- artifacts


class ArtifactFile:
    """An append-only file flushed per line; the first failure is reported, then it is
    retried silently (a disk that fills up may free again). A row cut short by a full
    disk is cut off again, so the file only ever holds whole lines."""

    def __init__(self, path: Path, report):
        self.path = path
        self.report = report
        self.failed = False
        self.fh = None
        self.pending: list[bytes] = []
        self.size = 0  # bytes of whole lines written so far
        try:
            self.fh = open(path, "ab", buffering=0)
            self.size = os.fstat(self.fh.fileno()).st_size
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            self.report(f"cannot write {self.path}: {exc.strerror or exc}")

    def add(self, data: bytes) -> None:
        """Queue a line for the next `flush()`: the monitor flushes after each batch of
        lines it drains from its input, so a flood costs one write per batch, not per line."""
        self.pending.append(data)

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        if self.write(b"".join(lines)) or len(lines) == 1:
            return
        for line in lines:  # the batch did not fit: keep as many whole lines, in order, as fit
            if not self.write(line):
                break

    def write(self, data: bytes) -> bool:
        """Append whole lines; False (the file unchanged) when they could not be written."""
        if self.fh is None:
            return False
        try:
            written = self.fh.write(data)
            if written is not None and written < len(data):  # short write: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.size += len(data)
            return True
        except OSError as exc:
            self._fail(exc)
            try:
                os.ftruncate(self.fh.fileno(), self.size)
            except OSError:
                pass
            return False

    def close(self) -> None:
        self.flush()
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass


class ControlChannel:
    """The run directory's `control.jsonl`: clients append one JSON command per line, the
    supervisor (the monitor, or an in-process callback) reads what is new. Commands written
    before the supervisor started are stale and never acted on."""

    def __init__(self, path: Path, report):
        self.path = path
        self.report = report
        try:
            self.pos = path.stat().st_size
        except OSError:
            self.pos = 0

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.pos:
                    self.pos = 0  # the client rewrote the file
                if size == self.pos:
                    return []
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return []
        complete, _, _ = data.rpartition(b"\n")
        if not complete and not data.endswith(b"\n"):
            return []  # wait for the client to finish its line
        self.pos += len(complete) + 1
        commands = []
        for raw in complete.split(b"\n"):
            if not raw.strip():
                continue
            try:
                cmd = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.report(f"{self.path}: ignored a line that is not JSON")
                continue
            if isinstance(cmd, dict):
                commands.append(cmd)
        return commands


def _flag(value: object) -> bool:
    """A control flag; a hand-written "false" / "off" / "0" string means off, not on."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "off", "no", "0", "")
    return bool(value)


def canonical_row(step: int, now: float, metrics: dict[str, float]) -> bytes:
    row: dict[str, object] = {"step": step, "time": round(now, 3)}
    if all(map(math.isfinite, metrics.values())):  # the usual row: no conversion needed
        row.update(metrics)
    else:  # orjson would write NaN as null; SPEC keeps "NaN"/"Infinity" as data
        for k, v in metrics.items():
            row[k] = json_number(v)
    return orjson.dumps(row) + b"\n"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_in_place(path: Path, data: bytes) -> None:
    """Fallback when the directory refuses new files (read-only dir, full disk): rewrite
    the existing file. Padded with spaces to its old size when it fits, so a full disk
    never has to find a new block mid-write and tear the JSON."""
    with open(path, "r+b", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.write(data.ljust(size, b" ") if len(data) <= size else data)


# ----------------------------------------------------------------------------- process group


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in the group (zombies cannot run; in a
    container without a reaping init they may linger forever)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] != b"Z":
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exit_code_of(returncode: int | None) -> int:
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


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


def _follow(path: Path, q: queue.Queue, stop: threading.Event, echo) -> None:
    """Tail a growing file from its start; reopen on rotation, rewind on truncation."""
    fh = None
    ino = None
    pending = b""
    while not stop.is_set():
        if fh is None:
            try:
                fh = open(path, "rb")
                ino = os.fstat(fh.fileno()).st_ino
                pending = b""
            except OSError:
                stop.wait(0.1)
                continue
        chunk = fh.read(1 << 16)
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) >= MAX_LINE:  # a newline-free flood is split, as in _pump
                lines.append(pending)
                pending = b""
            for line in lines:
                line += b"\n"
                if echo is not None:
                    try:
                        echo.write(line)
                        echo.flush()
                    except (OSError, ValueError):
                        echo = None
                q.put(("follow", line))
            continue
        try:
            st = os.stat(path)
        except OSError:
            st = None
        pos = fh.tell()
        if st is not None and st.st_ino == ino and st.st_size < pos:
            fh.seek(0)  # truncated (copytruncate or `> file`)
            pending = b""
        elif st is not None and st.st_ino != ino:
            fh.close()  # rotated: the old file is drained above, now take the new one
            fh = None
            if pending:  # its unterminated last line is complete: nobody writes there now
                q.put(("follow", pending + b"\n"))
            continue
        stop.wait(0.05)
    if fh is not None:
        fh.close()
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
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.started = time.time()
        self._status_written = 0.0
        self._status_dirty = True
        self._stopper: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._signals = 0
        self.out = sys.stdout.buffer if config.passthrough else None
        self.err = sys.stderr.buffer if config.passthrough else None
        self._setup_run_dir()

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

    def _setup_run_dir(self) -> None:
        d = self.cfg.run_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.report(f"cannot create run dir {d}: {exc.strerror or exc}")
        self.run_file = ArtifactFile(d / "run.jsonl", self.report)
        self.alerts_file = ArtifactFile(d / "alerts.jsonl", self.report)
        self.log_file = ArtifactFile(d / "monitor.log", self.report)
        self.control_path = d / "control.jsonl"
        self.control = ControlChannel(self.control_path, self.report)
        self.status_path = d / "status.json"

    # -- status / control

    def status(self) -> dict:
        return {
            "monitor_pid": os.getpid(),
            "child_pid": self.proc.pid if self.proc else None,
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

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self._status_dirty or now - self._status_written < STATUS_MIN_INTERVAL):
            return
        self._status_written = now
        self._status_dirty = False
        data = orjson.dumps(self.status(), option=orjson.OPT_INDENT_2)
        try:
            write_atomic(self.status_path, data)
        except OSError as exc:
            if "status.json" not in " ".join(self.errors):
                self.report(f"cannot write {self.status_path}: {exc.strerror or exc}")
            try:
                write_in_place(self.status_path, orjson.dumps(self.status()) + b"\n")
            except OSError:
                pass

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
                self.auto_stop = _flag(cmd.get("enabled", True))
                self._status_dirty = True
                self.say(f"auto-stop {'on' if self.auto_stop else 'off'}")
            else:
                self.report(f"{self.control_path}: unknown action {action!r} ignored")

    # -- lines and rules

    def flush_artifacts(self) -> None:
        self.log_file.flush()
        self.run_file.flush()

    def handle_line(self, line: bytes) -> None:
        self.log_file.add(line if line.endswith(b"\n") else line + b"\n")
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        record = self.parser.feed(text)
        if record is None or (record := self.merger.merge(record)) is None:
            return
        now = time.time()
        self.steps += 1
        self._status_dirty = True
        metrics = record.metrics
        self.run_file.add(canonical_row(record.step, now, metrics))
        for k in KEY_METRICS:
            v = metrics.get(k)
            if v is not None and v == v and (k not in self.peaks or v > self.peaks[k]):
                self.peaks[k] = v
        self.handle_alerts(self.engine.observe(record.step, metrics, now))

    def handle_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            if len(self.alerts) < KEEP_ALERTS:
                self.alerts.append(alert)
            self.n_fired += alert.event == "fire"
            self.alerts_file.write(orjson.dumps(alert.to_dict()) + b"\n")
            if alert.event == "fire":
                stop = alert.action == "stop" and self.auto_stop
                suffix = " -> stopping the run" if stop else (
                    " (auto-stop off)" if alert.action == "stop" else "")
                self.say(f"[{alert.severity}] {alert.rule}: {alert.message}{suffix}")
                if stop:
                    self.request_stop("guardrail", alert.rule, alert.step)
            else:
                self.say(f"[clear] {alert.message}")

    # -- stopping

    def request_stop(self, reason: str, rule: str | None, step: int | None) -> None:
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        self.stop_reason, self.stop_rule, self.stop_step = reason, rule, step
        if self.pgid is None:  # follow/stdin: nothing to kill, the loop just ends
            self.set_state("stopping")
            return
        self.set_state("stopping")
        self._stopper = threading.Thread(target=self._escalate, name="rldk-stopper", daemon=True)
        self._stopper.start()

    def _escalate(self) -> None:
        pgid = self.pgid
        assert pgid is not None
        for sig, grace in ((signal.SIGINT, self.cfg.grace_int),
                           (signal.SIGTERM, self.cfg.grace_term),
                           (signal.SIGKILL, 2.0)):
            signal_group(pgid, sig)
            if self._wait_group_gone(pgid, grace):
                return

    def _wait_group_gone(self, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None:
                self.proc.poll()  # reap our child so it is not a zombie group member
            if not group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def on_signal(self, signum, frame) -> None:
        """Ctrl-C / SIGTERM on the monitor: forward to the child's group, escalating
        on repeats (INT, then TERM, then KILL)."""
        self._signals += 1
        if self.stop_reason is None:
            self.stop_reason = "signal"
            self._status_dirty = True
        if self.pgid is None:
            self._stop_requested.set()
            return
        sig = signum if self._signals == 1 else (signal.SIGTERM if self._signals == 2 else signal.SIGKILL)
        signal_group(self.pgid, sig)

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
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, env=env, bufsize=-1)
        self.pgid = self.proc.pid  # a new session: its leader's pid is the group id

    def run(self) -> MonitorResult:
        q: queue.Queue = queue.Queue(maxsize=QUEUE_LINES)
        follow_stop = threading.Event()
        readers: list[threading.Thread] = []
        if self.cfg.follow is not None:
            readers.append(threading.Thread(target=_follow, args=(self.cfg.follow, q, follow_stop, self.out), daemon=True))
        elif self.cfg.stdin:
            readers.append(threading.Thread(target=_pump, args=(sys.stdin.buffer, "stdin", q, self.out), daemon=True))
        else:
            try:
                self.start_child()
            except OSError as exc:
                self.report(f"cannot start {' '.join(self.cfg.cmd)}: {exc.strerror or exc}")
                self.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
                self.set_state("failed")
                return self.result()
            assert self.proc is not None
            readers.append(threading.Thread(target=_pump, args=(self.proc.stdout, "stdout", q, self.out), daemon=True))
            readers.append(threading.Thread(target=_pump, args=(self.proc.stderr, "stderr", q, self.err), daemon=True))
        old_handlers = self._install_signals()
        for t in readers:
            t.start()
        self.set_state("running")
        open_streams = len(readers)
        next_control = 0.0
        exited_at: float | None = None
        last_line_at = time.monotonic()
        try:
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
                self.write_status()
                if self.proc is None:
                    if self._stop_requested.is_set() or open_streams == 0:
                        follow_stop.set()
                        break
                    continue
                if self.proc.poll() is not None:
                    exited_at = exited_at or now
                    stopper_done = self._stopper is None or not self._stopper.is_alive()
                    # a backlog still flowing is drained; a pipe a grandchild holds silently is not
                    drained = (now - max(exited_at, last_line_at) > DRAIN_AFTER_EXIT
                               or now - exited_at > DRAIN_MAX)
                    if (open_streams == 0 or drained) and stopper_done:
                        break
        finally:
            self._restore_signals(old_handlers)
        while not q.empty():  # lines already read are never lost
            name, line = q.get_nowait()
            if line is not _EOF:
                self.handle_line(line)
        self.flush_artifacts()
        return self.finish()

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        return {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, old) -> None:
        if old:
            for s, h in old.items():
                signal.signal(s, h)

    def _stop_leftovers(self) -> None:
        """The trainer is gone but processes of its group live on (workers of an
        OOM-killed or crashed trainer): they are orphans holding GPUs, so end them."""
        if self.pgid is None or not group_alive(self.pgid):
            return
        self.report(f"trainer exited but processes of its group {self.pgid} were still running; stopping them")
        for sig, grace in ((signal.SIGTERM, self.cfg.grace_term), (signal.SIGKILL, 2.0)):
            signal_group(self.pgid, sig)
            if self._wait_group_gone(self.pgid, grace):
                return

    def finish(self) -> MonitorResult:
        if self.proc is not None:
            rc = self.proc.wait()
            self._stop_leftovers()
            if self.stop_reason in ("guardrail", "user"):
                self.exit_code = EXIT_STOPPED
                self.state = "stopped"
            else:
                self.exit_code = exit_code_of(rc)
                self.state = "exited"
        else:
            guardrail = self.stop_reason == "guardrail"
            self.exit_code = EXIT_STOPPED if guardrail else 0
            self.state = "stopped" if self._stop_requested.is_set() or self.stop_reason else "exited"
        for f in (self.run_file, self.alerts_file, self.log_file):
            f.close()
        self.write_status(force=True)
        return self.result()

    def result(self) -> MonitorResult:
        return MonitorResult(
            exit_code=self.exit_code if self.exit_code is not None else 1,
            stop_reason=self.stop_reason, stop_rule=self.stop_rule, stop_step=self.stop_step,
            steps=self.steps, last_step=self.parser.last_step, lines=self.parser.n_lines,
            alerts=list(self.alerts), peaks=dict(self.peaks), run_dir=self.cfg.run_dir,
            errors=list(self.errors), n_fired=self.n_fired)


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
