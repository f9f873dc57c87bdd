"""Stable-Baselines3, for real: its console tables read live by `rldk-engine monitor`."""

from __future__ import annotations

import csv

import pytest
from realrun import explain, monitor, rows_by_step

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
