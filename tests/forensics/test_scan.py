"""scan_paths / `rldk-engine scan`: report shape, errors for bad files, exit codes, plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL_LOGS as REAL
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.forensics.scan import scan_paths, scan_run

runner = CliRunner()


def write_jsonl(path: Path, n: int = 300, spike: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    kl = 0.05 * (1 + 0.1 * rng.standard_normal(n))
    if spike:
        kl[200:206] = 0.9
    reward = 0.5 + 0.03 * rng.standard_normal(n)
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"step": i, "train/kl": kl[i], "env/reward_mean": reward[i]}) + "\n")
    return path


@pytest.fixture()
def mixed_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    write_jsonl(d / "good.jsonl")
    write_jsonl(d / "spiky.jsonl", spike=True, seed=1)
    (d / "garbage.jsonl").write_text("this is not a log\nnor is this\n")
    (d / "empty.csv").write_text("")
    return d


def test_scan_report_has_spec_shape(mixed_dir: Path):
    report = scan_paths([mixed_dir])
    assert report["tool"] == "rldk" and report["version"] and "T" in report["created"]
    runs = {r["run_id"]: r for r in report["runs"]}
    assert set(runs) == {"good.jsonl", "spiky.jsonl"}
    entry = runs["spiky.jsonl"]
    for key in ("run_id", "source", "format", "n_steps", "metrics", "anomalies", "health", "errors"):
        assert key in entry
    assert entry["n_steps"] == 300 and "kl" in entry["metrics"]
    spikes = [a for a in entry["anomalies"] if a["rule"] == "kl_spike"]
    assert spikes and (spikes[0]["start_step"], spikes[0]["end_step"]) == (200, 205)
    assert spikes[0]["severity"] == "critical" and spikes[0]["evidence"]["peak"] == pytest.approx(0.9)
    assert runs["good.jsonl"]["anomalies"] == [] and runs["good.jsonl"]["health"]["overall"] == 1.0
    assert 0 <= entry["health"]["overall"] < runs["good.jsonl"]["health"]["overall"]
    bad = "\n".join(report["errors"])
    assert "garbage.jsonl" in bad and "empty.csv" in bad


def test_jobs_two_gives_the_same_runs_as_jobs_one(mixed_dir: Path):
    one, two = scan_paths([mixed_dir], jobs=1), scan_paths([mixed_dir], jobs=2)
    assert one["runs"] == two["runs"] and sorted(one["errors"]) == sorted(two["errors"])


def test_scan_run_on_a_single_file(tmp_path: Path):
    entry = scan_run(write_jsonl(tmp_path / "a.jsonl", spike=True))
    assert entry["format"] == "jsonl" and entry["anomalies"]


def test_cli_exit_codes_and_report(mixed_dir: Path, tmp_path: Path):
    out = tmp_path / "r" / "report.json"
    res = runner.invoke(app, ["scan", str(mixed_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["runs"]
    assert runner.invoke(app, ["scan", str(mixed_dir), "--fail-on", "critical"]).exit_code == 1
    assert runner.invoke(app, ["scan", str(mixed_dir / "good.jsonl"), "--fail-on", "warning"]).exit_code == 0
    assert runner.invoke(app, ["scan", str(mixed_dir), "--jobs", "2", "--fail-on", "warning"]).exit_code == 1


@pytest.mark.parametrize("args", [["--preset", "sac"], ["--fail-on", "panic"], ["--jobs", "0"],
                                  ["--format", "xml"]])
def test_cli_bad_usage_exits_2(mixed_dir: Path, args):
    res = runner.invoke(app, ["scan", str(mixed_dir), *args])
    assert res.exit_code == 2


def test_cli_nothing_readable_exits_2_naming_the_file(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json at all\n")
    res = runner.invoke(app, ["scan", str(bad)])
    assert res.exit_code == 2
    assert "bad.jsonl" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["scan", str(tmp_path / "missing.log")])
    assert res.exit_code == 2 and "missing.log" in res.output


def test_cli_plot_writes_one_png_per_anomaly(tmp_path: Path):
    log = write_jsonl(tmp_path / "s.jsonl", spike=True)
    plots = tmp_path / "plots"
    res = runner.invoke(app, ["scan", str(log), "--plot", str(plots), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    n_anomalies = len(json.loads((tmp_path / "r.json").read_text())["runs"][0]["anomalies"])
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert "forensics_kl_spike.png" in pngs and len(pngs) == n_anomalies
    assert (plots / "forensics_kl_spike.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_real_logs_only_trl_grpo_is_flagged(tmp_path: Path):
    if not REAL.is_dir():
        pytest.skip(f"real fixtures not found at {REAL}")
    out = tmp_path / "real.json"
    res = runner.invoke(app, ["scan", str(REAL), "--out", str(out), "--fail-on", "warning"])
    assert res.exit_code == 1
    report = json.loads(out.read_text())
    flagged = {r["run_id"] for r in report["runs"]
               if any(a["severity"] != "info" for a in r["anomalies"])}
    assert flagged == {"trl_grpo_chaos_training_logs.json"}


def test_doctored_kl_spike_fixture_is_diagnosed_and_plotted(tmp_path: Path):
    from rldk_engine.devtools import fixtures

    run_dir = tmp_path / fixtures.KL_SPIKE_RUN
    fixtures.write_run(fixtures.kl_spike_run(0), run_dir)
    plots = tmp_path / "plots"
    res = runner.invoke(app, ["scan", str(run_dir), "--out", str(tmp_path / "r.json"),
                              "--plot", str(plots), "--fail-on", "critical"])
    assert res.exit_code == 1, res.output
    entry = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    serious = {a["rule"]: a for a in entry["anomalies"] if a["severity"] != "info"}
    assert set(serious) == {"kl_spike", "kl_controller_drift", "advantage_bias"}
    assert (serious["kl_spike"]["start_step"], serious["kl_spike"]["end_step"]) == (800, 804)
    assert serious["kl_controller_drift"]["end_step"] == 999
    assert serious["advantage_bias"]["evidence"]["mean"] == pytest.approx(0.237, abs=0.02)
    assert (plots / "forensics_kl_spike.png").is_file()
    assert entry["health"]["overall"] < 0.6


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_run_without_canonical_metrics_is_no_metrics_never_healthy(tmp_path: Path):
    log = _jsonl(tmp_path / "odd" / "log.jsonl", [{"step": i, "foo": i, "bar": 1} for i in range(30)])
    report = scan_paths([log])
    run = report["runs"][0]
    assert run["health"] == {"overall": None, "stability": None}
    assert any("no metrics" in e for e in report["errors"])
    result = CliRunner().invoke(app, ["scan", str(log)])
    assert result.exit_code == 2 and "no metrics" in result.output
    good = write_jsonl(tmp_path / "good.jsonl", spike=False)
    mixed = CliRunner().invoke(app, ["scan", str(log), str(good)])
    assert mixed.exit_code == 0 and "no metrics" in mixed.output and "n/a" in mixed.output


def test_scan_of_a_monitor_run_dir_includes_the_guardrails_stop(tmp_path: Path):
    """A run the live guardrail stopped never scans as healthy, however short it is."""
    rundir = tmp_path / "rd"
    _jsonl(rundir / "run.jsonl", [{"step": i, "kl": 0.04 + 0.001 * (i % 3)} for i in range(12)])
    _jsonl(rundir / "alerts.jsonl", [{
        "time": 0.0, "step": 11, "rule": "kl_spike", "metric": "kl", "value": 0.5,
        "threshold": 0.35, "severity": "critical", "action": "stop",
        "message": "KL above 0.35 for 5 consecutive steps", "event": "fire"}])
    report = scan_paths([rundir])
    (run,) = report["runs"]
    guard = [a for a in run["anomalies"] if a["evidence"].get("source") == "guardrail"]
    assert guard and guard[0]["severity"] == "critical" and guard[0]["rule"] == "kl_spike"
    assert run["health"]["overall"] < 0.9
    result = CliRunner().invoke(app, ["scan", str(rundir), "--fail-on", "warning"])
    assert result.exit_code == 1
    (rundir / "alerts.jsonl").unlink()
    assert scan_paths([rundir])["runs"][0]["health"]["overall"] == 1.0
