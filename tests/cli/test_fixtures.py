"""Doctored fixtures: files, labels, determinism, realistic keys and faults."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.devtools import fixtures as fx
from rldk_engine.ingest.metrics import canonical_name
from rldk_engine.ingest.readers import read_run

RULES_WITHOUT_STALL = {
    "kl_spike", "kl_controller_drift", "approx_kl_high", "advantage_bias", "entropy_collapse",
    "grad_norm_spike", "grad_imbalance", "non_finite", "reward_hacking", "reward_collapse",
    "clip_frac_high", "length_explosion", "length_collapse", "zero_std_groups", "value_divergence",
}


@pytest.mark.parametrize("table", [fx.PPO_TRL_KEYS, fx.GRPO_TRL_KEYS])
def test_trl_keys_map_onto_the_intended_canonical_names(table):
    for canon, key in table.items():
        assert canonical_name(key) == canon, key


def test_every_rule_but_stall_has_a_scenario():
    covered = set(fx.scenarios("ppo")) | set(fx.scenarios("grpo"))
    assert RULES_WITHOUT_STALL <= covered


def test_cli_writes_ppo_runs_with_labels(tmp_path):
    result = CliRunner().invoke(app, ["fixtures", "--out", str(tmp_path), "--seeds", "2", "--steps", "200"])
    assert result.exit_code == 0, result.output
    kl = tmp_path / fx.KL_SPIKE_RUN
    assert (kl / fx.LOG_NAME).is_file()
    labels = {lab["rule"]: lab for lab in fx.read_labels(kl)}
    assert (labels["kl_spike"]["start_step"], labels["kl_spike"]["end_step"]) == (800, 804)
    assert labels["kl_controller_drift"]["end_step"] == 999
    assert "advantage_bias" in labels
    for seed in (0, 1):
        for scenario in fx.scenarios("ppo"):
            folder = tmp_path / "logs_ppo" / f"seed_{seed}" / scenario
            primary = [lab for lab in fx.read_labels(folder) if not lab.get("secondary")]
            if scenario == "clean":
                assert primary == []
            else:
                assert [lab["rule"] for lab in primary] == [scenario]
                assert 0 <= primary[0]["start_step"] <= primary[0]["end_step"] <= 199
            assert sum(1 for _ in (folder / fx.LOG_NAME).open()) == 200


def test_generation_is_deterministic_and_seeds_differ(tmp_path):
    a = fx.write_run(fx.scenario_run("ppo", "reward_hacking", 3, 300), tmp_path / "a")
    b = fx.write_run(fx.scenario_run("ppo", "reward_hacking", 3, 300), tmp_path / "b")
    c = fx.write_run(fx.scenario_run("ppo", "reward_hacking", 4, 300), tmp_path / "c")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert (a.parent / fx.LABELS_NAME).read_text() == (b.parent / fx.LABELS_NAME).read_text()


def test_kl_spike_run_reads_back_with_the_documented_faults(tmp_path):
    run = read_run(fx.write_run(fx.kl_spike_run(), tmp_path / "k"))
    assert run.n_steps == 1000
    kl, coef, adv = run.get("kl"), run.get("kl_coef"), run.get("advantage_mean")
    before = np.median(kl[700:800])
    assert kl[800:805].max() > 5 * before  # the surge
    assert np.all(coef[800:] == coef[800])  # controller stopped adapting ...
    assert np.median(kl[810:]) > 1.5 * before  # ... while KL stays above target
    assert np.std(coef[:800]) > 0  # it did adapt before
    assert abs(adv[600:].mean() - fx.ADVANTAGE_BIAS) < 0.02
    assert abs(adv[:600].mean()) < 0.02


def test_clean_run_has_realistic_noise_and_warmup():
    run = fx.scenario_run("ppo", "clean", 0, 1000)
    vg, grad = run.series["value_grad_norm"], run.series["grad_norm"]
    assert vg[0] > 20 * np.median(vg)  # critic warm-up transient, as in verl logs
    assert np.all(np.isfinite(grad)) and np.std(np.diff(np.log(grad))) > 0.1
    assert run.labels == []


def test_non_finite_fault_writes_nan_and_inf(tmp_path):
    gen = fx.scenario_run("ppo", "non_finite", 0, 300)
    run = read_run(fx.write_run(gen, tmp_path / "nf"))
    label = gen.labels[0]
    bad = set(int(s) for s in run.nonfinite.get("grad_norm", []))
    assert set(range(label.start_step, label.end_step + 1)) <= bad


def test_grpo_runs_read_as_grpo(tmp_path):
    from rldk_engine.forensics.detectors import infer_algorithm

    result = CliRunner().invoke(app, ["fixtures", "--grpo", "--out", str(tmp_path), "--seeds", "2", "--steps", "120"])
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        run = read_run(tmp_path / f"seed_{seed}" / "clean" / fx.LOG_NAME)
        assert infer_algorithm(run) == "grpo"
        assert np.all(run.get("clip_frac") == 0)  # structurally zero
        assert "frac_reward_zero_std" in run.columns
    assert "kl" not in read_run(tmp_path / "seed_1" / "clean" / fx.LOG_NAME).columns  # beta = 0
    zs = fx.read_labels(tmp_path / "seed_0" / "zero_std_groups")
    assert zs[0]["rule"] == "zero_std_groups"


def test_canonical_keys_option(tmp_path):
    result = CliRunner().invoke(app, ["fixtures", "--out", str(tmp_path), "--seeds", "1", "--steps", "60",
                                      "--keys", "canonical"])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "logs_ppo" / "seed_0" / "clean" / fx.LOG_NAME).open().readline())
    assert "kl" in row and "objective/kl" not in row


def test_unknown_scenario_is_a_clear_error():
    with pytest.raises(ValueError, match="zero_std_groups"):
        fx.scenario_run("ppo", "zero_std_groups", 0, 100)
