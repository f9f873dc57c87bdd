"""The run-directory protocol: the one place that says what a run directory holds and how
its files are written and read (SPEC "Run directory").

Writers: the monitor (`rldk-engine monitor`) and the in-process HF callback.
Readers: `rldk-tui watch/run`, the plots, `rldk-engine scan RUN_DIR/run.jsonl`.

    run.jsonl      one canonical row per step ({"step", "time", metrics...}), whole lines
    alerts.jsonl   one AlertRow per fire/clear event, whole lines
    monitor.log    the trainer's output as read, whole lines
    status.json    one Status object, replaced atomically
    control.jsonl  clients append one ControlCommand per line; the writer acts on new ones
    .rldk.lock     held (flock) by the one writer of the directory

Files are opened without following symlinks and only when they are regular files; new
files are created with the user's umask and never world-writable; status.json is written
through an unpredictable temp name in the same directory, then renamed over.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import time
from pathlib import Path
from typing import Any, Callable, Literal, TypedDict, Union

import orjson

from rldk_engine.ingest.tail import (
    FileTail,
    NotARegularFile,
    close_quietly,
    file_kind,
    open_regular,
)

RUN_JSONL = "run.jsonl"
ALERTS_JSONL = "alerts.jsonl"
MONITOR_LOG = "monitor.log"
STATUS_JSON = "status.json"
CONTROL_JSONL = "control.jsonl"
SUPERVISOR_LOG = "supervisor.log"  # the TUI-launched monitor's own stderr
LOCK_FILE = ".rldk.lock"
RUN_DIR_FILES = (STATUS_JSON, RUN_JSONL, ALERTS_JSONL, MONITOR_LOG)

FILE_MODE = 0o664  # minus the umask; never world-writable
DIR_MODE = 0o775
STATUS_MIN_INTERVAL = 0.5  # seconds between two status.json writes, unless forced
STATUS_MAX_BYTES = 4 << 20  # a larger status.json is not ours: read as "not yet"
CONTROL_MAX_LINE = 64 << 10  # a longer control line is skipped, never held in memory
CONTROL_READ_MAX = 256 << 10  # bytes of control.jsonl read per poll
CONTROL_SKIP_READ = 8 << 20  # ... while skipping an overlong line (only a newline search)

# status.json "state"
STATES = ("starting", "running", "stopping", "stopped", "exited", "failed", "lost")
ACTIVE_STATES = frozenset({"starting", "running", "stopping"})
EXIT_STOPPED = 3  # the exit code of a run a guardrail (or a user's stop) ended

Report = Callable[[str], None]


# ----------------------------------------------------------------------------- schemas


class Status(TypedDict, total=False):
    """status.json. The optional keys are absent when they do not apply."""

    monitor_pid: int
    child_pid: int | None
    pgid: int | None
    cmd: list[str]
    run_dir: str
    preset: str | None
    started: float
    updated: float
    state: str  # one of STATES
    stop_reason: str | None  # "guardrail" | "user" | "signal" | "monitor_lost" | None
    stop_rule: str | None
    stop_step: int | None
    exit_code: int | None
    auto_stop: bool
    steps: int
    last_step: int | None
    lines: int
    errors: list[str]
    notice: str  # optional: e.g. "no metrics recognised yet — 200 lines read; ..."
    resume: dict[str, Any]  # optional: the resume plan (issue 18)
    checkpoint_saved: str  # optional: HF callback save on stop


class AlertRow(TypedDict):
    """One line of alerts.jsonl (rules.Alert.to_dict())."""

    time: float
    step: int | None
    rule: str
    metric: str
    value: float | str | None  # non-finite values as "NaN"/"Infinity"/"-Infinity"
    threshold: float | str | None
    severity: str
    action: str
    message: str
    event: Literal["fire", "clear"]


class StopCommand(TypedDict, total=False):
    action: Literal["stop"]
    by: str


class AutoStopCommand(TypedDict, total=False):
    action: Literal["auto_stop"]
    enabled: bool | int | str | None  # read with parse_flag


ControlCommand = Union[StopCommand, AutoStopCommand]

_OFF = frozenset({"false", "0", "no", "off", "n", "f", "", "none", "null", "disabled"})


def parse_flag(value: object) -> bool:
    """THE flag reading of the protocol: "false"/"0"/"no"/"off"/false/0/None mean off;
    everything else (true, 1, "true", "on", "yes") means on. Hand-written JSON often
    quotes its booleans, and a quoted "false" must never turn a switch on."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _OFF
    if isinstance(value, float) and math.isnan(value):
        return False
    try:
        return bool(value)
    except Exception:  # an object whose truth is an error is not a yes
        return False


