"""The self-made labelled set (tests/data/real_made): every run has its log, provenance and a
label that matches the numbers in the log it labels. No training; runs in about a second."""

from __future__ import annotations

import json

import pytest
from realrun import REPO

from rldk_engine.ingest.readers import load_runs

MADE = REPO / "tests" / "data" / "real_made"
RUNS = sorted(p for p in MADE.iterdir() if p.is_dir())
SPEC_RULES = {"kl_spike", "kl_controller_drift", "approx_kl_high", "advantage_bias",
              "entropy_collapse", "grad_norm_spike", "grad_imbalance", "non_finite",
              "reward_hacking", "reward_collapse", "clip_frac_high", "length_explosion",
              "length_collapse", "zero_std_groups", "value_divergence", "stall"}


def test_the_set_has_failing_and_healthy_runs_of_both_libraries():
    labels = [json.loads((run / "label.json").read_text()) for run in RUNS]
    assert {lab["trainer"] for lab in labels} >= {"sb3", "trl"}
    assert sum(lab["healthy"] for lab in labels) >= 3
    assert sum(not lab["healthy"] for lab in labels) >= 3


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_label_matches_the_log(run):
    label = json.loads((run / "label.json").read_text())
    provenance = (run / "PROVENANCE.md").read_text()
    assert "Command:" in provenance and "Library versions:" in provenance and "seed" in provenance
    assert label["healthy"] == (not label["failures"])
    assert label["notes"].strip()
    runs, errors = load_runs([run])
    assert len(runs) == 1 and not errors, (errors, [r.run_id for r in runs])
    steps = runs[0].steps
    for failure in label["failures"]:
        assert failure["rule"] in SPEC_RULES
        assert failure["min_severity"] in ("info", "warning", "critical")
        assert steps.min() <= failure["start_step"] <= failure["end_step"] <= steps.max()
        assert failure["start_step"] in set(steps.tolist()), failure


def test_infinite_grad_norms_in_trainer_state_are_read_as_data():
    """TRL writes float32 overflow as `Infinity` in trainer_state.json; it must stay data."""
    (run,), _ = load_runs([MADE / "trl_grpo_spiky_reward_inf_grad"])
    assert run.nonfinite.get("grad_norm") is not None
    assert sorted(int(s) for s in run.nonfinite["grad_norm"]) == list(range(5, 41, 5))
    assert run.n_steps == 40  # the closing train_runtime summary is not a step


@pytest.mark.parametrize("run", [r for r in RUNS if r.name.startswith("trl_")], ids=lambda r: r.name)
def test_trl_trainer_state_has_the_grpo_metrics(run):
    (loaded,), _ = load_runs([run])
    expected = {"kl", "reward_mean", "reward_std", "entropy", "grad_norm", "lr", "response_len_mean",
                "response_clip_ratio", "frac_reward_zero_std", "clip_frac"}
    assert expected <= set(loaded.metrics), sorted(loaded.metrics)
    assert loaded.steps[0] == 1  # Hugging Face's global_step
