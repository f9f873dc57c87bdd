"""Never a wrong kill (issue 9, item 4): healthy runs through the streaming presets give
zero stop actions — real third-party logs, generated clean runs, and the real demo
trainer under the live monitor."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import HEALTHY_REAL, MONITOR, REPO

from rldk_engine.devtools.fixtures import scenario_run, write_run
from rldk_engine.ingest.readers import read_run
from rldk_engine.live.rules import replay

PRESETS = ("ppo", "grpo")
VERL_LOGS = tuple(name for name in HEALTHY_REAL if name.startswith("verl_"))


def stops(alerts) -> list[tuple]:
    return [(a.rule, a.step) for a in alerts if a.event == "fire" and a.action == "stop"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", HEALTHY_REAL)
def test_healthy_real_log_is_never_stopped(real_logs, name, preset):
    run = read_run(str(real_logs / name))
    assert len(run.steps) > 10  # the log was really read
    assert stops(replay(run, preset)) == []


def test_degenerate_trl_grpo_log_warns_but_is_not_stopped(real_logs):
    """Every completion hits the length cap (clipped_ratio 0.6 -> 1.0) while reward stays
    flat: a wasteful run worth a warning, but not a diverging one: KL is small, nothing is
    NaN, so killing it would throw away a run that a human should judge."""
    alerts = replay(read_run(str(real_logs / "trl_grpo_chaos_training_logs.json")), "grpo")
    assert stops(alerts) == []
    fired = {a.rule for a in alerts if a.event == "fire"}
    assert "length_explosion" in fired  # the degeneration is seen, as a warning
    assert all(a.action == "warn" for a in alerts)


@pytest.mark.parametrize("name", VERL_LOGS)
def test_verl_console_log_streamed_through_live_monitor(real_logs, tmp_path, name):
    """The live path: raw console lines (Ray prefixes, ANSI, NUL bytes) on stdin."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*MONITOR, "--quiet", "--run-dir", str(run_dir), "-"],
        stdin=open(real_logs / name, "rb"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["steps"] >= 100 and status["stop_reason"] is None
    alerts = [json.loads(x) for x in (run_dir / "alerts.jsonl").read_text().splitlines()]
    assert [a for a in alerts if a["action"] == "stop"] == []


@pytest.mark.parametrize("algo", PRESETS)
def test_clean_fixtures_are_never_stopped(tmp_path, algo):
    for seed in range(6):
        log = write_run(scenario_run(algo, "clean", seed, n_steps=600), tmp_path / f"{algo}_{seed}")
        run = read_run(str(log))
        assert len(run.steps) == 600
        assert stops(replay(run, algo)) == [], f"{algo} seed {seed}"


def test_demo_trainer_under_live_monitor_is_not_stopped(tmp_path):
    """The real torch trainer (default, stable settings), PPO and GRPO side by side."""
    procs = {}
    for algo in PRESETS:
        cmd = [*MONITOR, "--quiet", "--preset", algo,
               "--run-dir", str(tmp_path / algo), "--",
               sys.executable, str(REPO / "demos" / "ppo_trainer.py"), "--steps", "100", "--algo", algo]
        procs[algo] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    for algo, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{algo}: {err.decode()[-2000:]}"
        status = json.loads((tmp_path / algo / "status.json").read_text())
        assert (status["steps"], status["stop_reason"], status["exit_code"]) == (100, None, 0)
        alerts = [json.loads(x) for x in (tmp_path / algo / "alerts.jsonl").read_text().splitlines()]
        assert [a for a in alerts if a["action"] == "stop"] == []
