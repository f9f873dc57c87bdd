"""Stable-Baselines3, for real: its console tables read live by `rldk-engine monitor`."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import pytest
from realrun import HERE, REPO, child_env, explain, monitor, rows_by_step


@pytest.fixture(scope="module", autouse=True)
def _needs_the_real_libraries():
    # Imported when a test of this module runs, not at collection (keeps collecting fast).
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("gymnasium")


pytestmark = pytest.mark.slow


def test_sb3_ppo_cartpole_tables_become_rows_under_the_monitor(tmp_path):
    run_dir = tmp_path / "run"
    result = monitor(run_dir, "ppo", "sb3_cartpole.py", "--steps", "3072", "--n-steps", "512",
                     "--log-dir", str(tmp_path / "sb3"))
    assert result.returncode == 0, explain(result, run_dir)
    rows = rows_by_step(run_dir)
    # one table per rollout, step = time/total_timesteps
    assert sorted(rows) == [512, 1024, 1536, 2048, 2560, 3072], explain(result, run_dir)
    trained = [rows[step] for step in sorted(rows)[1:]]  # the first table has no train/ section
    for row in trained:
        for name in ("approx_kl", "entropy", "value_loss", "reward_mean", "policy_loss",
                     "clip_frac", "explained_var", "lr"):
            assert name in row, (name, row)
        # SB3 logs entropy_loss = -entropy; a discrete 2-action policy has 0 < H <= ln 2
        assert 0 < row["entropy"] <= 0.6932, row
        assert 0 <= row["approx_kl"] < 0.2, row
        assert row["reward_mean"] > 0, row
    assert "reward_mean" in rows[512] and "approx_kl" not in rows[512]

    # the CSV SB3 wrote in the same run holds the same numbers (the tables round them)
    with open(tmp_path / "sb3" / "progress.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["time/total_timesteps"]) for r in table] == sorted(rows)
    for record in table[1:]:
        row = rows[int(record["time/total_timesteps"])]
        assert row["value_loss"] == pytest.approx(float(record["train/value_loss"]), rel=1e-2)
        assert row["entropy"] == pytest.approx(-float(record["train/entropy_loss"]), rel=1e-2)
        assert row["approx_kl"] == pytest.approx(float(record["train/approx_kl"]), rel=1e-3)
        assert row["reward_mean"] == pytest.approx(float(record["rollout/ep_rew_mean"]), rel=1e-2)


def test_sb3_progress_csv_followed_live_while_sb3_writes_it(tmp_path):
    csv_path, run_dir = tmp_path / "sb3" / "progress.csv", tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, str(HERE / "sb3_cartpole.py"), "--steps", "3072", "--n-steps", "512",
         "--log-dir", str(csv_path.parent)], env=child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = None
    try:
        deadline = time.monotonic() + 60
        while not csv_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher = subprocess.Popen(
            [sys.executable, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo", "--quiet",
             "--run-dir", str(run_dir), "--follow", str(csv_path)],
            env=child_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert trainer.wait(timeout=120) == 0
        deadline = time.monotonic() + 10  # the tail polls; the file is complete by now
        while len(rows_by_step(run_dir)) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        trainer.kill()
        if watcher is not None:
            watcher.send_signal(signal.SIGINT)
            watcher.communicate(timeout=30)
    rows = rows_by_step(run_dir)
    assert sorted(rows) == [512, 1024, 1536, 2048, 2560, 3072], rows
    for step in sorted(rows)[1:]:
        assert {"approx_kl", "entropy", "value_loss", "reward_mean"} <= set(rows[step])
