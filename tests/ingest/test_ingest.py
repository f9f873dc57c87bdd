"""Ingest: alias table, line parser, every file format, real logs, bad input."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from rldk_engine.errors import InputError
from rldk_engine.ingest.metrics import ALIASES, CANONICAL, canonical_map, canonical_name
from rldk_engine.ingest.parse import LineParser, clean_line, parse_line
from rldk_engine.ingest.readers import detect_format, discover_sources, load_runs, read_run
from rldk_engine.ingest.run import Run

# ------------------------------------------------------------------ alias table


def test_spec_examples_map_to_their_canonical_names():
    spec = {
        "step": ["step", "global_step", "_step", "iteration", "train/global_step", "time/total_timesteps"],
        "kl": ["kl", "train/kl", "critic/kl", "actor/kl_loss", "KL"],
        "kl_seq": ["objective/kl"],
        "kl_coef": ["objective/kl_coef", "kl_coef", "actor/kl_coef", "critic/kl_coeff", "beta"],
        "approx_kl": ["ppo/policy/approxkl", "policy/approxkl_avg", "actor/ppo_kl", "losses/approx_kl", "train/approx_kl"],
        "reward_mean": ["env/reward_mean", "reward", "ppo/mean_scores", "objective/scores", "critic/score/mean",
                        "rollout/ep_rew_mean", "charts/episodic_return", "episode_reward", "EpRet"],
        "reward_std": ["env/reward_std", "reward_std"],
        "entropy": ["objective/entropy", "ppo/policy/entropy", "policy/entropy_avg", "actor/entropy",
                    "losses/entropy", "entropy", "Entropy", "train/entropy_loss", "actor/entropy_loss"],
        "clip_frac": ["ppo/policy/clipfrac", "policy/clipfrac_avg", "actor/pg_clipfrac", "losses/clipfrac",
                      "train/clip_fraction", "clip_ratio/region_mean", "ClipFrac"],
        "grad_norm": ["grad_norm", "actor/grad_norm", "train/grad_norm", "actor_grad_norm"],
        "value_grad_norm": ["critic/grad_norm", "critic_grad_norm"],
        "policy_loss": ["ppo/loss/policy", "loss/policy_avg", "actor/pg_loss", "losses/policy_loss",
                        "train/policy_gradient_loss", "LossPi"],
        "value_loss": ["ppo/loss/value", "loss/value_avg", "critic/vf_loss", "losses/value_loss",
                       "train/value_loss", "critic_loss", "LossV"],
        "advantage_mean": ["ppo/policy/advantages_mean", "critic/advantages/mean", "advantages/mean"],
        "explained_var": ["ppo/val/var_explained", "critic/vf_explained_var", "losses/explained_variance",
                          "train/explained_variance"],
        "response_len_mean": ["tokens/responses_len_mean", "response_length/mean", "completions/mean_length",
                              "completion_length"],
        "response_clip_ratio": ["response_length/clip_ratio", "completions/clipped_ratio"],
        "frac_reward_zero_std": ["frac_reward_zero_std"],
        "lr": ["lr", "learning_rate", "ppo/learning_rate", "actor/lr", "train/learning_rate", "charts/learning_rate"],
    }
    for name, keys in spec.items():
        for key in keys:
            assert canonical_name(key) == name, key
    assert canonical_name("my/custom_metric") == "my/custom_metric"


def test_no_source_key_is_listed_under_two_canonical_names():
    seen: dict[str, str] = {}
    for name, keys in ALIASES.items():
        for key in keys:
            assert key not in seen, f"{key} under {seen.get(key)} and {name}"
            seen[key] = name
    assert CANONICAL[0] == "step"


def test_sb3_entropy_loss_is_negated_and_verl_entropy_loss_is_not():
    assert canonical_map(("train/entropy_loss",)) == (("entropy", True),)
    assert canonical_map(("actor/entropy_loss",)) == (("entropy", False),)


def test_conflicting_aliases_keep_the_loser_under_its_own_name():
    mapping = canonical_map(("completion_length", "completions/mean_length"))
    assert mapping == (("completion_length", False), ("response_len_mean", False))


def test_a_losing_alias_named_like_a_canonical_metric_does_not_overwrite_the_winner():
    assert canonical_map(("entropy", "objective/entropy")) == (("alt/entropy", False), ("entropy", False))
    run = Run.from_records([{"step": 0, "entropy": 9.0, "objective/entropy": 0.1}])
    assert run.columns["entropy"].tolist() == [0.1] and run.columns["alt/entropy"].tolist() == [9.0]
    line = '{"step": 0, "entropy": 9.0, "objective/entropy": 0.1}'
    assert LineParser().feed(line).metrics == {"alt/entropy": 9.0, "entropy": 0.1}


# ------------------------------------------------------------------ line parser


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"step": 3, "objective/kl": 0.1}', {"step": 3.0, "objective/kl": 0.1}),
        ('{"step": 3, "data": {"kl": 0.2, "reward": 1}}', {"step": 3.0, "kl": 0.2, "reward": 1.0}),
        ("{'loss': 0.1, 'kl': nan, 'learning_rate': 5e-05, 'epoch': 0.01}",
         {"loss": 0.1, "kl": math.nan, "learning_rate": 5e-05, "epoch": 0.01}),
        ("{'kl': np.float64(0.25), 'grad_norm': tensor(1.5, device='cuda:0')}", {"kl": 0.25, "grad_norm": 1.5}),
        ("\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:7 - critic/kl:0.012 - actor/entropy_loss:0.41",
         {"step": 7.0, "critic/kl": 0.012, "actor/entropy_loss": 0.41}),
        ("[rank3]: step=12 kl=0.3 reward=1.5", {"step": 12.0, "kl": 0.3, "reward": 1.5}),
        ('{"step": 1, "kl": "Infinity", "reward": null, "name": "run-a"}',
         {"step": 1.0, "kl": math.inf, "reward": math.nan}),
        ('{"step": 1, "kl": NaN}', {"step": 1.0, "kl": math.nan}),
        ("\x00\x00step:2 - a:1.0", {"step": 2.0, "a": 1.0}),
        # the bar's counter is the global step of the dict glued to it
        (" 10%|#  | 1/10 [00:01<00:09]{'loss': 0.5, 'kl': 0.01}", {"loss": 0.5, "kl": 0.01, "global_step": 1.0}),
    ],
)
def test_parse_line_understands_every_trainer_line(line, expected):
    got = parse_line(line)
    assert got is not None and got.keys() == expected.keys()
    for key, value in expected.items():
        assert (math.isnan(value) and math.isnan(got[key])) or got[key] == value


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Epoch 1 started",
        "2024-12-10 06:50:29,276\tINFO worker.py:1752 -- Started a local Ray instance.",
        "(main_task pid=1) {'actor_rollout_ref': {'actor': {'clip_ratio': 0.2,",
        "(WorkerDict pid=5) Critic overriding config {'bos_token_id': None, 'eos_token_id': 151645}",
        "we set lr=0.1 because it worked before",
        "{not json at all",
        "[1, 2, 3]",
    ],
)
def test_parse_line_rejects_non_metric_lines(line):
    assert parse_line(line) is None


def test_clean_line_strips_prefixes_colours_and_nuls():
    assert clean_line("\x1b[36m(TaskRunner pid=9, ip=10.0.0.2)\x1b[0m \x00step:1 - a:2\n") == "step:1 - a:2"


def test_line_parser_infers_missing_steps_and_counts_rejections():
    parser = LineParser()
    lines = ['{"kl": 0.1}', '{"kl": 0.2}', "hello", '{"step": 10, "kl": 0.3}', '{"kl": 0.4}', '{"kl": 0.5']
    records = [parser.feed(line) for line in lines]
    steps = [r.step for r in records if r is not None]
    assert steps == [0, 1, 10, 11]
    assert records[3].metrics == {"kl": 0.3}
    assert parser.n_lines == 6 and parser.n_records == 4 and parser.n_rejected == 1
    assert parser.rejections == ["line 6: looks like a metric line but could not be parsed"]


def test_line_parser_canonicalises_and_flips_sb3_entropy():
    record = LineParser().feed('{"time/total_timesteps": 2048, "train/entropy_loss": -0.68, "foo": 1}')
    assert record.step == 2048
    assert record.metrics == {"entropy": 0.68, "foo": 1.0}


# ------------------------------------------------------------------ file readers


def _write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_jsonl_flat_and_nested(tmp_path):
    rows = [{"step": i, "train/kl": 0.01 * i, "env/reward_mean": float(i)} for i in range(5)]
    rows.append({"step": 5, "data": {"train/kl": 0.05, "env/reward_mean": 5.0}})
    run = read_run(_write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    assert run.format == "jsonl"
    assert run.steps.tolist() == list(range(6))
    np.testing.assert_allclose(run.columns["kl"], [0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
    assert run.canonical_metrics == ["kl", "reward_mean"]


def test_jsonl_bad_lines_are_counted_not_fatal(tmp_path):
    text = '{"step": 0, "kl": 0.1}\n{"step": 1, "kl": 0.2\nnot json\n[1,2]\n{"step": 2, "kl": NaN, "reward": null}\n{"step": 3, "kl": "Infinity"}\n{"step": 4, "kl'
    run = read_run(_write(tmp_path / "b.jsonl", text), fmt="jsonl")
    assert run.steps.tolist() == [0, 2, 3]
    assert run.n_skipped == 4
    assert run.errors[0] == "line 2: not valid JSON (skipped)"
    assert "line 4: JSON list, not an object (skipped)" in run.errors
    assert run.nonfinite["kl"].tolist() == [2, 3]
    assert math.isinf(run.columns["kl"][2])


def test_duplicate_and_decreasing_steps_are_merged_last_value_wins(tmp_path):
    text = "\n".join(
        json.dumps(r)
        for r in [
            {"step": 0, "test_score": 0.5},
            {"step": 0, "kl": 0.0, "reward": 1.0},
            {"step": 2, "kl": 0.2},
            {"step": 1, "kl": 0.1},
            {"step": 2, "kl": 0.25, "reward": 3.0},
        ]
    )
    run = read_run(_write(tmp_path / "d.jsonl", text))
    assert run.steps.tolist() == [0, 1, 2]
    assert run.columns["kl"].tolist() == [0.0, 0.1, 0.25]
    assert run.columns["test_score"][0] == 0.5 and math.isnan(run.columns["test_score"][1])
    assert run.columns["reward_mean"][0] == 1.0 and run.columns["reward_mean"][2] == 3.0


def test_csv_with_blank_cells_and_ragged_rows(tmp_path):
    text = (
        "time/total_timesteps,rollout/ep_rew_mean,train/entropy_loss,note\n"
        "2048,22.2,,\n"
        '4096,28.3,-0.68,"a, quoted"\n'
        "6144,30.1\n"
        "8192,31.0,-0.66,x,extra\n"
        "10240,NaN,-0.65,y\n"
    )
    run = read_run(_write(tmp_path / "progress.csv", text))
    assert run.format == "csv"
    assert run.steps.tolist() == [2048, 4096, 10240]
    assert math.isnan(run.columns["entropy"][0]) and run.columns["entropy"][1] == pytest.approx(0.68)
    assert "entropy" not in run.nonfinite  # a blank cell is missing, not a NaN
    assert run.nonfinite["reward_mean"].tolist() == [10240]
    assert run.n_skipped == 2
    assert run.errors == ["line 4: 2 fields, header has 4 (skipped)", "line 5: 5 fields, header has 4 (skipped)"]


def test_spinning_up_progress_txt_is_tsv(tmp_path):
    text = "Epoch\tAverageEpRet\tStdEpRet\tKL\tEntropy\tTotalEnvInteracts\n0\t-20.5\t3.1\t0.01\t1.2\t4000\n1\t-18.0\t2.9\t0.012\t1.1\t8000\n"
    run = read_run(_write(tmp_path / "progress.txt", text))
    assert run.format == "tsv"
    assert run.steps.tolist() == [4000, 8000]
    assert run.columns["reward_mean"].tolist() == [-20.5, -18.0]
    assert "Epoch" in run.columns  # lost the step conflict, kept under its own name


def test_hf_trainer_state_skips_summary_row(tmp_path):
    doc = {
        "global_step": 3,
        "log_history": [
            {"step": 1, "loss": 0.5, "kl": 0.01, "reward": 0.2},
            {"step": 2, "loss": 0.4, "kl": None, "reward": 0.3},
            {"step": 2, "eval_loss": 0.45},
            {"step": 3, "loss": 0.3, "kl": 0.03, "reward": 0.4},
            {"step": 3, "train_runtime": 100.0, "train_loss": 0.4, "total_flos": 1e12},
        ],
    }
    run = read_run(_write(tmp_path / "trainer_state.json", json.dumps(doc, indent=2)))
    assert run.format == "hf_trainer_state"
    assert run.steps.tolist() == [1, 2, 3]
    assert "train_runtime" not in run.columns
    assert run.columns["eval_loss"][1] == 0.45
    assert run.nonfinite["kl"].tolist() == [2]


def test_json_array_instead_of_jsonl(tmp_path):
    run = read_run(_write(tmp_path / "rows.json", json.dumps([{"step": 1, "kl": 0.1}, {"step": 2, "kl": 0.2}, 7])))
    assert run.format == "json_array" and run.n_steps == 2 and run.n_skipped == 1


def test_stdout_mixture_python_dicts_and_key_value(tmp_path):
    text = (
        "Loading model...\n"
        "{'loss': 0.7, 'learning_rate': 1e-05, 'epoch': 0.1}\n"
        "warning: something\n"
        "{'loss': 0.6, 'learning_rate': 1e-05, 'epoch': 0.2}\n"
        "step=5 kl=0.1 reward=0.3\n"
    )
    run = read_run(_write(tmp_path / "train.out", text))
    assert run.format == "stdout"
    assert run.steps.tolist() == [1, 2, 5]  # HF global_step is 1-based
    assert run.columns["lr"][0] == 1e-05 and run.columns["kl"][2] == 0.1


def test_gzip_of_jsonl_and_truncated_gzip(tmp_path):
    body = "\n".join(json.dumps({"step": i, "kl": i / 100}) for i in range(2000)).encode()
    whole = tmp_path / "run.jsonl.gz"
    whole.write_bytes(gzip.compress(body))
    assert read_run(whole).n_steps == 2000
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(body)[:3000])
    run = read_run(cut)
    assert 0 < run.n_steps < 2000
    assert any("gzip stream ends early" in e for e in run.errors)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jsonl", b"", "empty file"),
        ("blank.log", b"   \n\n\t\n", "empty file"),
        ("noise.bin", bytes(range(256)) * 64, "binary file, not a text log"),
        ("fake.gz", b'{"step": 1}\n', "named .gz but is not a gzip file"),
        ("prose.log", b"hello\nworld\n", "no metric rows found"),
        ("broken.json", b'{"log_history": [', "not valid JSON"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_run(path)
    message = str(info.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_missing_path_and_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    runs, errors = load_runs([tmp_path / "nope.jsonl", tmp_path / "empty"])
    assert runs == []
    assert errors == [f"{tmp_path / 'nope.jsonl'}: no such file or directory",
                      f"{tmp_path / 'empty'}: directory holds no log files"]


def test_a_one_megabyte_line_is_read(tmp_path):
    big = {"step": 1, "kl": 0.1, "blob": "x" * 1_000_000}
    text = json.dumps({"step": 0, "kl": 0.0}) + "\n" + json.dumps(big) + "\n"
    run = read_run(_write(tmp_path / "big.jsonl", text))
    assert run.steps.tolist() == [0, 1] and "blob" not in run.columns


def test_directory_mixes_good_and_bad_files(tmp_path):
    (tmp_path / "good.jsonl").write_text('{"step": 0, "kl": 0.1}\n')
    (tmp_path / "bad.jsonl").write_bytes(b"")
    (tmp_path / "README.md").write_text("# not a log")
    sub = tmp_path / "tb"
    sub.mkdir()
    runs, errors = load_runs([tmp_path])
    assert [r.run_id for r in runs] == ["good.jsonl"]
    assert errors == [f"{tmp_path / 'bad.jsonl'}: empty file"]


def test_run_from_records():
    run = Run.from_records([{"step": 1, "kl": 0.5}, {"step": 2, "train/kl": 0.6}])
    assert run.columns["kl"].tolist() == [0.5, 0.6]


# ------------------------------------------------------------------ real logs


def test_real_verl_qwen(real_logs):
    run = read_run(real_logs / "verl_ppo_qwen05b_gsm8k.log")
    assert run.format == "verl_console" and run.n_steps == 435
    assert run.steps[0] == 0 and run.steps[-1] == 434
    for name in ("kl", "entropy", "reward_mean", "response_len_mean", "grad_norm", "value_grad_norm", "kl_coef"):
        assert np.isfinite(run.columns[name]).all(), name
    assert run.columns["grad_norm"][16] == pytest.approx(66, abs=1)
    assert 0.2 < np.nanmax(run.columns["kl"]) < 0.3
    assert run.n_skipped == 0


def test_real_verl_nul_bytes_parse_the_same_steps(real_logs):
    run = read_run(real_logs / "verl_ppo_qwen05b_gsm8k_resp256.log")
    assert run.format == "verl_console" and run.n_steps == 435
    assert run.steps.tolist() == list(range(435))


def test_real_verl_gemma_repeated_step_zero_is_merged(real_logs):
    run = read_run(real_logs / "verl_ppo_gemma2b_gsm8k.log")
    assert run.n_steps == 106 and run.steps.tolist() == list(range(106))
    assert np.isfinite(run.columns["test_score/openai/gsm8k"][0])
    assert np.isfinite(run.columns["kl"][0])


def test_real_trl_grpo(real_logs):
    run = read_run(real_logs / "trl_grpo_chaos_training_logs.json")
    assert run.format == "hf_trainer_state" and run.n_steps == 50
    assert run.steps[0] == 5 and run.steps[-1] == 250
    clip = run.columns["response_clip_ratio"]
    assert clip[0] == pytest.approx(0.6) and clip[-1] == pytest.approx(1.0)
    assert {"kl", "reward_mean", "reward_std", "frac_reward_zero_std", "response_len_mean"} <= set(run.columns)


def test_real_tensorboard(real_logs):
    run = read_run(next(real_logs.glob("*.tfevents")))
    assert run.format == "tensorboard" and run.n_steps == 567
    assert {"reward_mean", "policy_loss", "value_loss"} <= set(run.columns)


def test_real_sb3_csv(real_logs):
    run = read_run(real_logs / "sb3_cartpole_progress.csv")
    assert run.format == "csv" and run.n_steps == 22
    assert math.isnan(run.columns["entropy"][0]) and run.columns["entropy"][1] == pytest.approx(0.6859, abs=1e-4)
    assert run.nonfinite == {}


def test_real_directory_gives_one_run_per_log(real_logs):
    sources, errors = discover_sources([real_logs])
    assert errors == [] and len(sources) == 6
    assert all(detect_format(s.paths[0]) for s in sources)


def test_inspect_cli_prints_one_row_per_real_log(real_logs):
    result = subprocess.run(
        [sys.executable, "-m", "rldk_engine.cli", "inspect", str(real_logs)],
        capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name, steps in [("verl_ppo_qwen05b_gsm8k.log", "435"), ("sb3_cartpole_progress.csv", "22"),
                        ("trl_grpo_chaos_training_logs.json", "50"), ("verl_ppo_gemma2b_gsm8k.log", "106")]:
        line = next(line for line in result.stdout.splitlines() if name in line)
        assert steps in line.split("│")[3]
    assert "567" in result.stdout


def test_inspect_cli_bad_path_exits_2_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "rldk_engine.cli", "inspect", "/nonexistent/run.jsonl"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "/nonexistent/run.jsonl: no such file or directory"
    assert "Traceback" not in result.stderr
