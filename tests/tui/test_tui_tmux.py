"""End to end in a real terminal (tmux): the guardrail stop on screen, and the design
rule that the guardrail outlives the screen (kill the app; the run stays guarded)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO, kill_leftovers, pid_alive

from rldk_tui.rundir import read_status

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

RUNAWAY = textwrap.dedent("""
    import json, sys, time
    runaway_from, delay = int(sys.argv[1]), float(sys.argv[2])
    for step in range(100000):
        kl = 0.05 if step < runaway_from else 0.5 + 0.05 * (step - runaway_from)
        print(json.dumps({"step": step, "kl": kl, "reward_mean": step / 1000,
                          "entropy": 2.0 - step / 1000, "grad_norm": 1.0}), flush=True)
        time.sleep(delay)
""")


class Tmux:
    """A private tmux server (own socket) so tests never touch the user's sessions."""

    def __init__(self, socket: str) -> None:
        self.base = ["tmux", "-L", socket]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              check=False).stdout

    def start(self, name: str, command: str) -> None:
        """Open a 120x40 window, wait until it really is that size, then run command."""
        self("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c", str(REPO),
             "sleep 600")
        # Detached windows may fall back to 80x24: pin the size by hand.
        self("set-option", "-t", name, "window-size", "manual")
        self("resize-window", "-t", name, "-x", "120", "-y", "40")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            size = self("display-message", "-p", "-t", name, "#{window_width}x#{window_height}")
            if size.strip() == "120x40":
                break
            time.sleep(0.05)
        env = "env -u NO_COLOR -u COLUMNS -u LINES TERM=xterm-256color TEXTUAL_ANIMATIONS=none "
        self("respawn-pane", "-k", "-t", name, "-c", str(REPO), env + command + "; sleep 60")

    def capture(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def wait_for_text(self, name: str, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture(name)
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen was:\n{screen}")


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(f"rldk-test-{os.getpid()}-{tmp_path.name}")
    yield server
    server("kill-server")


@pytest.fixture
def runaway(tmp_path) -> Path:
    script = tmp_path / "runaway.py"
    script.write_text(RUNAWAY)
    return script


def tui(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "rldk_tui.cli", *args])


def test_guardrail_stop_in_a_real_terminal(tmux, runaway, tmp_path):
    run_dir = tmp_path / "run"
    try:
        tmux.start("e2e", tui("run", "--run-dir", str(run_dir), "--", sys.executable,
                              str(runaway), "30", "0.02"))
        tmux.wait_for_text("e2e", "GUARDRAIL STOPPED THE RUN")
        step = read_status(run_dir)["stop_step"]
        screen = tmux.wait_for_text("e2e", f"stopped by guardrail (kl_spike, step {step})")
        assert f"rule kl_spike at step {step}" in screen, screen
        assert "alerts" in screen and "trainer output" in screen and "kl_spike" in screen, screen
    finally:
        kill_leftovers(run_dir)


def test_the_guardrail_outlives_the_screen(tmux, runaway, tmp_path):
    run_dir = tmp_path / "run"
    try:
        tmux.start("app", tui("run", "--run-dir", str(run_dir), "--", sys.executable,
                              str(runaway), "150", "0.02"))
        deadline = time.monotonic() + 20
        while read_status(run_dir).get("state") != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        status = read_status(run_dir)
        assert status.get("state") == "running"
        app_pid = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        tmux("kill-session", "-t", "app")  # the terminal goes away (SIGHUP) ...
        try:
            os.kill(app_pid, signal.SIGKILL)  # ... and the app with it, for certain
        except ProcessLookupError:
            pass
        time.sleep(0.5)
        assert not pid_alive(app_pid)
        assert pid_alive(status["monitor_pid"]) and pid_alive(status["child_pid"])
        assert read_status(run_dir)["state"] == "running"

        tmux.start("watch", tui("watch", str(run_dir)))
        screen = tmux.wait_for_text("watch", "GUARDRAIL STOPPED THE RUN")
        final = read_status(run_dir)
        assert final["stop_reason"] == "guardrail"
        assert f"rule kl_spike at step {final['stop_step']}" in screen
        assert not pid_alive(status["child_pid"])
    finally:
        kill_leftovers(run_dir)


TRAINER = textwrap.dedent("""
    import json, sys, time
    kind, steps = sys.argv[1], int(sys.argv[2])
    for step in range(steps):
        kl = 0.5 + 0.05 * step if kind == "runaway" and step >= 10 else 0.05
        print(json.dumps({"step": step, "kl": kl, "reward_mean": step / 100,
                          "entropy": 2.0 - step / 100, "grad_norm": 1.0}), flush=True)
        time.sleep(0.05)
    if kind == "crash":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
""")


def test_the_workspace_reads_three_monitored_runs(tmux, tmp_path):
    """Three runs under `rldk-engine monitor` (stopped by the guardrail, healthy, crashed)
    and `rldk-tui watch DIR` in a real 120x40 terminal: each state read off the screen."""
    from rldk_tui.rundir import monitor_command

    short = Path(tempfile.mkdtemp(prefix="ws", dir="/tmp"))  # the header shows the command whole
    trainer = short / "trainer.py"
    trainer.write_text(TRAINER)
    root = short / "rldk_runs"
    root.mkdir()
    runs = {"runaway": ("runaway", "400"), "healthy": ("healthy", "60"),
            "crashed": ("crash", "20")}
    monitors = []
    try:
        tmux.start("ws", tui("watch", str(root)))  # before the runs: they appear live
        tmux.wait_for_text("ws", "runs under")
        for name, (kind, steps) in runs.items():
            argv = monitor_command([sys.executable, str(trainer), kind, steps], root / name,
                                   preset="ppo")
            monitors.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True))
        screen = tmux.wait_for_text("ws", "healthy  running", 60)
        for monitor in monitors:
            monitor.wait(60)
        screen = tmux.wait_for_text("ws", "finished", 30)
        rows = {line.split()[1]: line for line in screen.splitlines()
                if len(line.split()) > 2 and line.split()[1] in runs}
        assert "stopped by guardrail" in rows["runaway"] and "kl_spike" in rows["runaway"], screen
        assert "finished" in rows["healthy"] and " ok " in rows["healthy"], screen
        assert "crashed" in rows["crashed"], screen
        assert read_status(root / "runaway")["stop_reason"] == "guardrail"
        tmux("send-keys", "-t", "ws", "Down")  # the cursor starts on the first row
        for _ in range(3):
            tmux("send-keys", "-t", "ws", "Up")
        first = next(line.split()[1] for line in screen.splitlines()
                     if len(line.split()) > 2 and line.split()[1] in runs)
        tmux("send-keys", "-t", "ws", "Enter")  # open the run under the cursor
        # The header's command names the trainer's kind (a toast may cover the run-dir line).
        screen = tmux.wait_for_text("ws", f"trainer.py {runs[first][0]} {runs[first][1]}", 20)
        assert "trainer output" in screen, screen
        tmux("send-keys", "-t", "ws", "Escape")
        tmux.wait_for_text("ws", "runs under", 10)
    finally:
        for monitor in monitors:
            if monitor.poll() is None:
                os.killpg(monitor.pid, signal.SIGKILL)
        for name in runs:
            if (root / name).is_dir():
                kill_leftovers(root / name)
        shutil.rmtree(short, ignore_errors=True)
