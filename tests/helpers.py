"""Shared by the test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
DATA = TESTS / "data"
# `rldk-engine monitor` as the tests start it (this interpreter, this checkout via cwd=REPO).
MONITOR = [sys.executable, "-m", "rldk_engine.cli", "monitor"]
# ... with short grace periods, for tests that stop a trainer on purpose.
MONITOR_FAST = [*MONITOR, "--grace-int", "0.2", "--grace-term", "0.2"]
# Real third-party logs, read in place from ../shared (never copied into the repo).
REAL_LOGS = REPO.parent / "shared" / "fixtures" / "real"
# The real runs that are healthy: no warning, no stop, health >= 0.9.
HEALTHY_REAL = (
    "verl_ppo_qwen05b_gsm8k.log",
    "verl_ppo_qwen05b_gsm8k_resp256.log",
    "verl_ppo_gemma2b_gsm8k.log",
    "ppo_pytorch_tb1.tfevents",
    "sb3_cartpole_progress.csv",
)


async def wait_for(pilot, condition, timeout: float = 15.0) -> None:
    """Let a Textual app run until `condition()` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


def wait_until(condition, timeout: float = 15.0) -> None:
    """Poll `condition()` (outside any event loop) until it holds; fail after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ----------------------------------------------------------------------------- processes


def pid_gone(pid: int) -> bool:
    """No such process, or a zombie (it cannot run; a container without a reaping init
    may keep it listed)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def pid_alive(pid: int) -> bool:
    """The process exists and can still run (a zombie counts as dead)."""
    return not pid_gone(pid)


def kill_leftovers(run_dir) -> None:
    """SIGKILL the process groups a run dir's status.json names (trainer and monitor),
    unless the run already ended, so a failed test leaks nothing into the rest."""
    import os
    import signal

    from rldk_tui.rundir import read_status

    status = read_status(Path(run_dir))
    if status.get("state") in ("stopped", "exited"):
        return
    for key in ("pgid", "monitor_pid"):
        if status.get(key):
            try:
                os.killpg(status[key], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def reported_pids(stdout: bytes) -> list[int]:
    """The pids a test trainer printed as `pid N` lines (itself and what it started)."""
    return [int(line.split()[1]) for line in stdout.decode(errors="replace").splitlines()
            if line.startswith("pid ") and line.split()[1].isdigit()]


def assert_all_gone(pids: list[int], expected: int, within: float = 5.0) -> None:
    """Every reported process is gone (waiting up to `within` s); survivors are killed so
    they never leak into the rest of the suite, then reported as a failure."""
    import os
    import signal
    import time

    assert len(pids) == expected, f"trainer reported {pids}"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not all(map(pid_gone, pids)):
        time.sleep(0.05)
    alive = [p for p in pids if not pid_gone(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, f"left running: {alive}"
