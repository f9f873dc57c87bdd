"""Live line parsing of mainstream trainers' consoles (issue 14), aliases, kl_seq (issue 16
item 8), long-format events and run discovery (issue 19, 15)."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest
from helpers import DATA
from typer.testing import CliRunner

from rldk_engine.ingest.metrics import canonical_name
from rldk_engine.ingest.parse import LineParser, canonical_metrics, parse_line
from rldk_engine.ingest.readers import discover_sources, load_runs, read_run
from rldk_engine.ingest.run import Run

INGEST_DATA = DATA / "ingest"


def _records(lines):
    parser = LineParser()
    out = [r for line in lines if (r := parser.feed(line)) is not None]
    return parser, out


# ------------------------------------------------------------------ Stable-Baselines3


def test_sb3_recorded_tables_become_one_row_per_rollout():
    lines = (INGEST_DATA / "sb3_ppo_cartpole_verbose1.txt").read_text().splitlines()
    parser, records = _records(lines)
    assert [r.step for r in records] == [512, 1024, 1536, 2048]
    # the first table has no train/ section (no update yet); every later one does
    assert "approx_kl" not in records[0].metrics and records[0].metrics["reward_mean"] > 0
    for record in records[1:]:
        for name in ("approx_kl", "entropy", "value_loss", "reward_mean", "clip_frac", "explained_var", "lr"):
            assert name in record.metrics, name
        assert 0.6 < record.metrics["entropy"] < 0.7  # -train/entropy_loss, CartPole's ln 2
    assert records[-1].metrics["approx_kl"] == pytest.approx(0.0002468985)
    assert parser.n_rejected == 0


def test_sb3_captured_stdout_file_reads_like_the_live_parser():
    run = read_run(INGEST_DATA / "sb3_ppo_cartpole_verbose1.txt")
    assert run.steps.tolist() == [512, 1024, 1536, 2048]
    assert {"approx_kl", "entropy", "value_loss", "reward_mean"} <= set(run.canonical_metrics)


def test_sb3_table_interrupted_or_joined_mid_way_loses_nothing_else():
    lines = ["|    total_timesteps | 64 |", "|    approx_kl | 0.5 |", "-" * 20,  # attached mid-table
             "-" * 20, "| train/ | |", "|    approx_kl | 0.1 |", "Traceback (most recent call last):",
             '{"step": 99, "kl": 0.2}']
    _, records = _records(lines)
    assert [(r.step, r.metrics) for r in records] == [(64, {"approx_kl": 0.5}), (99, {"kl": 0.2})]


def test_sb3_progress_csv_followed_line_by_line_matches_the_file_reader():
    path = INGEST_DATA / "sb3_ppo_cartpole_progress.csv"
    parser, records = _records(path.read_text().splitlines())
    run = read_run(path)
    assert run.format == "csv"
    assert [r.step for r in records] == run.steps.tolist() == [256, 512, 768, 1024]
    assert records[1].metrics["approx_kl"] == pytest.approx(run.columns["approx_kl"][1])
    assert "approx_kl" not in records[0].metrics  # blank cell: missing, not NaN


def test_spinning_up_progress_txt_on_stdin():
    lines = ["Epoch\tAverageEpRet\tStdEpRet\tLossPi\tLossV", "0\t-150.2\t30.1\t0.01\t200.5", "1\t-120.9\t25.0\t0.02\t150.1"]
    _, records = _records(lines)
    assert [r.step for r in records] == [0, 1]
    assert records[1].metrics == {"reward_mean": -120.9, "reward_std": 25.0, "policy_loss": 0.02, "value_loss": 150.1}


def test_prose_with_commas_is_no_csv_header():
    _, records = _records(["Loading weights, please wait", "1,2", "hello, world", "3,4"])
    assert records == []


# ------------------------------------------------------------------ CleanRL


@pytest.mark.parametrize(
    "line, step, reward",
    [
        ("global_step=9552, episodic_return=[294.]", 9552, 294.0),
        ("global_step=12, episodic_return=array([1.5], dtype=float32)", 12, 1.5),
        ("global_step=40, episodic_return=[[-3.25]]", 40, -3.25),
        ("global_step=7, episodic_return=21.0", 7, 21.0),
    ],
)
def test_cleanrl_prints_with_numpy_reprs(line, step, reward):
    record = LineParser().feed(line)
    assert record is not None and record.step == step and record.metrics == {"reward_mean": reward}


# ------------------------------------------------------------------ TRL / transformers


def test_transformers5_recorded_dicts_are_one_based_and_the_summary_is_no_step():
    parser, records = _records((INGEST_DATA / "transformers5_trainer_stdout.txt").read_text().splitlines())
    assert [r.step for r in records] == [1, 2, 3, 4]
    assert records[0].metrics["loss"] == pytest.approx(3.905) and records[0].metrics["lr"] == 5e-05
    assert parser.n_summaries == 1
    assert all("train_runtime" not in r.metrics for r in records)


def test_hf_eval_dict_belongs_to_the_step_it_follows():
    _, records = _records(["{'loss': '0.5', 'epoch': '0.5'}", "{'eval_loss': 0.4, 'epoch': 0.5}", "{'loss': '0.3', 'epoch': '1'}"])
    assert [r.step for r in records] == [1, 1, 2]


def test_trl_grpo_old_and_new_keys():
    new = canonical_metrics({"completions/mean_length": 50, "frac_reward_zero_std": 0.2,
                             "clip_ratio/region_mean": 0.01, "entropy": 0.9, "kl": 0.02, "reward": 1.0})
    old = canonical_metrics({"completion_length": 50, "kl": 0.02, "reward_std": 0.3})
    assert new == {"response_len_mean": 50.0, "frac_reward_zero_std": 0.2, "clip_frac": 0.01,
                   "entropy": 0.9, "kl": 0.02, "reward_mean": 1.0}
    assert old == {"response_len_mean": 50.0, "kl": 0.02, "reward_std": 0.3}


# ------------------------------------------------------------------ progress bars


def test_openrlhf_tqdm_postfix_frames_split_on_carriage_returns():
    frames = [
        "Train step of epoch 0:  10%|#         | 1/10 [00:01<00:09, 1.00s/it, policy_loss=0.1, kl=0.01, reward=0.5]",
        "Train step of epoch 0:  10%|#         | 1/10 [00:01<00:09, 1.00s/it, policy_loss=0.1, kl=0.01, reward=0.5]",
        "Train step of epoch 0:  20%|##        | 2/10 [00:02<00:08, 1.00s/it, policy_loss=0.2, kl=0.02, reward=0.6]",
    ]
    parser = LineParser()
    records = parser.feed_all("\r".join(frames) + "\n")
    assert [r.metrics for r in records] == [
        {"policy_loss": 0.1, "kl": 0.01, "reward_mean": 0.5},
        {"policy_loss": 0.2, "kl": 0.02, "reward_mean": 0.6},
    ]  # the redraw of an unchanged postfix is not a new step
    assert records[1].step == records[0].step + 1 and parser.n_lines == 1


def test_tianshou_progress_bar_and_epoch_summary():
    # tianshou/trainer/base.py: tqdm postfix per collect step, and one line per epoch
    lines = [
        "Epoch #1: 10001it [00:05, 1800.41it/s, env_step=10000, len=25, loss=0.5, n/ep=4, n/st=10, rew=25.00]",
        "Epoch #1: test_reward: 9.400000 ± 0.663325, best_reward: 9.400000 ± 0.663325 in #1",
    ]
    _, records = _records(lines)
    assert records[0].step == 10000 and records[0].metrics["reward_mean"] == 25.0
    assert records[1].step == 10000 and records[1].metrics["test_reward"] == 9.4
    assert records[1].metrics["test_reward_std"] == pytest.approx(0.663325)


# ------------------------------------------------------------------ other libraries' summaries


def test_sample_factory_fps_and_reward_lines():
    lines = [
        "[2022-11-30 19:48:21,166][07494] Fps is (10 sec: 22528.2, 60 sec: 20377.6, 300 sec: 20377.6). "
        "Total num frames: 3829760. Throughput: 0: 5085.4. Samples: 203415. Policy #0 lag: (min: 0.0, avg: 1.9, max: 5.0)",
        "[2022-11-30 19:48:21,166][07494] Avg episode reward: [(0, '0.824')]",
    ]
    _, records = _records(lines)
    assert [r.step for r in records] == [3829760, 3829760]
    assert records[0].metrics == {"fps": 20377.6} and records[1].metrics == {"reward_mean": 0.824}


def test_rl_games_fps_line():
    record = LineParser().feed("fps step: 112918 fps step and policy inference: 104337 fps total: 78179 epoch: 3/150 frames: 65536")
    assert record.step == 65536 and record.metrics == {"fps_step": 112918.0, "fps_total": 78179.0, "epoch": 3.0}
    fork = LineParser().feed("epoch: 5 fps step: 10.0 fps total: 9.0 mean reward: 1.23 mean lengths: 40.0")
    assert fork.step == 5 and fork.metrics["reward_mean"] == 1.23


def test_rllib_pretty_print_block_is_one_row():
    logger = pytest.importorskip("ray.tune.logger")
    result = {
        "training_iteration": 3, "timesteps_total": 12000, "done": False, "hist": [1, 2],
        "env_runners": {"episode_return_mean": 21.5, "num_episodes": 4},
        "info": {"learner": {"default_policy": {"learner_stats": {
            "kl": 0.01, "entropy": 0.6, "policy_loss": -0.02, "vf_loss": 3.2, "cur_lr": 5e-05,
            "vf_explained_var": 0.4, "cur_kl_coeff": 0.2}}}},
    }
    text = logger.pretty_print(result)
    parser, records = _records(["Result for PPO_CartPole-v1_00000:"] + text.splitlines() + ["next line"])
    assert len(records) == 1 and records[0].step == 3
    assert records[0].metrics | {} == {
        "reward_mean": 21.5, "env_runners/num_episodes": 4.0, "approx_kl": 0.01, "entropy": 0.6,
        "policy_loss": -0.02, "value_loss": 3.2, "lr": 5e-05, "explained_var": 0.4, "kl_coef": 0.2,
        "timesteps_total": 12000.0,
    }


# ------------------------------------------------------------------ aliases


@pytest.mark.parametrize(
    "key, name",
    [
        ("Policy/Entropy", "entropy"), ("Losses/Value Loss", "value_loss"), ("Losses/Policy Loss", "policy_loss"),
        ("Environment/Cumulative Reward", "reward_mean"), ("Policy/Learning Rate", "lr"),
        ("charts/episodic_return", "reward_mean"), ("losses/approx_kl", "approx_kl"),
        ("losses/old_approx_kl", "approx_kl"), ("losses/clipfrac", "clip_frac"),
        ("losses/explained_variance", "explained_var"),
        ("info/learner/default_policy/learner_stats/vf_loss", "value_loss"),
        ("learners/default_policy/entropy", "entropy"), ("env_runners/episode_return_mean", "reward_mean"),
        ("rollout/ep_rew_mean", "reward_mean"), ("train/clip_fraction", "clip_frac"),
        ("completions/mean_length", "response_len_mean"), ("completion_length", "response_len_mean"),
        ("frac_reward_zero_std", "frac_reward_zero_std"), ("clip_ratio/region_mean", "clip_frac"),
        ("entropy", "entropy"), ("objective/kl", "kl_seq"), ("kl", "kl"),
    ],
)
def test_trainer_keys_map_to_canonical_names(key, name):
    assert canonical_name(key) == name


def test_cleanrl_approx_kl_wins_over_old_approx_kl_and_both_are_kept():
    metrics = canonical_metrics({"losses/old_approx_kl": 0.3, "losses/approx_kl": 0.1})
    assert metrics == {"losses/old_approx_kl": 0.3, "approx_kl": 0.1}


# ------------------------------------------------------------------ KL semantics


def test_trl_ppo_objective_kl_is_per_sequence_and_kl_is_derived_per_row():
    parser = LineParser()
    record = parser.feed("{'objective/kl': 6.0, 'tokens/responses_len_mean': 60.0, 'step': 4}")
    assert record.metrics == {"kl_seq": 6.0, "response_len_mean": 60.0, "kl": pytest.approx(0.1)}
    assert parser.feed('{"step": 5, "objective/kl": 6.0}').metrics == {"kl_seq": 6.0}  # no length: no kl
    assert canonical_metrics({"objective/kl": 8.0, "completions/mean_length": 40})["kl"] == pytest.approx(0.2)
    logged = parser.feed('{"step": 6, "objective/kl": 6.0, "kl": 0.3, "response_length": 60}')
    assert logged.metrics["kl"] == 0.3  # a logged per-token kl is never overwritten


def test_run_columns_derive_kl_from_kl_seq():
    run = Run.from_records([
        {"step": 1, "objective/kl": 6.0, "tokens/responses_len_mean": 60.0},
        {"step": 2, "objective/kl": 9.0},
        {"step": 3, "objective/kl": 4.0, "tokens/responses_len_mean": 0.0},
    ])
    assert run.columns["kl_seq"].tolist() == [6.0, 9.0, 4.0]
    np.testing.assert_allclose(run.columns["kl"], [0.1, np.nan, np.nan])
    assert "kl" not in run.nonfinite  # rows where it cannot be derived are missing, not NaN data


# ------------------------------------------------------------------ long-format events


EVENTS = [
    {"step": 1, "name": "kl", "value": 0.11, "meta": {"src": "ppo"}, "time": 1.0},
    {"step": 1, "name": "reward_mean", "value": 0.5, "time": 1.1},
    {"step": 2, "name": "kl", "value": 0.12, "time": 2.0},
    {"step": 2, "name": "reward_mean", "value": 0.6, "time": 2.1},
]


def test_event_stream_lines_each_give_one_metric_at_their_step():
    _, records = _records([json.dumps(e) for e in EVENTS])
    assert [(r.step, r.metrics) for r in records] == [
        (1, {"kl": 0.11}), (1, {"reward_mean": 0.5}), (2, {"kl": 0.12}), (2, {"reward_mean": 0.6})]


def test_event_stream_file_pivots_to_one_row_per_step(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    run = read_run(path)
    assert run.format == "events" and run.steps.tolist() == [1, 2]
    assert run.columns["kl"].tolist() == [0.11, 0.12] and run.columns["reward_mean"].tolist() == [0.5, 0.6]
    assert "value" not in run.columns and "time" not in run.columns


# ------------------------------------------------------------------ discovery


def test_hf_output_dir_with_checkpoints_is_one_run(tmp_path):
    out = tmp_path / "grpo_out"
    for n in (40, 50, 60):
        folder = out / f"checkpoint-{n}"
        folder.mkdir(parents=True)
        history = [{"step": s, "loss": 0.1, "kl": 0.01 * s} for s in range(1, n + 1)]
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": n, "log_history": history}))
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "generation_config.json", "vocab.json", "model.safetensors.index.json", "adapter_config.json"):
            (folder / name).write_text("{}")
        os.utime(folder / "trainer_state.json", (1000 + n, 1000 + n))
    sources, errors = discover_sources([out])
    assert errors == [] and len(sources) == 1
    assert sources[0].paths == (str(out / "checkpoint-60" / "trainer_state.json"),)
    runs, errors = load_runs([tmp_path])
    assert errors == [] and len(runs) == 1 and runs[0].steps[-1] == 60


def test_top_level_trainer_state_wins_when_newer(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "kl": 1}]}))
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "kl": 1}, {"step": 12, "kl": 2}]}))
    os.utime(tmp_path / "checkpoint-10" / "trainer_state.json", (1, 1))
    sources, _ = discover_sources([tmp_path])
    assert [s.paths for s in sources] == [(str(tmp_path / "trainer_state.json"),)]


def test_sidecar_index_json_is_skipped_silently(tmp_path):
    seed = tmp_path / "seed_1"
    seed.mkdir()
    (seed / "run.jsonl").write_text(json.dumps({"step": 0, "kl": 0.1}) + "\n")
    (seed / "index.json").write_text(json.dumps({"run_id": "seed_1", "n": 1}))
    runs, errors = load_runs([tmp_path])
    assert errors == [] and [r.run_id for r in runs] == [os.path.join("seed_1", "run.jsonl")]


# ------------------------------------------------------------------ inspect --stdin


def test_inspect_stdin_shows_what_each_line_is_read_as():
    from rldk_engine.cli.engine import app

    text = (INGEST_DATA / "sb3_ppo_cartpole_verbose1.txt").read_text() + "hello\n"
    result = CliRunner().invoke(app, ["inspect", "--stdin"], input=text)
    assert result.exit_code == 0, result.output
    assert "table end" in result.output and "ignored" in result.output
    assert "approx_kl" in result.output and "4 records" in result.output


def test_inspect_stdin_says_why_nothing_was_recognised():
    from rldk_engine.cli.engine import app

    result = CliRunner().invoke(app, ["inspect", "--stdin"], input="loading...\nepoch 1 done\n[/bold] x\n")
    assert result.exit_code == 2
    assert "no canonical metric recognised" in result.output and "0 records" in result.output


def test_inspect_lines_of_a_captured_file(tmp_path):
    from rldk_engine.cli.engine import app

    result = CliRunner().invoke(app, ["inspect", "--lines", str(INGEST_DATA / "transformers5_trainer_stdout.txt")])
    assert result.exit_code == 0 and "summary (not a step)" in result.output


# ------------------------------------------------------------------ speed is linear


def test_new_formats_keep_the_parser_linear():
    # bounded-time check with a generous limit; the figure itself is in bench/
    lines = ["global_step=%d, episodic_return=[%d.]" % (i, i) for i in range(2000)]
    start = time.perf_counter()
    _records(lines * 5)
    assert time.perf_counter() - start < 5.0


def test_parse_line_on_every_kind_returns_floats():
    for line in ("global_step=1, x=array([2.0], dtype=float64)", "{'a': '1e-3'}", "step:1 - a:nan"):
        got = parse_line(line)
        assert got and all(isinstance(v, float) for v in got.values())
        assert all(math.isfinite(v) or math.isnan(v) for v in got.values())


def test_hf_progress_bar_counter_and_epoch_cadence_place_stepless_dicts():
    # logging_steps=10: the bar glued in front shows the global step once; later dicts
    # carry only `epoch`, and the cadence (100 steps per epoch) places them
    lines = [" 10%|#  | 10/100 [00:01<00:09, 9.1it/s]{'loss': 0.5, 'epoch': 0.1}",
             "{'loss': '0.4', 'epoch': '0.2'}", "{'eval_loss': '0.3', 'epoch': '0.2'}",
             "{'loss': '0.35', 'epoch': '0.3'}"]
    _, records = _records(lines)
    assert [r.step for r in records] == [10, 20, 20, 30]


def test_line_parser_finish_flushes_an_open_table():
    parser = LineParser()
    for line in ["-" * 10, "| time/ | |", "|    total_timesteps | 64 |", "|    fps | 12 |"]:
        assert parser.feed(line) is None
    record = parser.finish()
    assert record.step == 64 and record.metrics == {"time/fps": 12.0}


def test_ml_agents_console_summaries():
    lines = [
        "[INFO] 3DBall. Step: 12000. Time Elapsed: 40.689 s. Mean Reward: 1.188. Std of Reward: 0.670. Training.",
        "[INFO] Economic. Step: 20000. Time Elapsed: 98.406 s. No episode was completed since last summary. Training.",
        "[INFO] Economic. Step: 25000. Time Elapsed: 120.1 s. Mean Reward: 0.333. Std of Reward: 0.943. Training. ELO: 1197.423.",
    ]
    _, records = _records(lines)
    assert [r.step for r in records] == [12000, 20000, 25000]
    assert records[0].metrics == {"time_elapsed": 40.689, "reward_mean": 1.188, "reward_std": 0.67}
    assert records[1].metrics == {"time_elapsed": 98.406}
    assert records[2].metrics["reward_mean"] == 0.333


def test_rllib_result_json_nested_rows_map_through_the_alias_table(tmp_path):
    rows = [{"training_iteration": i, "episode_reward_mean": 10.0 + i, "config": {"lr": 5e-5},
             "info": {"learner": {"default_policy": {"learner_stats": {"kl": 0.01 * i, "entropy": 0.6,
                                                                        "vf_loss": 2.0}}}}}
            for i in range(1, 4)]
    path = tmp_path / "result.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = read_run(path)
    assert run.steps.tolist() == [1, 2, 3]
    assert run.columns["approx_kl"].tolist() == pytest.approx([0.01, 0.02, 0.03])
    assert run.columns["reward_mean"].tolist() == [11.0, 12.0, 13.0] and "value_loss" in run.columns
    record = LineParser().feed(json.dumps(rows[0]))
    assert record.step == 1 and record.metrics["entropy"] == 0.6 and record.metrics["config/lr"] == 5e-5