# ----------------------------------------------------------------------------- rows


def json_number(x: float | None) -> float | str | None:
    """Non-finite floats as the strings SPEC prescribes ("NaN", "Infinity")."""
    if x is None or math.isfinite(x):
        return x
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def canonical_row(step: int, now: float, metrics: dict[str, float]) -> bytes:
    """One run.jsonl line."""
    row: dict[str, object] = {"step": step, "time": round(now, 3)}
    if all(map(math.isfinite, metrics.values())):  # the usual row: no conversion needed
        row.update(metrics)
    else:  # orjson would write NaN as null; SPEC keeps "NaN"/"Infinity" as data
        for k, v in metrics.items():
            row[k] = json_number(v)
    return orjson.dumps(row) + b"\n"


# ----------------------------------------------------------------------------- writing


def make_run_dir(path: Path) -> None:
    """Create the run directory (and parents) with the user's umask, never world-writable."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` through a temp file with an unpredictable name in the same
    directory, created exclusively (O_EXCL|O_NOFOLLOW): another user who can write to the
    directory can neither pre-create nor redirect it."""
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no free temp name", str(path))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_in_place(path: Path, data: bytes) -> None:
    """Fallback when the directory refuses new files (read-only dir, full disk): rewrite
    the existing file. Padded with spaces to its old size when it fits, so a full disk
    never has to find a new block mid-write and tear the JSON."""
    fd = open_regular(path, nofollow=True, write=True)
    with open(fd, "r+b", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.write(data.ljust(size, b" ") if len(data) <= size else data)


def open_artifact(path: Path) -> int:
    """An append-only run-directory file: no symlinks, regular files only, created with
    FILE_MODE minus the umask; an existing world-writable file of ours loses o+w."""
    fd = open_regular(path, nofollow=True, write=True, append=True, create=True, mode=FILE_MODE)
    try:
        info = os.fstat(fd)
        if info.st_mode & stat.S_IWOTH and info.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~stat.S_IWOTH)
    except OSError:
        pass
    return fd


def os_reason(exc: OSError) -> str:
    if isinstance(exc, NotARegularFile):
        return exc.reason
    if exc.errno == errno.ELOOP:
        return "is a symlink; refused (run-directory files are never followed)"
    return exc.strerror or str(exc)


class ArtifactFile:
    """An append-only run-directory file that only ever holds whole lines.

    `add()` queues a line and `flush()` writes the queue in one write (the monitor flushes
    after each batch it drains, so a trickle is written per line and a flood per batch);
    `write()` appends at once. The first failure is reported, later ones are retried
    silently (a disk that fills up may free again); a row cut short by a full disk is cut
    off again."""

    def __init__(self, path: Path, report: Report):
        self.path = path
        self.report = report
        self.failed = False
        self.fh = None
        self.pending: list[bytes] = []
        self.size = 0  # bytes of whole lines written so far
        try:
            self.fh = open(open_artifact(path), "ab", buffering=0)
            self.size = os.fstat(self.fh.fileno()).st_size
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            self.report(f"cannot write {self.path}: {os_reason(exc)}")

    def add(self, data: bytes) -> None:
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
            self.fh = None


class RunDirLocked(Exception):
    """Another writer holds the run directory; `str()` is the one-line message."""


