"""Environment audit, `doctor` and the `rldk` compatibility commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rldk_engine.cli import app, compat
from rldk_engine.devtools import fixtures as fx
from rldk_engine.forensics.envaudit import audit_environment, audit_findings


def _env(**over):
    env = {
        "torch": {"installed": True, "deterministic_algorithms": True, "num_threads": 4},
        "cuda": {"available": True, "device_count": 1, "devices": ["H100"]},
        "cudnn": {"available": True, "deterministic": True, "benchmark": False},
        "env": {"PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_NUM_THREADS": "4"},
        "cpu_count": 8,
    }
    for key, value in over.items():
        env[key] = {**env[key], **value}
    return env


def _findings(env) -> dict[str, dict]:
    return {f["finding"].split(":")[0]: f for f in audit_findings(env)}


def test_audit_environment_reports_the_documented_facts():
    env = audit_environment()
    for key in ("python", "platform", "torch", "cuda", "cudnn", "env"):
        assert key in env
    assert set(env["env"]) >= {"PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    if env["torch"]["installed"]:
        assert isinstance(env["torch"]["deterministic_algorithms"], bool)
        assert env["torch"]["num_threads"] >= 1
    json.dumps(env)  # serialisable as is


def test_a_reproducible_gpu_setup_has_no_warnings():
    assert [f for f in audit_findings(_env()) if f["severity"] != "info"] == []


@pytest.mark.parametrize("over, expected", [
    ({"env": {"PYTHONHASHSEED": None}}, "PYTHONHASHSEED is unset"),
    ({"torch": {"deterministic_algorithms": False}}, "torch deterministic algorithms are off"),
    ({"cudnn": {"benchmark": True}}, "cuDNN benchmark mode is on"),
    ({"cudnn": {"deterministic": False}}, "cuDNN deterministic mode is off"),
    ({"env": {"CUBLAS_WORKSPACE_CONFIG": None}}, "CUBLAS_WORKSPACE_CONFIG is unset"),
])
def test_each_gpu_risk_is_a_warning_with_a_fix(over, expected):
    found = _findings(_env(**over))
    assert found[expected]["severity"] == "warning"
    assert found[expected]["fix"]


def test_on_cpu_cudnn_flags_are_only_a_note():
    env = _env(cuda={"available": False}, cudnn={"benchmark": True, "deterministic": False},
               env={"CUBLAS_WORKSPACE_CONFIG": None})
    found = _findings(env)
    assert found["cuDNN benchmark mode is on"]["severity"] == "info"
    assert "no CUDA device" in found
    assert "CUBLAS_WORKSPACE_CONFIG is unset" not in found


def test_without_torch_the_audit_says_so():
    found = _findings(_env(torch={"installed": False}))
    assert found["torch is not installed here"]["severity"] == "info"


@pytest.fixture
def kl_spike_dir(tmp_path):
    fx.write_run(fx.kl_spike_run(), tmp_path / fx.KL_SPIKE_RUN)
    return tmp_path / fx.KL_SPIKE_RUN


def _check_doctor_outputs(out_dir):
    scan = json.loads((out_dir / "ppo_scan.json").read_text())
    card = json.loads((out_dir / "determinism_card.json").read_text())
    (run,) = scan["runs"]
    rules = {a["rule"] for a in run["anomalies"] if a["severity"] != "info"}
    assert "kl_spike" in rules
    assert all(a["fix"] for a in run["anomalies"])
    assert card["findings"] and all(f["fix"] for f in card["findings"])
    assert "python" in card["env"]


def test_doctor_writes_scan_and_card(kl_spike_dir, tmp_path):
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, ["doctor", str(kl_spike_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kl_spike" in result.output
    _check_doctor_outputs(out)


def test_doctor_on_nothing_readable_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing.jsonl" in result.output
    assert not (tmp_path / "ppo_scan.json").exists()


@pytest.mark.parametrize("argv", [["doctor"], ["forensics", "doctor"]])
def test_rldk_doctor_writes_rldk_reports(argv, kl_spike_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(compat.app, [*argv, str(kl_spike_dir)])
    assert result.exit_code == 0, result.output
    _check_doctor_outputs(tmp_path / "rldk_reports")


@pytest.mark.parametrize("argv", [["log-scan"], ["forensics", "log-scan"]])
def test_rldk_log_scan_is_the_engine_scan(argv, kl_spike_dir, tmp_path):
    report = tmp_path / "r.json"
    result = CliRunner().invoke(compat.app, [*argv, str(kl_spike_dir), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["runs"][0]["n_steps"] == 1000


def test_rldk_check_determinism_is_wired():
    result = CliRunner().invoke(compat.app, ["check-determinism", "--help"])
    assert result.exit_code == 0
    assert "--replicas" in result.output
