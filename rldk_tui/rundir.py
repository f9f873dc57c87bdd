"""Client side of a monitor run directory (docs/CONTRACTS.md "Run directory").

Nothing here imports Textual: `LineTail` reads only the *new* lines of a growing file
(rldk_tui.live_state folds them into what the widgets show); the protocol itself (file
names, status, control commands) comes from rldk_engine.live.protocol; launching the
monitor and the words for a dead supervisor live here.

Clients never signal pids: `send_control` appends to control.jsonl and the monitor acts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# The run-directory protocol (file names, status, control commands) has one owner.
from rldk_engine.ingest.tail import FileTail
from rldk_engine.live.protocol import (
    ACTIVE_STATES,
    RUN_DIR_FILES,
    SUPERVISOR_LOG,
    auto_stop_command,
    describe_state,
    is_active,
    make_run_dir,
    open_artifact,
    read_status,
    run_dir_problem,
    send_control,
    stop_command,
)
from rldk_engine.live.protocol import ALERTS_JSONL as ALERTS_FILE
from rldk_engine.live.protocol import CONTROL_JSONL as CONTROL_FILE
from rldk_engine.live.protocol import MONITOR_LOG as LOG_FILE
from rldk_engine.live.protocol import RUN_JSONL as RUN_FILE
from rldk_engine.live.protocol import STATUS_JSON as STATUS_FILE

__all__ = ["ACTIVE_STATES", "RUN_DIR_FILES", "SUPERVISOR_LOG", "ALERTS_FILE", "CONTROL_FILE",
           "LOG_FILE", "RUN_FILE", "STATUS_FILE", "describe_state", "is_active", "read_status",
           "run_dir_problem", "send_control"]

READ_CHUNK = 1 << 16  # bytes per file per poll: bounds the work done between UI ticks


class LineTail(FileTail):
    """New complete non-blank lines of one growing run-directory file (the shared
    FileTail: size-capped, non-blocking, no symlinks, truncation and rotation handled)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, nofollow=True)

    def read_lines(self, max_bytes: int = READ_CHUNK) -> list[bytes]:
        try:
            lines = super().read_lines(max_bytes)
        except OSError:  # a FIFO or symlink planted in the run directory: nothing to show
            return []
        return [line for line in lines if line.strip()]


def request_stop(run_dir: Path) -> None:
    send_control(run_dir, stop_command("rldk-tui"))


def set_auto_stop(run_dir: Path, enabled: bool) -> None:
    send_control(run_dir, auto_stop_command(enabled))


def default_run_dir(root: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root or "rldk_runs") / f"{stamp}-{os.getpid()}"  # beside the monitor's default


def monitor_command(
    cmd: list[str], run_dir: Path, preset: str | None = None, rules: str | None = None
) -> list[str]:
    args = [sys.executable, "-m", "rldk_engine.cli", "monitor", "--run-dir", str(run_dir)]
    if preset:
        args += ["--preset", preset]
    if rules:
        args += ["--rules", str(rules)]
    return [*args, "--", *cmd]


def launch_monitor(
    cmd: list[str], run_dir: Path, preset: str | None = None, rules: str | None = None
) -> subprocess.Popen:
    """Start the headless supervisor in its own session: it outlives this terminal.

    Its passthrough copy of the trainer's stdout goes to /dev/null (monitor.log has it)
    and its own messages (stderr) to DIR/supervisor.log, never to our tty, so a lost SSH
    connection (SIGHUP to our session) reaches neither it nor the trainer.
    """
    run_dir = Path(run_dir)
    make_run_dir(run_dir)  # the user's umask, never world-writable
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(open_artifact(run_dir / SUPERVISOR_LOG), "ab") as out:  # no symlinks, no FIFOs
        return subprocess.Popen(
            monitor_command(cmd, run_dir, preset, rules),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
            env=env,
            close_fds=True,
        )


def pid_alive(pid: object) -> bool | None:
    """Is the process there? None when unknown (no pid). A zombie counts as gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeding is the best we know


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "gone"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def supervisor_gone_text(status: dict, how: str) -> str:
    """Header words when the monitor died without writing a final state."""
    pid = status.get("monitor_pid")
    who = f"monitor pid {pid}" if pid else "monitor"
    return f"supervisor gone ({who} {how}): trainer state unknown, not guarded"


def monitor_errors_text(status: dict) -> str | None:
    """The monitor's own problems (status.json "errors"), newest first, on one line."""
    errors = [str(e) for e in status.get("errors") or [] if str(e).strip()]
    if not errors:
        return None
    more = f"  (+{len(errors) - 1} more in status.json)" if len(errors) > 1 else ""
    return f"monitor error: {errors[-1]}{more}"
