"""The original RL Debug Kit's blog-post commands, verbatim, on the original kit's own files.

The commands are the ones its users type (docs/blog/catch-rl-training-failures.md and the
`monitor-demo` target of its Makefile, github:adityachallapally/rldk), run as `rldk` from a
workspace laid out like the original repository: `test_artifacts/` holds the data its
`tests/_make_fixtures.py` writes (tests/data/original_kit/, see PROVENANCE.md there),
`scripts/blog_determinism_sim.py` is our own simulation in the original's format
(tests/contract/kit_determinism_sim.py) or, when a checkout of the original kit is on this machine,
the original script itself. Checks that depend on work landing on other branches are
marked xfail(strict=False) with the branch named; the lead flips them after merging.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DATA, REPO

KIT_DATA = DATA / "original_kit"
OWN_SIM = Path(__file__).with_name("kit_determinism_sim.py")
OWN_LOOP = Path(__file__).with_name("kit_streaming_loop.py")
# A checkout (work tree) or bare git directory of github:adityachallapally/rldk.
ORIGINAL_REPO = Path(os.environ.get(
    "RLDK_ORIGINAL_REPO", "/work/.mirror/adityachallapally+rldk/repo"))
ORIGINAL_SIM_PATH = "scripts/blog_determinism_sim.py"
WARNING_OR_ABOVE = {"warning", "critical"}

# The blog post's commands, character for character (the doctor line keeps its spaces).
LOG_SCAN = "rldk forensics log-scan test_artifacts/logs_doctored_kl_spike"
DOCTOR = "rldk forensics doctor   test_artifacts/logs_doctored_kl_spike"
CHECK_NONDET = """rldk check-determinism \\
  --cmd "python scripts/blog_determinism_sim.py --mode nondet --steps 200 --sleep 0.02" \\
  --compare kl,policy_loss,reward_mean \\
  --replicas 4 \\
  --output-dir docs/assets/blog_catch_failures/determinism_nondet"""
CHECK_DET = """rldk check-determinism \\
  --cmd "python scripts/blog_determinism_sim.py --mode deterministic --steps 200 --sleep 0.02" \\
  --compare kl,policy_loss,reward_mean \\
  --replicas 4 \\
  --output-dir docs/assets/blog_catch_failures/determinism_det"""
# `python examples/comprehensive_ppo_forensics_example.py` in the blog is the original's
# example script; its command-line form in the original kit is this one.
COMPREHENSIVE = "rldk forensics comprehensive test_artifacts/logs_doctored_kl_spike"
# `make fixtures-grpo` + the detector matrix scan each GRPO seed.
GRPO_SCAN = "rldk log-scan test_artifacts/logs_grpo/seed_{seed}"
# The Makefile's monitor-demo line, with $$artifacts_dir and $$loop_pid filled in.
MONITOR = ("rldk monitor --stream artifacts/run.jsonl --rules rules.yaml --pid {pid} "
           "--alerts artifacts/alerts.jsonl --report artifacts/report.json")


def _original_sim_source() -> str | None:
    """The original script's text from a checkout or a bare mirror, else None."""
    work_tree_file = ORIGINAL_REPO / ORIGINAL_SIM_PATH
    if work_tree_file.is_file():
        return work_tree_file.read_text(encoding="utf-8")
    if not ORIGINAL_REPO.is_dir() or shutil.which("git") is None:
        return None
    shown = subprocess.run(
        ["git", "--git-dir", str(ORIGINAL_REPO), "show", f"HEAD:{ORIGINAL_SIM_PATH}"],
        capture_output=True, text=True, check=False,
    )
    return shown.stdout if shown.returncode == 0 and shown.stdout else None


def _workspace(tmp_path: Path, sim_source: str) -> Path:
    """A folder laid out like the original repository for the blog's relative paths."""
    ws = tmp_path / "kit"
    shutil.copytree(KIT_DATA / "test_artifacts", ws / "test_artifacts")
    shutil.copy(KIT_DATA / "rules.yaml", ws / "rules.yaml")
    (ws / "scripts").mkdir()
    (ws / ORIGINAL_SIM_PATH).write_text(sim_source, encoding="utf-8")
    return ws


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # `python` in the blog's --cmd is this interpreter (numpy available for the original)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHASHSEED", None)
    return env


