"""TRL GRPO, for real (tiny GPT-2 from a config, tokenizer built in code, nothing downloaded):
its quoted-dict console lines read live by the monitor, the same logs seen in-process by
RLDKCallback, and a runaway stopped by both."""

from __future__ import annotations

import ast
import json

import pytest
from realrun import explain, monitor, read_jsonl, rows_by_step, run_script


@pytest.fixture(scope="module", autouse=True)
def _needs_the_real_libraries():
    # Imported when a test of this module runs, not at collection (keeps collecting fast).
    pytest.importorskip("trl")
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")


pytestmark = pytest.mark.slow

# what TRL 1.x GRPO logs, under rldk's canonical names
EXPECTED_CANONICAL = ("kl", "reward_mean", "reward_std", "entropy", "grad_norm", "lr",
                      "response_len_mean", "response_clip_ratio", "frac_reward_zero_std", "clip_frac")
# keys with no canonical name are kept under their own names
EXPECTED_OWN = ("num_tokens", "completions/max_length", "rewards/length_reward/mean", "step_time")


def logged_dicts(text: str) -> list[dict]:
    """The Trainer's `{'loss': '-0.1996', ...}` lines, as Python dicts."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{'") and line.endswith("}"):
            found.append(ast.literal_eval(line))
    return found


def test_grpo_stdout_under_monitor_and_callback_parse_every_key(tmp_path):
    run_dir, callback_dir = tmp_path / "monitor", tmp_path / "callback"
    steps = 5
    result = monitor(run_dir, "grpo", "trl_grpo_tiny.py", "--out", str(tmp_path / "work"),
                     "--steps", str(steps), "--reward", "length", "--rldk-run-dir", str(callback_dir))
    assert result.returncode == 0, explain(result, run_dir)
    logged = logged_dicts((run_dir / "monitor.log").read_text(errors="replace"))
    assert len(logged) == steps + 1 and "train_runtime" in logged[-1], logged  # + the closing summary

    seen_live = rows_by_step(run_dir)
    seen_in_process = rows_by_step(callback_dir)
    # Hugging Face's global_step is 1-based; the closing train_runtime summary is no step
    assert sorted(seen_in_process) == list(range(1, steps + 1))
    assert sorted(seen_live) == list(range(1, steps + 1)), explain(result, run_dir)
    for step in range(1, steps + 1):
        live, in_process = seen_live[step], seen_in_process[step]
        for name in EXPECTED_CANONICAL + EXPECTED_OWN:
            assert name in live, (step, name, sorted(live))
        # every key the trainer logged reaches the run dir under the same name both ways
        assert set(live) == set(in_process), (step, set(live) ^ set(in_process))
        for name, value in in_process.items():
            assert live[name] == pytest.approx(value, rel=1e-3, abs=1e-9), (step, name)
        # and the values are the printed ones
        printed = logged[step - 1]
        assert live["kl"] == pytest.approx(float(printed["kl"]), rel=1e-3)
        assert live["response_clip_ratio"] == pytest.approx(float(printed["completions/clipped_ratio"]))
    # key count: every logged key (epoch aside, which the step replaces) is one column
    for step, printed in enumerate(logged[:-1], start=1):
        assert len(seen_live[step]) >= len(printed) - 1, (step, sorted(printed), sorted(seen_live[step]))


RUNAWAY = ("--steps", "40", "--lr", "0.05", "--reward", "length", "--beta", "0.1")


def test_grpo_runaway_is_stopped_by_the_callback(tmp_path):
    callback_dir = tmp_path / "rldk"
    result = run_script("trl_grpo_tiny.py", "--out", str(tmp_path / "work"), *RUNAWAY,
                        "--rldk-run-dir", str(callback_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rldk stopped training: kl_spike" in result.stdout, result.stdout[-2000:]
    rows = rows_by_step(callback_dir)
    assert 5 <= max(rows) < 40  # stopped long before the 40 steps it was given
    status = json.loads((callback_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["exit_code"] == 3
    alerts = read_jsonl(callback_dir / "alerts.jsonl")
    assert any(a["rule"] == "kl_spike" and a["action"] == "stop" for a in alerts), alerts
    # a length reward: the completions run to the cap
    assert max(row.get("response_clip_ratio", 0) for row in rows.values()) >= 0.75


def test_grpo_runaway_is_stopped_by_the_monitor(tmp_path):
    run_dir = tmp_path / "run"
    result = monitor(run_dir, "grpo", "trl_grpo_tiny.py", "--out", str(tmp_path / "work"), *RUNAWAY)
    assert result.returncode == 3, explain(result, run_dir)
    alerts = read_jsonl(run_dir / "alerts.jsonl")
    assert any(a["rule"] == "kl_spike" and a["action"] == "stop" for a in alerts), alerts
    assert max(rows_by_step(run_dir)) < 40
