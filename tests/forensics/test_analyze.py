"""Comprehensive analysis: calibration on clean, doctored and real runs, monotonicity,
component isolation, the CSVs and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import HEALTHY_REAL
from helpers import REAL_LOGS as REAL
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rldk_engine.devtools.fixtures import kl_spike_run, scenario_run, write_run
from rldk_engine.forensics.analyze import (
    COMPONENTS,
    analyze_run,
    component_bars,
    median3,
    rolling_stats,
    write_analysis,
)
from rldk_engine.forensics.scan import run_entry
from rldk_engine.ingest.readers import read_run
from rldk_engine.ingest.run import Run

N = 600  # small runs keep the suite fast; the detectors' windows still fit


def to_run(series: dict[str, np.ndarray], run_id: str = "gen") -> Run:
    steps = np.arange(len(next(iter(series.values()))), dtype=np.int64)
    columns = {k: np.asarray(v, dtype=float) for k, v in series.items()}
    nonfinite = {k: steps[~np.isfinite(v)] for k, v in columns.items() if not np.isfinite(v).all()}
    return Run(run_id=run_id, source="<memory>", format="records", steps=steps,
               columns=columns, nonfinite=nonfinite)


def clean_series(seed: int = 0, n: int = N) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in scenario_run("ppo", "clean", seed, n).series.items()}


def healths(analysis: dict) -> dict[str, float]:
    return {k: v["health"] for k, v in analysis["components"].items() if v["available"]}


@pytest.fixture(scope="module")
def clean_analysis() -> dict:
    return analyze_run(to_run(clean_series(0)))


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real logs not found at {REAL} (../shared/fixtures/real is absent)")
    return REAL


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_baselines_score_high(seed):
    a = analyze_run(to_run(clean_series(seed)))
    assert a["component_score"] >= 0.9
    assert a["overall"] >= 0.9
    assert all(h >= 0.9 for h in healths(a).values()), healths(a)
    assert set(healths(a)) == set(COMPONENTS)  # TRL PPO logs every component


@pytest.mark.parametrize("name", HEALTHY_REAL)
def test_healthy_real_logs_score_high(real_dir, name):
    run = read_run(real_dir / name)
    a = analyze_run(run)
    assert a["component_score"] >= 0.9, healths(a)
    assert a["overall"] >= 0.9
    assert all(h >= 0.9 for h in healths(a).values()), healths(a)


def test_degenerate_real_grpo_log_flags_truncation(real_dir):
    a = analyze_run(read_run(real_dir / "trl_grpo_chaos_training_logs.json"))
    assert a["components"]["length"]["health"] < 0.5
    assert a["components"]["length"]["evidence"]["truncation_final"] >= 0.9
    assert a["components"]["advantages"] == {"available": False}


def test_doctored_kl_spike_scores_clearly_lower():
    a = analyze_run(to_run(kl_spike_run(0).series))
    assert a["component_score"] <= 0.75
    assert a["overall"] <= 0.75
    comps = a["components"]
    assert comps["kl"]["health"] < 0.5 and comps["advantages"]["health"] < 0.5
    assert comps["reward"]["health"] >= 0.9 and comps["length"]["health"] >= 0.9
    kl = comps["kl"]["evidence"]
    assert kl["mode"] == "controller" and kl["inside_fraction"] < 0.9
    assert kl["responsiveness"] < 0.5  # the frozen controller no longer answers
    assert abs(comps["advantages"]["evidence"]["peak_block_bias"] - 0.237) < 0.06
    assert {x["rule"] for x in comps["kl"]["anomalies"]} >= {"kl_spike", "kl_controller_drift"}


def test_overall_and_stability_are_the_scan_health(clean_analysis):
    run = to_run(kl_spike_run(0).series)
    a = analyze_run(run)
    assert {"overall": a["overall"], "stability": a["stability"]} == run_entry(run)["health"]


def test_given_kl_target_is_used():
    series = clean_series(1)
    a = analyze_run(to_run(series), kl_target=0.5)  # far above this run's KL of ~0.1
    kl = a["components"]["kl"]
    assert kl["evidence"]["mode"] == "given" and kl["evidence"]["target"] == 0.5
    assert kl["evidence"]["inside_fraction"] < 0.2 and kl["health"] < 0.5
    with pytest.raises(ValueError, match="kl-target"):
        analyze_run(to_run(series), kl_target=-1.0)


# ---------------------------------------------------------------- monotonicity


def _with_fault(kind: str, size: float) -> dict:
    s = clean_series(2)
    start = int(N * 0.6)
    if kind == "advantage_bias":
        s["advantage_mean"][start:] += size
    elif kind == "grad_spike":
        s["grad_norm"][start : start + 6] *= size
    elif kind == "kl_surge":
        s["kl"][start : start + 40] *= size
    elif kind == "reward_drop":
        span = float(np.ptp(s["reward_mean"]))
        s["reward_mean"][start:] -= size * span
    elif kind == "length_growth":
        s["response_len_mean"][start:] *= size
    return analyze_run(to_run(s))


FAULT_SIZES = {
    "advantage_bias": (0.0, 0.6),
    "grad_spike": (1.0, 60.0),
    "kl_surge": (1.0, 8.0),
    "reward_drop": (0.0, 1.5),
    "length_growth": (1.0, 8.0),
}
FAULT_COMPONENT = {"advantage_bias": "advantages", "grad_spike": "gradients", "kl_surge": "kl",
                   "reward_drop": "reward", "length_growth": "length"}


@settings(max_examples=6, deadline=None)
@given(kind=st.sampled_from(sorted(FAULT_SIZES)), a=st.floats(0, 1), b=st.floats(0, 1))
def test_score_falls_monotonically_as_the_fault_grows(kind, a, b):
    lo, hi = FAULT_SIZES[kind]
    small, big = (lo + (hi - lo) * x for x in sorted((a, b)))
    sa, sb = _with_fault(kind, small), _with_fault(kind, big)
    comp = FAULT_COMPONENT[kind]
    assert sb["components"][comp]["health"] <= sa["components"][comp]["health"] + 1e-9
    assert sb["component_score"] <= sa["component_score"] + 1e-9


@pytest.mark.parametrize("kind", sorted(FAULT_SIZES))
def test_largest_fault_hits_its_component(kind):
    lo, hi = FAULT_SIZES[kind]
    assert _with_fault(kind, hi)["components"][FAULT_COMPONENT[kind]]["health"] < 0.6


# ---------------------------------------------------------------- isolation

SCENARIO_COMPONENT = {
    "kl_spike": "kl",
    "kl_controller_drift": "kl",
    "grad_norm_spike": "gradients",
    "grad_imbalance": "gradients",
    "advantage_bias": "advantages",
    "reward_collapse": "reward",
    "length_explosion": "length",
    "length_collapse": "length",
}


@pytest.mark.parametrize("scenario", sorted(SCENARIO_COMPONENT))
def test_each_component_moves_with_its_own_faults_only(scenario, clean_analysis):
    a = analyze_run(to_run(scenario_run("ppo", scenario, 0, N).series, scenario))
    own = SCENARIO_COMPONENT[scenario]
    h = healths(a)
    assert h[own] <= healths(clean_analysis)[own] - 0.2, (scenario, h)
    others = {k: v for k, v in h.items() if k != own}
    assert all(v >= 0.9 for v in others.values()), (scenario, others)


def test_missing_components_are_unavailable_and_do_not_count():
    s = clean_series(0)
    a = analyze_run(to_run({"reward_mean": s["reward_mean"]}))
    assert [k for k, v in a["components"].items() if not v["available"]] == ["kl", "gradients", "advantages", "length"]
    assert all(a["components"][k] == {"available": False} for k in ("kl", "gradients", "advantages", "length"))
    assert a["component_score"] == a["components"]["reward"]["health"]
    assert component_bars(a) == [("reward", a["components"]["reward"]["health"])]


def test_component_bars_in_fixed_order(clean_analysis):
    bars = component_bars(clean_analysis)
    assert [name for name, _ in bars] == list(COMPONENTS)
    assert all(0.0 <= h <= 1.0 for _, h in bars)


def test_every_section_carries_health_evidence_and_anomalies(clean_analysis):
    for name in COMPONENTS:
        sec = clean_analysis["components"][name]
        assert 0.0 <= sec["health"] <= 1.0
        assert sec["evidence"] and isinstance(sec["anomalies"], list)
        assert math.isclose(sec["health"], sec["feature_health"] * sec["anomaly_health"], abs_tol=1e-3)
    json.dumps(clean_analysis)  # JSON-ready: no numpy scalars, no NaN


# ---------------------------------------------------------------- helpers and tables


def test_rolling_stats_match_pandas():
    x = np.array([1.0, 2.0, np.nan, 4.0, 8.0, np.inf, 3.0, 5.0])
    mean, std = rolling_stats(x, 3)
    ref = pd.Series(np.where(np.isfinite(x), x, np.nan)).rolling(3, min_periods=1)
    np.testing.assert_allclose(mean, ref.mean().to_numpy())
    np.testing.assert_allclose(std, ref.std(ddof=0).to_numpy(), atol=1e-12)


def test_median3_removes_one_step_blips_only():
    x = np.array([1.0, 1.0, 9.0, 1.0, 1.0, 9.0, 9.0, 1.0])
    np.testing.assert_array_equal(median3(x), [1, 1, 1, 1, 1, 9, 9, 1])


def test_write_analysis_writes_documented_tables(tmp_path):
    run = to_run(kl_spike_run(0).series)
    a = write_analysis(run, tmp_path / "json", csv_dir=tmp_path / "csv")
    assert json.loads((tmp_path / "json" / "comprehensive_analysis.json").read_text())["overall"] == a["overall"]
    metrics = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert len(metrics) == run.n_steps and {"step", "kl", "kl_roll_mean", "kl_roll_std"} <= set(metrics.columns)
    timeline = pd.read_csv(tmp_path / "csv" / "health_timeline.csv")
    assert list(timeline.columns[:4]) == ["window", "start_step", "end_step", "n_steps"]
    assert timeline["n_steps"].sum() == run.n_steps
    surge = timeline[(timeline.start_step <= 802) & (timeline.end_step >= 802)]
    assert float(surge["kl"].iloc[0]) < float(timeline["kl"].iloc[20])  # the surge shows in time
    summary = pd.read_csv(tmp_path / "csv" / "summary.csv")
    assert list(summary["component"]) == list(COMPONENTS)
    assert summary.set_index("component").loc["kl", "worst_severity"] == "critical"


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def doctored_dir(tmp_path_factory) -> Path:
    return write_run(kl_spike_run(0), tmp_path_factory.mktemp("fx") / "logs_doctored_kl_spike").parent


def test_cli_analyze_writes_outputs(doctored_dir, tmp_path):
    from rldk_engine.cli import app

    result = CliRunner().invoke(app, ["analyze", str(doctored_dir), "--out", str(tmp_path), "--kl-target", "0.1"])
    assert result.exit_code == 0, result.output
    for name in ("comprehensive_analysis.json", "metrics.csv", "health_timeline.csv", "summary.csv"):
        assert (tmp_path / name).is_file()
    data = json.loads((tmp_path / "comprehensive_analysis.json").read_text())
    assert data["components"]["kl"]["evidence"]["target"] == 0.1
    assert "advantages" in result.output


def test_compat_forensics_comprehensive(doctored_dir, tmp_path):
    from rldk_engine.cli.compat import app

    result = CliRunner().invoke(app, ["forensics", "comprehensive", str(doctored_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "comprehensive_analysis.json").is_file()


@pytest.mark.parametrize("args, reason", [
    (["/nonexistent/run.jsonl"], "no such file"),
    (["{doctored}", "--preset", "a2c"], "unknown preset"),
    (["{doctored}", "--kl-target", "-0.1"], "positive"),
])
def test_cli_bad_input_is_one_line_exit_2(doctored_dir, tmp_path, args, reason):
    from rldk_engine.cli import app

    args = [a.replace("{doctored}", str(doctored_dir)) for a in args]
    result = CliRunner().invoke(app, ["analyze", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert reason in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- zero response lengths


def _length_run(lengths):
    rows = [{"step": i, "kl": 0.05, "reward_mean": 1.0 + 0.001 * i, "response_len_mean": v}
            for i, v in enumerate(lengths)]
    return Run.from_records(rows)


def test_analyze_survives_a_response_length_that_starts_at_zero():
    # zero early length (nothing generated yet / placeholder) used to overflow math.exp
    result = analyze_run(_length_run([0.0] * 40 + [100.0] * 160))
    length = result["components"]["length"]
    assert length["available"]
    assert length["evidence"]["max_drift_ratio"] is None  # no finite ratio from 0
    assert 0.0 <= length["health"] <= 1.0
    json.dumps(result, allow_nan=False)


def test_analyze_survives_an_all_zero_response_length():
    result = analyze_run(_length_run([0.0] * 200))
    assert 0.0 <= result["components"]["length"]["health"] <= 1.0
