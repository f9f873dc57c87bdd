"""`rldk-tui run` logic: the app starts the real headless monitor around a fake trainer."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from helpers import pid_alive, wait_for
from textual.widgets import Switch

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.rundir import read_status
from rldk_tui.screens import ConfirmKillScreen
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner

TRAINER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    runaway_from, steps, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    if len(sys.argv) > 4:  # a grandchild in the same process group (a dataloader worker)
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(f"worker pid {worker.pid}", flush=True)
    gate = os.environ.get("TRAINER_GATE")  # the test opens it once its switch is applied
    for step in range(steps):
        if gate and step == runaway_from:
            for _ in range(1000):
                if os.path.exists(gate):
                    break
                time.sleep(0.02)
        kl = 0.05 if step < runaway_from else 0.5 + 0.1 * (step - runaway_from)
        print(json.dumps({"step": step, "kl": kl, "reward_mean": step / 100,
                          "entropy": 1.0 - step / 1000}), flush=True)
        time.sleep(delay)
""")


@pytest.fixture
def trainer(tmp_path) -> Path:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    return script


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    yield path
    status = read_status(path)  # never leave a detached monitor or trainer behind
    for key in ("pgid", "monitor_pid"):
        pid = status.get(key)
        if pid and status.get("state") not in ("stopped", "exited"):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run_app(run_dir: Path, cmd: list[str]) -> RldkApp:
    return RldkApp(AppConfig(run_dir=run_dir, launch_cmd=cmd, preset="ppo", gpu=False,
                             refresh_s=0.05))




async def test_guardrail_stop_shows_alerts_and_the_rule(run_dir, trainer):
    app = run_app(run_dir, [sys.executable, str(trainer), "20", "2000", "0.01"])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: read_status(run_dir).get("state") == "stopped")
        await wait_for(pilot, lambda: not app.live.is_running)
        status = read_status(run_dir)
        assert status["stop_reason"] == "guardrail" and status["stop_rule"] == "kl_spike"
        assert app.query_one(AlertsTable).row_count >= 1
        header = app.query_one(RunHeader)
        assert header.state_text == f"stopped by guardrail (kl_spike, step {status['stop_step']})"
        assert f"kl_spike at step {status['stop_step']}" in str(app.query_one(StopBanner).render())
        assert not pid_alive(status["child_pid"])
        assert app.check_action("kill", ()) is None
    # The same artifacts as the headless monitor.
    for name in ("run.jsonl", "alerts.jsonl", "monitor.log", "status.json"):
        assert (run_dir / name).stat().st_size > 0


async def test_auto_stop_switch_off_means_no_stop(run_dir, trainer, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv("TRAINER_GATE", str(gate))  # inherited by monitor and trainer
    app = run_app(run_dir, [sys.executable, str(trainer), "25", "45", "0.01"])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running and bool(read_status(run_dir)))
        await pilot.click("#auto-stop")
        await wait_for(pilot, lambda: read_status(run_dir).get("auto_stop") is False)
        gate.touch()  # only now may KL run away
        await wait_for(pilot, lambda: read_status(run_dir).get("state") == "exited", 20)
        await wait_for(pilot, lambda: not app.live.is_running)
        assert app.query_one("#auto-stop", Switch).value is False
        assert app.query_one(AlertsTable).row_count >= 1  # the rule still fired ...
        status = read_status(run_dir)
        assert status["exit_code"] == 0 and status["stop_reason"] is None  # ... but no stop
        assert app.query_one(RunHeader).state_text == "exited with code 0"


async def test_kill_key_stops_the_whole_process_group(run_dir, trainer):
    app = run_app(run_dir, [sys.executable, str(trainer), "100000", "100000", "0.01", "w"])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "worker pid" in (run_dir / "monitor.log").read_text()
                       if (run_dir / "monitor.log").exists() else False)
        await wait_for(pilot, lambda: app.live.is_running and bool(read_status(run_dir)))
        log = (run_dir / "monitor.log").read_text()
        worker_pid = int(log.split("worker pid ")[1].split()[0])
        child_pid = read_status(run_dir)["child_pid"]
        assert pid_alive(worker_pid) and pid_alive(child_pid)
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmKillScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: read_status(run_dir).get("state") == "stopped")
        assert read_status(run_dir)["stop_reason"] == "user"
        await wait_for(pilot, lambda: not pid_alive(worker_pid) and not pid_alive(child_pid), 5)
        await wait_for(pilot, lambda: app.query_one(RunHeader).state_text == "stopped by user")
    lines = (run_dir / "control.jsonl").read_bytes().splitlines()
    assert orjson.loads(lines[-1]) == {"action": "stop", "by": "rldk-tui"}
