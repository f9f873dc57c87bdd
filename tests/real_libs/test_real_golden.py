"""Console output recorded from the real libraries (tests/data/golden, see PROVENANCE.md),
read the two ways users meet it: live (`rldk-engine monitor -` on stdin) and stored
(`rldk-engine scan FILE`). No training here; these run in seconds."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest
from realrun import GOLDEN, REPO, child_env, rows_by_step
from typer.testing import CliRunner

from rldk_engine.cli import app

SB3_PPO = ("approx_kl", "entropy", "value_loss", "reward_mean", "policy_loss", "clip_frac",
           "explained_var", "lr")
SB3_A2C = ("entropy", "value_loss", "reward_mean", "policy_loss", "explained_var", "lr")
TRL_GRPO = ("kl", "reward_mean", "reward_std", "entropy", "grad_norm", "lr", "response_len_mean",
            "response_clip_ratio", "frac_reward_zero_std", "clip_frac")
CLEANRL_TB = ("reward_mean", "approx_kl", "entropy", "value_loss", "policy_loss", "clip_frac",
              "explained_var", "lr")


def sb3_table_steps(name: str) -> list[int]:
    text = (GOLDEN / name).read_text()
    return [int(n) for n in re.findall(r"\|\s+total_timesteps\s+\|\s+(\d+)", text)]


def cleanrl_returns() -> dict[int, list[float]]:
    returns: dict[int, list[float]] = {}
    for match in re.finditer(r"global_step=(\d+), episodic_return=\[([-0-9.e+]+)\]",
                             (GOLDEN / "cleanrl_ppo_stdout.txt").read_text()):
        returns.setdefault(int(match.group(1)), []).append(float(match.group(2)))
    return returns


def trl_dicts() -> list[dict]:
    lines = (GOLDEN / "trl_grpo_stdout.txt").read_text().splitlines()
    return [ast.literal_eval(line) for line in lines if line.startswith("{'")]


def monitor_stdin(tmp_path, name: str, preset: str = "ppo") -> dict[int, dict]:
    run_dir = tmp_path / "run"
    with open(GOLDEN / name, "rb") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "rldk_engine.cli", "monitor", "--preset", preset,
             "--run-dir", str(run_dir), "-"],
            stdin=handle, capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return rows_by_step(run_dir)


def scan(tmp_path, name: str) -> dict:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["scan", str(GOLDEN / name), "--out", str(out)])
    assert result.exit_code == 0, result.output[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 1, [r["run_id"] for r in runs]
    return runs[0]


@pytest.mark.parametrize("name, expected", [
    ("sb3_ppo_cartpole_stdout.txt", SB3_PPO),
    ("sb3_a2c_cartpole_stdout.txt", SB3_A2C),
    ("sb3_ppo_pendulum_stdout.txt", SB3_PPO),
])
def test_sb3_tables_live_one_row_per_table(tmp_path, name, expected):
    rows = monitor_stdin(tmp_path, name)
    steps = sb3_table_steps(name)
    assert sorted(rows) == steps
    for step in steps[1:] if "ppo" in name else steps:  # PPO's first table precedes training
        assert set(expected) <= set(rows[step]), (step, sorted(rows[step]))
    first_train = rows[steps[-1]]
    assert first_train["entropy"] > 0  # SB3 prints entropy_loss = -entropy


@pytest.mark.parametrize("name, n_steps, expected", [
    ("sb3_ppo_cartpole_stdout.txt", 6, SB3_PPO),
    ("sb3_ppo_cartpole_progress.csv", 6, SB3_PPO),
    ("sb3_a2c_cartpole_stdout.txt", 4, SB3_A2C),
    ("sb3_a2c_cartpole_progress.csv", 4, SB3_A2C),
    ("sb3_ppo_pendulum_progress.csv", 3, SB3_PPO),
    ("cleanrl_ppo_cartpole_tb", None, CLEANRL_TB),
    ("trl_grpo_stdout.txt", 8, TRL_GRPO),
])
def test_stored_golden_files_scan_with_their_metrics(tmp_path, name, n_steps, expected):
    run = scan(tmp_path, name)
    assert set(expected) <= set(run["metrics"]), sorted(run["metrics"])
    if n_steps is not None:
        assert run["n_steps"] == n_steps


def test_cleanrl_prints_live_keep_the_numpy_array_value(tmp_path):
    rows = monitor_stdin(tmp_path, "cleanrl_ppo_stdout.txt")
    returns = cleanrl_returns()
    assert sorted(returns) == sorted(rows)
    for step, values in returns.items():
        assert rows[step].get("reward_mean") in values, (step, rows[step], values)


def test_cleanrl_stdout_scans_as_console_not_csv(tmp_path):
    run = scan(tmp_path, "cleanrl_ppo_stdout.txt")
    assert "reward_mean" in run["metrics"] and run["n_steps"] == len(cleanrl_returns())
    assert not run["errors"], run["errors"][:3]


def test_trl_dicts_live_one_based_steps_and_no_summary_row(tmp_path):
    rows = monitor_stdin(tmp_path, "trl_grpo_stdout.txt", preset="grpo")
    logged = trl_dicts()
    assert "train_runtime" in logged[-1]
    step_dicts = logged[:-1]
    assert sorted(rows) == list(range(1, len(step_dicts) + 1))
    for step, printed in enumerate(step_dicts, start=1):
        assert set(TRL_GRPO) <= set(rows[step])
        assert rows[step]["kl"] == pytest.approx(float(printed["kl"]))
        assert rows[step]["reward_mean"] == pytest.approx(float(printed["reward"]))
        assert "train_runtime" not in rows[step]