class RunDirLock:
    """flock on RUN_DIR/.rldk.lock: one writer per run directory. Released on close or when
    the process dies (the kernel drops the lock), so a crashed monitor never blocks the next."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Raise RunDirLocked when another process holds it; OSError when it cannot be made."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: one writer is then the user's job
            return
        fd = open_regular(self.path, nofollow=True, write=True, create=True, mode=FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_small(self.path, 64).strip().decode("ascii", "replace")
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise RunDirLocked(
                    f"{self.path.parent}: run directory in use by another monitor{who}; "
                    "give another --run-dir") from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass
        self.fd = fd

    def release(self) -> None:
        close_quietly(self.fd)
        self.fd = None


def _read_small(path: Path, limit: int) -> bytes:
    try:
        fd = open_regular(path, nofollow=True)
    except OSError:
        return b""
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


class StatusWriter:
    """status.json: written atomically, at most every STATUS_MIN_INTERVAL unless forced;
    when the directory refuses new files it is rewritten in place."""

    def __init__(self, path: Path, report: Report):
        self.path = path
        self.report = report
        self._written = 0.0
        self._reported = False

    def due(self) -> bool:
        return time.monotonic() - self._written >= STATUS_MIN_INTERVAL

    def write(self, status: Status | dict[str, Any]) -> None:
        self._written = time.monotonic()
        try:
            write_atomic(self.path, orjson.dumps(status, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            if not self._reported:
                self._reported = True
                self.report(f"cannot write {self.path}: {os_reason(exc)}")
            try:
                write_in_place(self.path, orjson.dumps(status) + b"\n")
            except OSError:
                pass


class RunDirWriter:
    """The writer side of one run directory: lock, run.jsonl, alerts.jsonl, monitor.log
    (optional), status.json and the control channel. Shared by the monitor and the HF
    callback. A directory that cannot be created or written is reported, never fatal;
    a directory held by another writer raises RunDirLocked from the constructor."""

    def __init__(self, run_dir: Path, report: Report, *, log: bool = True, lock: bool = True):
        self.run_dir = Path(run_dir)
        self.report = report
        self.lock = RunDirLock(self.run_dir)
        try:
            make_run_dir(self.run_dir)
        except OSError as exc:
            report(f"cannot create run dir {self.run_dir}: {os_reason(exc)}")
            lock = False  # nothing to lock; the files below report themselves
        if lock:
            try:
                self.lock.acquire()
            except OSError as exc:  # a read-only dir: the files below report it too
                report(f"cannot lock run dir {self.run_dir}: {os_reason(exc)}")
        self.run_file = ArtifactFile(self.run_dir / RUN_JSONL, report)
        self.alerts_file = ArtifactFile(self.run_dir / ALERTS_JSONL, report)
        self.log_file = ArtifactFile(self.run_dir / MONITOR_LOG, report) if log else None
        self.status = StatusWriter(self.run_dir / STATUS_JSON, report)
        self.control = ControlChannel(self.run_dir / CONTROL_JSONL, report)

    def files(self) -> list[ArtifactFile]:
        return [f for f in (self.run_file, self.alerts_file, self.log_file) if f is not None]

    def flush(self) -> None:
        if self.log_file is not None:
            self.log_file.flush()
        self.run_file.flush()
        self.alerts_file.flush()

    def close_files(self) -> None:
        """Flush and close the line files (status.json can still be written after)."""
        for f in self.files():
            f.close()

    def close(self) -> None:
        self.close_files()
        self.control.close()
        self.lock.release()


# ----------------------------------------------------------------------------- control


class ControlChannel:
    """The reader side of control.jsonl: clients append one JSON command per line, the
    supervisor (the monitor, or an in-process callback) reads what is new. Commands written
    before the supervisor started are stale and never acted on. Reads are non-blocking and
    size-capped (a FIFO at the path is refused once, a 100 MB line without a newline is
    skipped a bounded chunk per poll)."""

    def __init__(self, path: Path, report: Report):
        self.path = path
        self.report = report
        self.tail = FileTail(path, start_at_end=True, max_line=CONTROL_MAX_LINE,
                             overlong="drop", nofollow=True)
        self.disabled = False
        self._dropped = 0

    def poll(self) -> list[dict[str, Any]]:
        if self.disabled:
            return []
        try:
            # inside an overlong line nothing is kept, so larger reads cost only a newline
            # search: a 100 MB line is skipped in about a second of polls, not minutes
            lines = self.tail.read_lines(CONTROL_SKIP_READ if self.tail.skipping else CONTROL_READ_MAX)
        except OSError as exc:
            self.disabled = True  # a FIFO or a symlink: never read it again
            self.report(f"{self.path}: {os_reason(exc)}; control commands are ignored")
            return []
        if self.tail.dropped_lines != self._dropped:
            self._dropped = self.tail.dropped_lines
            self.report(f"{self.path}: ignored a line longer than {CONTROL_MAX_LINE} bytes")
        commands = []
        for raw in lines:
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

    def close(self) -> None:
        self.tail.close()


def send_control(run_dir: Path, message: ControlCommand | dict[str, Any]) -> None:
    """Append one command for the supervisor (the client side of control.jsonl). Refuses a
    symlink or a special file at the path instead of writing through it."""
    fd = open_regular(Path(run_dir) / CONTROL_JSONL, nofollow=True, write=True, append=True,
                      create=True, mode=FILE_MODE)
    with open(fd, "ab", buffering=0) as handle:
        handle.write(orjson.dumps(message) + b"\n")


def stop_command(by: str) -> StopCommand:
    return {"action": "stop", "by": by}


def auto_stop_command(enabled: bool) -> AutoStopCommand:
    return {"action": "auto_stop", "enabled": bool(enabled)}


# ----------------------------------------------------------------------------- reading


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as a dict; {} when absent, torn, too large, a symlink or a special file
    ("not yet")."""
    try:
        fd = open_regular(Path(run_dir) / STATUS_JSON, nofollow=True)
    except OSError:
        return {}
    try:
        data = os.read(fd, STATUS_MAX_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(data) > STATUS_MAX_BYTES:
        return {}
    try:
        status = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return status if isinstance(status, dict) else {}


def is_active(status: dict[str, Any]) -> bool:
    return status.get("state") in ACTIVE_STATES


def describe_state(status: dict[str, Any]) -> str:
    """The plain-words state line of a status (the TUI header)."""
    state = status.get("state") or "waiting for monitor"
    reason = status.get("stop_reason")
    if state in ("stopped", "stopping") and reason == "guardrail":
        rule = status.get("stop_rule") or "?"
        step = status.get("stop_step")
        verb = "stopping" if state == "stopping" else "stopped"
        return f"{verb} by guardrail ({rule}, step {step})"
    if state in ("stopped", "stopping") and reason == "user":
        return "stopping (requested by user)" if state == "stopping" else "stopped by user"
    if state in ("stopped", "stopping") and reason == "signal":
        return f"{state} by signal"
    if state == "lost" or reason == "monitor_lost":
        return "monitor lost: trainer stopped by the watchdog"
    if state == "exited":
        return f"exited with code {status.get('exit_code')}"
    if state == "failed":
        errors = status.get("errors") or []
        return "failed" + (f": {errors[-1]}" if errors else "")
    return str(state)


def run_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be watched (one line), or None when it looks like a run dir."""
    if not path.exists():
        return f"{path}: not a run directory (no such folder)"
    if not path.is_dir():
        return f"{path}: not a run directory (a file, not a folder)"
    if not any((path / name).exists() for name in RUN_DIR_FILES):
        return (f"{path}: not a run directory (no {STATUS_JSON} or {RUN_JSONL}; "
                "start one with rldk-engine monitor --run-dir)")
    return None


def read_jsonl_rows(path: Path, max_bytes: int = 256 << 20) -> list[dict[str, Any]]:
    """Every JSON-object line of a run-directory file (the plots); a missing, special or
    symlinked file reads as empty, bad lines are skipped, at most `max_bytes` are read."""
    rows: list[dict[str, Any]] = []
    try:
        fd = open_regular(path, nofollow=True)
    except OSError:
        return rows
    with open(fd, "rb") as fh:
        data = fh.read(max_bytes)
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


__all__ = [
    "RUN_JSONL", "ALERTS_JSONL", "MONITOR_LOG", "STATUS_JSON", "CONTROL_JSONL", "SUPERVISOR_LOG",
    "LOCK_FILE", "RUN_DIR_FILES", "STATES", "ACTIVE_STATES", "EXIT_STOPPED", "STATUS_MIN_INTERVAL",
    "Status", "AlertRow", "StopCommand", "AutoStopCommand", "ControlCommand", "parse_flag",
    "json_number", "canonical_row", "make_run_dir", "write_atomic", "write_in_place",
    "open_artifact", "ArtifactFile", "RunDirLock", "RunDirLocked", "StatusWriter", "RunDirWriter",
    "ControlChannel", "send_control", "stop_command", "auto_stop_command", "read_status",
    "is_active", "describe_state", "run_dir_problem", "read_jsonl_rows", "NotARegularFile",
    "file_kind",
]
