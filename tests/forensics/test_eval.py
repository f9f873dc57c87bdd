"""Detector matrix and detector-quality evaluation."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.devtools import fixtures as fx
from rldk_engine.devtools import quality as q


def _judged(scenario, labels, detections):
    jr = q.JudgedRun("ppo", scenario, 0, "x", labels)
    jr.detections["offline"] = [q.Detection(*d) for d in detections]
    return jr


LABEL = {"rule": "kl_spike", "start_step": 100, "end_step": 104}


def test_matching_uses_rule_overlap_and_tolerance():
    judged = [
        _judged("kl_spike", [LABEL], [("kl_spike", 112, 120, "warning"),   # within 10 steps
                                      ("kl_spike", 300, 305, "critical"),  # elsewhere: FP
                                      ("grad_norm_spike", 100, 104, "warning"),  # wrong rule: FP
                                      ("kl_spike", 500, 501, "info")]),    # info never counts
        _judged("clean", [], [("entropy_collapse", 10, 40, "warning")]),
    ]
    res = q.score_mode(judged, "offline", tolerance=10)
    kl = res["per_rule"]["kl_spike"]
    assert (kl["recalled"], kl["true_positives"], kl["false_positives"]) == (1, 1, 1)
    assert kl["median_lead_steps"] == 104 - 112
    assert res["overall"]["precision"] == pytest.approx(1 / 4)
    assert res["overall"]["recall"] == 1.0
    assert res["overall"]["clean_run_findings"] == 1
    strict = q.score_mode(judged, "offline", tolerance=5)
    assert strict["overall"]["recall"] == 0.0


def test_secondary_labels_are_neither_required_nor_false_positives():
    labels = [{"rule": "value_divergence", "start_step": 50, "end_step": 99},
              {"rule": "grad_imbalance", "start_step": 50, "end_step": 99, "secondary": True}]
    res = q.score_mode([_judged("value_divergence", labels, [
        ("value_divergence", 60, 99, "critical"), ("grad_imbalance", 70, 99, "warning")])], "offline")
    assert res["overall"]["labels"] == 1
    assert res["overall"]["false_positives"] == 0
    assert res["overall"]["precision"] == 1.0


def test_streaming_recall_only_counts_rules_the_preset_has():
    labels = [{"rule": "reward_hacking", "start_step": 10, "end_step": 99}]
    jr = q.JudgedRun("ppo", "reward_hacking", 0, "x", labels, {"streaming": []})
    res = q.score_mode([jr], "streaming", covered={"ppo": {"kl_spike"}})
    assert res["overall"]["labels"] == 0
    assert res["overall"]["labels_not_covered_by_preset"] == 1


def test_streaming_detections_pair_fire_and_clear(tmp_path):
    from rldk_engine.ingest.readers import read_run

    run = read_run(fx.write_run(fx.kl_spike_run(), tmp_path / "k"))
    found = [d for d in q.streaming_detections(run, "ppo") if d.rule == "kl_spike"]
    assert found and found[0].start_step in range(800, 806)
    assert found[0].severity == "critical"


def test_matrix_command_writes_csv_and_markdown(tmp_path):
    result = CliRunner().invoke(app, ["matrix", "--out", str(tmp_path), "--steps", "200"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "detector_matrix.csv").open()))
    assert {r["mode"] for r in rows} == {"offline", "streaming"}
    assert {r["algo"] for r in rows} == {"ppo", "grpo"}
    kl = [r for r in rows if r["mode"] == "streaming" and r["scenario"] == fx.KL_SPIKE_RUN
          and r["rule"] == "kl_spike"]
    assert kl[0]["warning_plus"] == "1" and kl[0]["expected"] == "True"
    md = (tmp_path / "detector_matrix.md").read_text()
    assert "## offline, GRPO" in md and "| zero_std_groups |" in md


def test_eval_command_writes_reports(tmp_path):
    result = CliRunner().invoke(app, ["eval-detectors", "--seeds", "1", "--steps", "200", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "detector_quality.json").read_text())
    assert data["runs"] == 1 + len(fx.scenarios("ppo")) + len(fx.scenarios("grpo"))
    for mode in ("offline", "streaming"):
        assert 0 <= data[mode]["overall"]["recall"] <= 1
    assert "| rule | labels | recall |" in (tmp_path / "detector_quality.md").read_text()


def test_offline_detectors_meet_the_issue_targets():
    """Issue 5: recall >= 0.95, precision >= 0.9, nothing warning+ on clean runs (5 seeds)."""
    result = q.evaluate(seeds=5, n_steps=600)
    o = result["offline"]["overall"]
    summary = {r: (s["recall"], s["precision"]) for r, s in result["offline"]["per_rule"].items()}
    assert o["clean_run_findings"] == 0, summary
    assert o["recall"] >= 0.95, summary
    assert o["precision"] >= 0.9, summary
