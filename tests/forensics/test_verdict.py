"""One verdict: the scan and the live preset agree on the same data, the verdict for a
step range does not flip as the run grows, and detector quality on labelled real logs.

Corpora (each run folder: log file(s), PROVENANCE.md, label.json):
- tests/data/real/        public logs written by real trainers (branch corpus)
- tests/data/real_made/   runs made here with the real libraries (branch reallibs)
- tests/data/forensics_cases/  reproductions of issue 15's cases (make_cases.py)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.constants import SEVERITY_RANK
from rldk_engine.devtools import real_eval
from rldk_engine.devtools.quality import streaming_detections
from rldk_engine.forensics.detectors import detect, infer_algorithm, warmup_points
from rldk_engine.ingest.readers import read_run
from rldk_engine.ingest.run import Run

DATA = REPO / "tests" / "data"
CORPORA = [DATA / name for name in ("real", "real_made", "forensics_cases")]
WARNING = SEVERITY_RANK["warning"]


def _corpus_runs() -> list[Path]:
    return [p.parent for root in CORPORA if root.is_dir() for p in sorted(root.glob("*/label.json"))]


def _read(folder: Path) -> Run:
    runs = [read_run(s) for s in real_eval.log_sources(folder)]
    return max(runs, key=lambda r: r.n_steps)


def _serious(found) -> list:
    return [a for a in found if SEVERITY_RANK[a.severity] >= WARNING]


def _overlap(a0: int, a1: int, b0: int, b1: int, slack: int = 0) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


CORPUS = _corpus_runs()
IDS = [f"{p.parent.name}/{p.name}" for p in CORPUS]


@pytest.mark.parametrize("folder", CORPUS, ids=IDS)
def test_scan_and_live_preset_agree(folder: Path):
    """Every live warning+ episode is a scan finding of the same rule over the same steps
    (the scan sees at least what the guardrail sees), a live stop is a critical scan
    finding, and on a healthy run neither raises anything at warning or above."""
    label = json.loads((folder / "label.json").read_text())
    run = _read(folder)
    offline = _serious(detect(run))
    live = [d for d in streaming_detections(run, infer_algorithm(run)) if d.is_finding]
    slack = int(max(10, 2 * np.median(np.diff(run.steps)))) if run.steps.size > 1 else 10
    for d in live:
        same = [a for a in offline if a.rule == d.rule
                and _overlap(a.start_step, a.end_step, d.start_step, d.end_step, slack)]
        assert same, f"live {d.rule} [{d.start_step}-{d.end_step}] has no scan finding"
        if d.severity == "critical":
            assert any(a.severity == "critical" for a in same), f"live critical {d.rule} is milder offline"
    if label["healthy"]:
        assert not offline, [f"{a.rule} {a.severity} [{a.start_step}-{a.end_step}]" for a in offline]
        assert not live


def _prefix(run: Run, k: int) -> Run:
    last = run.steps[k - 1]
    return Run(run_id=run.run_id, source=run.source, format=run.format, steps=run.steps[:k],
               columns={name: col[:k] for name, col in run.columns.items()},
               nonfinite={m: s[s <= last] for m, s in run.nonfinite.items()})


@pytest.mark.parametrize("folder", CORPUS, ids=IDS)
def test_verdict_on_a_step_range_does_not_flip_as_the_run_grows(folder: Path):
    """A warning+ finding in the first 2/3 of a run (a checkpoint) is still a warning+
    finding of the same rule over those steps when the whole run is scanned. Findings
    that start inside the warm-up are left out: the warm-up's length (3..25 logged
    points) grows with the run until 500 points, so their evidence is counted anew."""
    run = _read(folder)
    if run.n_steps < 30:
        pytest.skip("too short for a meaningful prefix")
    full = _serious(detect(run))
    k = (2 * run.n_steps) // 3
    warm_end = int(run.steps[min(warmup_points(run.n_steps), run.n_steps - 1)])
    for a in _serious(detect(_prefix(run, k))):
        if a.start_step <= warm_end:
            continue
        assert any(b.rule == a.rule and _overlap(a.start_step, a.end_step, b.start_step, b.end_step)
                   for b in full), f"{a.rule} [{a.start_step}-{a.end_step}] vanished in the full run"


def test_length_hack_found_at_checkpoint_40_stays_found_at_60():
    """Issue 15: a critical length_explosion at checkpoint-40 disappeared at -50 and -60
    because the reward (which is the length) rose inside the window."""
    run = _read(DATA / "forensics_cases" / "trl_grpo_length_is_the_reward")
    for checkpoint in (40, 50, 60):
        k = int(np.searchsorted(run.steps, checkpoint, side="right"))
        found = [a for a in _serious(detect(_prefix(run, k))) if a.rule == "length_explosion"]
        assert found and found[0].severity == "critical", checkpoint


def _eval(root: Path) -> dict:
    if not root.is_dir() or not any(root.glob("*/label.json")):
        pytest.skip(f"no labelled runs under {root}")
    return real_eval.evaluate_real(root)


@pytest.mark.parametrize("root", CORPORA, ids=[p.name for p in CORPORA])
def test_real_corpus_targets(root: Path):
    """Issue 15 figures: no warning or critical on any healthy run, recall >= 0.9 at
    warning or above on the failing runs (offline); the live presets raise nothing on a
    healthy run either."""
    result = _eval(root)
    assert not result["errors"]
    o = result["offline"]["overall"]
    assert o["healthy_run_findings"] == 0, result["offline"]["per_rule"]
    assert o["recall"] is None or o["recall"] >= 0.9, result["offline"]["per_rule"]
    assert result["streaming"]["overall"]["healthy_run_findings"] == 0
    assert result["offline_meets_targets"]


def test_eval_detectors_real_cli(tmp_path: Path):
    root = DATA / "forensics_cases"
    res = CliRunner().invoke(app, ["eval-detectors", "--real", str(root), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "recall" in res.output and "met" in res.output
    data = json.loads((tmp_path / "detector_quality_real.json").read_text())
    assert data["runs"] == len(list(root.glob("*/label.json")))
    md = (tmp_path / "detector_quality_real.md").read_text()
    assert "| rule | failures | recall |" in md


def test_eval_scoring_counts_min_severity_overlap_and_healthy_alarms(tmp_path: Path):
    from rldk_engine.devtools.quality import Detection

    failing = real_eval.RealRun("f", tmp_path, {"healthy": False, "failures": [
        {"rule": "kl_spike", "start_step": 100, "end_step": 110, "min_severity": "critical"},
        {"rule": "reward_collapse", "start_step": 200, "end_step": 300}]})
    failing.steps = np.arange(0, 400)
    failing.detections["offline"] = [
        Detection("kl_spike", 105, 108, "warning"),        # milder than min_severity: no match
        Detection("reward_collapse", 215, 300, "warning"),  # match, delay 15
        Detection("grad_norm_spike", 10, 12, "info"),        # info never counts
    ]
    healthy = real_eval.RealRun("h", tmp_path, {"healthy": True, "failures": []})
    healthy.steps = np.arange(0, 100)
    healthy.detections["offline"] = [Detection("entropy_collapse", 20, 40, "warning")]
    res = real_eval.score([failing, healthy], "offline")
    assert res["per_rule"]["kl_spike"]["recall"] == 0.0
    assert res["per_rule"]["reward_collapse"]["recall"] == 1.0
    assert res["per_rule"]["reward_collapse"]["median_delay_steps"] == 15
    assert res["overall"]["healthy_run_findings"] == 1
    assert res["overall"]["precision"] == pytest.approx(1 / 3, abs=1e-3)


def test_bad_label_is_reported_not_raised(tmp_path: Path):
    bad = tmp_path / "run_a"
    bad.mkdir()
    (bad / "label.json").write_text('{"healthy": false, "failures": []}')
    (bad / "log.jsonl").write_text('{"step": 1, "kl": 0.1}\n')
    result = real_eval.evaluate_real(tmp_path)
    assert result["errors"] and "label.json" in result["errors"][0]