def _argv(command: str) -> list[str]:
    words = shlex.split(command.replace("\\\n", " "))  # a shell's line continuation
    assert words[0] == "rldk", command
    return [sys.executable, "-m", "rldk_engine.cli.compat", *words[1:]]


def rldk(command: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run one `rldk ...` command line as a user would, from `cwd`."""
    return subprocess.run(_argv(command), cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return _workspace(tmp_path, OWN_SIM.read_text(encoding="utf-8"))


def _anomalies(report: dict) -> list[dict]:
    (run,) = report["runs"]
    return run["anomalies"]


def _serious(anomalies: list[dict], rule: str) -> list[dict]:
    return [a for a in anomalies if a["rule"] == rule and a["severity"] in WARNING_OR_ABOVE]


# ----------------------------------------------------------------------------- forensics


def test_log_scan_of_the_doctored_run_reports_the_kl_surge(ws: Path) -> None:
    done = rldk(LOG_SCAN, ws)
    assert done.returncode == 0, done.stderr
    assert "training.jsonl" in done.stdout and "kl_spike" in done.stdout


def _doctor_report(ws: Path) -> tuple[dict, dict]:
    done = rldk(DOCTOR, ws)
    assert done.returncode == 0, done.stderr
    assert "rldk_reports/ppo_scan.json" in done.stdout
    scan = json.loads((ws / "rldk_reports" / "ppo_scan.json").read_text())
    card = json.loads((ws / "rldk_reports" / "determinism_card.json").read_text())
    return scan, card


def test_doctor_writes_the_scan_and_the_environment_card(ws: Path) -> None:
    scan, card = _doctor_report(ws)
    spikes = _serious(_anomalies(scan), "kl_spike")
    assert spikes and 795 <= spikes[0]["start_step"] <= 805, spikes
    assert all(a["fix"] for a in _anomalies(scan))
    # one card schema (SPEC "Determinism") for doctor and check-determinism
    assert card["kind"] == "environment" and card["replicas"] == 0
    for key in ("passed", "compare", "tolerance", "mismatches", "max_abs_diff",
                "first_divergence", "culprit_metrics", "recommendations", "env",
                "wall_time_s", "exit_codes"):
        assert key in card
    assert card["findings"] and "python" in card["env"]


def test_doctor_finds_the_surge_and_the_stuck_kl_controller(ws: Path) -> None:
    scan, _ = _doctor_report(ws)
    anomalies = _anomalies(scan)
    spikes = _serious(anomalies, "kl_spike")
    assert spikes and spikes[0]["start_step"] == 800 and spikes[0]["end_step"] <= 810, spikes
    drift = _serious(anomalies, "kl_controller_drift")
    assert drift, anomalies
    assert 790 <= drift[0]["start_step"] <= 830 and drift[-1]["end_step"] >= 990, drift


def test_the_clean_run_has_nothing_at_warning_or_above(ws: Path) -> None:
    done = rldk("rldk forensics log-scan test_artifacts/logs_clean --out clean.json", ws)
    assert done.returncode == 0, done.stderr
    serious = [a for a in _anomalies(json.loads((ws / "clean.json").read_text()))
               if a["severity"] in WARNING_OR_ABOVE]
    assert serious == []


def test_comprehensive_writes_component_health(ws: Path) -> None:
    done = rldk(COMPREHENSIVE, ws)
    assert done.returncode == 0, done.stderr
    (analysis,) = (ws / "rldk_reports").rglob("comprehensive_analysis.json")
    result = json.loads(analysis.read_text())
    assert 0.0 <= result["overall"] <= 1.0 and 0.0 <= result["stability"] <= 1.0
    assert result["overall"] < 1.0  # the doctored surge costs health
    assert "kl" in result["components"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_grpo_seed_shows_the_kl_surge_and_no_controller_drift(ws: Path, seed: int) -> None:
    done = rldk(GRPO_SCAN.format(seed=seed) + f" --out grpo_{seed}.json", ws)
    assert done.returncode == 0, done.stderr
    anomalies = _anomalies(json.loads((ws / f"grpo_{seed}.json").read_text()))
    spikes = [a for a in anomalies if a["rule"] == "kl_spike"]
    assert spikes and spikes[0]["start_step"] == 800 and spikes[0]["end_step"] <= 810, spikes
    assert not _serious(anomalies, "kl_controller_drift")


def test_grpo_sidecar_index_json_is_skipped_silently(ws: Path) -> None:
    done = rldk(GRPO_SCAN.format(seed=1), ws)
    assert done.returncode == 0, done.stderr
    assert "index.json" not in done.stdout + done.stderr


# ----------------------------------------------------------------------------- determinism


def _check_determinism_verdicts(ws: Path) -> tuple[dict, dict]:
    nondet = rldk(CHECK_NONDET, ws)
    assert nondet.returncode == 1, nondet.stdout + nondet.stderr
    det = rldk(CHECK_DET, ws)
    assert det.returncode == 0, det.stdout + det.stderr
    out = ws / "docs" / "assets" / "blog_catch_failures"
    return (json.loads((out / "determinism_nondet" / "determinism_card.json").read_text()),
            json.loads((out / "determinism_det" / "determinism_card.json").read_text()))


def _assert_blog_verdicts(nondet: dict, det: dict) -> None:
    compared = ["kl", "policy_loss", "reward_mean"]
    assert nondet["passed"] is False and nondet["replicas"] == 4
    assert nondet["compare"] == compared
    # noise on every compared metric: each one mismatches, reward_mean among the culprits
    assert all(nondet["first_divergence"][m] is not None for m in compared), nondet
    assert all(nondet["max_abs_diff"][m] > nondet["tolerance"] for m in compared)
    assert "reward_mean" in nondet["culprit_metrics"]
    assert nondet["mismatches"] > 500  # of 600 cells (the original reports 599)
    assert 1e-3 < nondet["max_abs_diff"]["reward_mean"] <= 1e-2  # the original: 9.7e-3
    assert any("unseeded RNG" in rec for rec in nondet["recommendations"])
    # the metrics came from the RLDK_METRICS_PATH file each replica wrote
    assert all(source.startswith("file") for source in nondet["metrics_from"])
    assert nondet["replica_steps"] == [200] * 4
    assert det["passed"] is True and det["mismatches"] == 0 and det["recommendations"] == []
    assert det["compared_steps"] == {m: 200 for m in compared}


def test_check_determinism_both_modes_with_a_metrics_path_simulation(ws: Path) -> None:
    _assert_blog_verdicts(*_check_determinism_verdicts(ws))


def test_check_determinism_both_modes_with_the_original_script(tmp_path: Path) -> None:
    source = _original_sim_source()
    if source is None:
        pytest.skip(f"no checkout of the original kit at {ORIGINAL_REPO} (RLDK_ORIGINAL_REPO)")
    pytest.importorskip("numpy")  # the original script needs it
    _assert_blog_verdicts(*_check_determinism_verdicts(_workspace(tmp_path, source)))


# ----------------------------------------------------------------------------- monitor


def test_monitor_demo_attaches_to_a_streaming_loop_and_stops_it(ws: Path) -> None:
    env = _env()
    env["KIT_LOOP_STEPS"], env["KIT_LOOP_SLEEP"] = "300", "0.05"
    loop = subprocess.Popen([sys.executable, str(OWN_LOOP)], cwd=ws, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (ws / "artifacts" / "run.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = rldk(MONITOR.format(pid=loop.pid), ws, timeout=60)
        assert done.returncode == 3, done.stdout + done.stderr  # "the guardrail said stop"
        assert loop.wait(timeout=10) is not None  # stopped long before its 300 steps
        alerts = [json.loads(line) for line in
                  (ws / "artifacts" / "alerts.jsonl").read_text().splitlines() if line]
        stops = [a for a in alerts if a.get("action") == "stop"]
        assert stops and all(a["metric"] == "kl" and a["value"] > 0.35 for a in stops)
        assert 16 <= stops[0]["step"] <= 40
        assert (ws / "artifacts" / "report.json").is_file()
    finally:
        if loop.poll() is None:
            os.killpg(loop.pid, signal.SIGKILL)
            loop.wait()
