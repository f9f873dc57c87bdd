"""Determinism check: replicas side by side, the card, recommendations, exit codes."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, assert_all_gone, reported_pids
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.determinism import (
    CARD_NAME,
    FIGURE_NAME,
    METRICS_FILE_NAME,
    DeterminismError,
    check_command,
    check_runs,
    compare_metric,
    run_from_records,
)
from rldk_engine.ingest.parse import Record

SIM = REPO / "demos" / "determinism_sim.py"
TRAINER = REPO / "demos" / "ppo_trainer.py"
PY = shlex.quote(sys.executable)
CARD_FIELDS = {
    "passed", "replicas", "compare", "tolerance", "mismatches", "max_abs_diff",
    "first_divergence", "culprit_metrics", "recommendations", "env", "wall_time_s",
    "exit_codes",
}

# A scripted trainer whose behaviour depends on its replica index (RLDK_REPLICA).
FAKE_TRAINER = r'''
import json, os, sys
replica = int(os.environ["RLDK_REPLICA"])
mode = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
if mode == "all_crash":
    print("boom: CUDA out of memory", file=sys.stderr)
    sys.exit(3)
if mode == "silent" and replica == 1:
    print("hello, no metrics here")
    sys.exit(0)
if mode == "short" and replica == 2:
    steps -= 2
for step in range(steps):
    if mode in ("env_file", "events"):
        continue  # its metrics go only to RLDK_METRICS_PATH
    if mode == "env_file_and_stdout":
        print(json.dumps({"step": step, "train/kl": 0.01 * step, "reward": float(step)}))
        continue
    print(json.dumps({"step": step, "train/kl": 0.01 * step, "ppo/loss/policy": -0.1}))
    if mode == "crash" and replica == 1 and step == 1:
        print("Traceback: RuntimeError: replica 1 exploded", file=sys.stderr)
        sys.exit(1)
if mode in ("env_file", "env_file_and_stdout"):
    path = os.environ["RLDK_METRICS_PATH"]
    with open(path, "w") as fh:
        for step in range(steps):
            fh.write(json.dumps({"step": step, "kl": 0.25, "policy_loss": -0.5}) + "\n")
    print(json.dumps({"metrics_path": path}) if mode == "env_file" else "written")
if mode == "events":  # the original kit's long format, one metric per line
    with open(os.environ["RLDK_METRICS_PATH"], "w") as fh:
        for step in range(steps):
            for name, value in (("kl", 0.1), ("reward_mean", float(step))):
                fh.write(json.dumps({"step": step, "name": name, "value": value,
                                     "meta": {"replica": replica}}) + "\n")
if mode == "metrics_file":
    with open("metrics.jsonl", "w") as fh:
        for step in range(steps):
            fh.write(json.dumps({"step": step, "kl": 0.5, "reward": float(step)}) + "\n")
'''


@pytest.fixture()
def fake(tmp_path: Path) -> str:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return f"{PY} {shlex.quote(str(script))}"


def _read_card(out: Path) -> dict:
    return json.loads((out / CARD_NAME).read_text())


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    # json.dumps writes NaN as the bare token NaN, as Python trainers do
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ---------------------------------------------------------------- the simulator


def test_nondet_sim_fails_and_names_the_noisy_metric(tmp_path: Path) -> None:
    out = tmp_path / "nondet"
    result = check_command(
        f"{PY} {SIM} --mode nondet --steps 20 --sleep 0",
        compare=["kl", "policy_loss", "reward_mean"], replicas=3, out_dir=out,
    )
    card = _read_card(out)
    assert result.exit_code == 1
    assert CARD_FIELDS <= card.keys()
    assert card["passed"] is False
    assert card["mismatches"] > 0
    assert card["culprit_metrics"] == ["reward_mean"]
    assert card["first_divergence"] == {"kl": None, "policy_loss": None, "reward_mean": 0}
    assert card["max_abs_diff"]["kl"] == 0.0 and card["max_abs_diff"]["reward_mean"] > 1e-6
    assert any("unseeded RNG" in rec and "SystemRandom" in rec for rec in card["recommendations"])
    assert card["exit_codes"] == [0, 0, 0] and card["replicas"] == 3
    assert "python" in card["env"] and "seeds_seen" in card["env"]
    assert (out / FIGURE_NAME).stat().st_size > 0
    for i in range(3):
        assert (out / f"replica_{i}" / "stdout.log").read_text().count("\n") == 20


def test_deterministic_sim_passes_with_no_recommendations(tmp_path: Path) -> None:
    out = tmp_path / "det"
    result = check_command(
        f"{PY} {SIM} --mode deterministic --steps 20 --sleep 0",
        compare=["kl", "policy_loss", "reward_mean"], replicas=3, out_dir=out,
    )
    card = _read_card(out)
    assert result.exit_code == 0 and card["passed"] is True
    assert card["mismatches"] == 0 and card["culprit_metrics"] == []
    assert card["recommendations"] == []
    assert card["compared_steps"] == {"kl": 20, "policy_loss": 20, "reward_mean": 20}
    assert (out / FIGURE_NAME).exists()


def test_relative_command_path_and_parallel_cap_run_from_replica_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # "demos/determinism_sim.py" is relative to the launch folder
    out = tmp_path / "capped"
    result = check_command(
        f"{PY} demos/determinism_sim.py --steps 5", compare=["reward_mean"], replicas=2,
        out_dir=out, parallel=1,
    )
    assert result.exit_code == 0
    assert _read_card(out)["replica_steps"] == [5, 5]


# ---------------------------------------------------------------- the torch trainer


@pytest.mark.skipif(not TRAINER.exists(), reason="demos/ppo_trainer.py not present")
@pytest.mark.parametrize(("seed_flags", "expect_pass"), [("--seed 3", True), ("--no-seed", False)])
def test_torch_trainer_passes_seeded_and_fails_unseeded(
    tmp_path: Path, seed_flags: str, expect_pass: bool
) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "torch"
    result = check_command(
        f"{PY} {TRAINER} --steps 3 --batch 16 {seed_flags}",
        compare=["kl", "policy_loss", "reward_mean"], replicas=2, out_dir=out,
    )
    card = _read_card(out)
    assert card["passed"] is expect_pass, card
    assert result.exit_code == (0 if expect_pass else 1)
    if not expect_pass:
        assert card["mismatches"] > 0
        assert any("unseeded RNG" in rec for rec in card["recommendations"])


# ---------------------------------------------------------------- misbehaving replicas


def test_a_replica_that_crashes_is_reported_with_its_exit_code(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} crash", compare=["kl"], replicas=3, out_dir=tmp_path)
    card = result.card
    assert result.exit_code == 1 and card["passed"] is False
    assert card["exit_codes"] == [0, 1, 0]
    assert card["replica_steps"] == [5, 2, 5]
    recs = " ".join(card["recommendations"])
    assert "replica 1 exited 1" in recs and "exploded" in recs
    assert "different numbers of steps" in recs
    # the steps all replicas share still agree
    assert card["mismatches"] == 0


def test_a_replica_that_prints_nothing(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} silent", compare=["kl"], replicas=3, out_dir=tmp_path)
    assert result.exit_code == 1
    assert result.card["replica_steps"] == [5, 0, 5]
    assert any("1 produced no metrics" in rec for rec in result.card["recommendations"])


def test_a_replica_with_fewer_steps(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} short", compare=["kl"], replicas=3, out_dir=tmp_path)
    assert result.exit_code == 1
    assert result.card["exit_codes"] == [0, 0, 0]
    assert result.card["replica_steps"] == [5, 5, 3]
    assert any("replica 2: 3" in rec for rec in result.card["recommendations"])


def test_every_replica_crashing_could_not_run(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} all_crash", compare=["kl"], replicas=2, out_dir=tmp_path)
    assert result.exit_code == 2
    assert "every replica crashed" in result.reason and "out of memory" in result.reason
    assert _read_card(tmp_path)["error"] == result.reason


def test_metrics_file_pattern_per_replica(tmp_path: Path, fake: str) -> None:
    result = check_command(
        f"{fake} metrics_file 4", compare=["kl", "reward_mean"], replicas=2,
        out_dir=tmp_path, metrics_file="metrics.jsonl",
    )
    assert result.exit_code == 0, result.card
    assert result.card["compared_steps"] == {"kl": 4, "reward_mean": 4}
    assert result.card["sources"][1].endswith("replica_1/metrics.jsonl")


def test_missing_metrics_file_means_no_metrics(tmp_path: Path, fake: str) -> None:
    result = check_command(
        f"{fake} plain", compare=["kl"], replicas=2, out_dir=tmp_path, metrics_file="nope.jsonl"
    )
    assert result.exit_code == 2
    assert "no metrics found" in result.reason and "nope.jsonl" in result.reason


def test_each_replica_gets_its_own_metrics_path_and_the_card_says_file(
    tmp_path: Path, fake: str
) -> None:
    seen: list[list[tuple[int, dict]]] = []
    result = check_command(f"{fake} env_file 4", compare=["kl", "policy_loss"], replicas=2,
                           out_dir=tmp_path,
                           on_tick=lambda ps: seen.append([(p.steps, dict(p.latest)) for p in ps]))
    card = result.card
    # the live view tails the metrics file too (stdout has no metrics in this mode)
    assert [steps for steps, _ in seen[-1]] == [4, 4]
    assert all(latest.get("kl") == 0.25 for _, latest in seen[-1])
    assert result.exit_code == 0, card
    assert card["metrics_from"] == ["file", "file"]
    for i, path in enumerate(card["metrics_files"]):
        assert path == str((tmp_path / f"replica_{i}" / METRICS_FILE_NAME).absolute())
    assert card["compared_steps"] == {"kl": 4, "policy_loss": 4}
    assert card["max_abs_diff"] == {"kl": 0.0, "policy_loss": 0.0}


def test_metrics_path_file_wins_and_stdout_adds_the_rest(tmp_path: Path, fake: str) -> None:
    # kl is in both (file: 0.25 every step; stdout: 0.01 * step): the file's value is used;
    # reward_mean is only on stdout and still compared
    result = check_command(f"{fake} env_file_and_stdout 4", compare=["kl", "reward_mean"],
                           replicas=2, out_dir=tmp_path, make_figure=False)
    assert result.exit_code == 0, result.card
    assert result.card["metrics_from"] == ["file+stdout", "file+stdout"]
    assert result.card["compared_steps"] == {"kl": 4, "reward_mean": 4}
    run = check_runs([tmp_path / "replica_0" / METRICS_FILE_NAME] * 2, compare=["kl"],
                     out_dir=tmp_path / "again", make_figure=False)
    assert run.card["compared_steps"] == {"kl": 4}


def test_a_metrics_file_in_the_original_event_format(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} events 4", compare=["kl", "reward_mean"], replicas=2,
                           out_dir=tmp_path, make_figure=False)
    assert result.exit_code == 0, result.card
    assert result.card["metrics_from"] == ["file", "file"]
    assert result.card["compared_steps"] == {"kl": 4, "reward_mean": 4}


def test_an_unreadable_metrics_file_falls_back_to_stdout_and_says_so(
    tmp_path: Path, fake: str
) -> None:
    trainer = tmp_path / "garbled.py"
    trainer.write_text(
        "import json, os\n"
        "open(os.environ['RLDK_METRICS_PATH'], 'w').write('\\x00\\x01 not metrics\\n')\n"
        "for s in range(3): print(json.dumps({'step': s, 'kl': 0.1}))\n"
    )
    result = check_command(f"{PY} {shlex.quote(str(trainer))}", compare=["kl"], replicas=2,
                           out_dir=tmp_path / "out", make_figure=False)
    assert result.exit_code == 0, result.card
    assert result.card["metrics_from"] == ["stdout", "stdout"]
    assert all(path and path.endswith(METRICS_FILE_NAME) for path in result.card["metrics_files"])
    assert all(error and METRICS_FILE_NAME in error for error in result.card["replica_errors"])


def test_without_a_metrics_file_stdout_is_the_source(tmp_path: Path, fake: str) -> None:
    result = check_command(f"{fake} plain 3", compare=["kl"], replicas=2, out_dir=tmp_path,
                           make_figure=False)
    assert result.card["metrics_from"] == ["stdout", "stdout"]
    assert result.card["metrics_files"] == [None, None]


def test_a_metrics_file_left_by_an_earlier_check_is_not_read(tmp_path: Path, fake: str) -> None:
    stale = tmp_path / "replica_1" / METRICS_FILE_NAME
    stale.parent.mkdir(parents=True)
    stale.write_text('{"step": 0, "kl": 99.0}\n')
    result = check_command(f"{fake} plain 3", compare=["kl"], replicas=2, out_dir=tmp_path,
                           make_figure=False)
    assert result.exit_code == 0 and result.card["metrics_from"] == ["stdout", "stdout"]


def test_a_daemon_a_replica_leaves_behind_is_ended(tmp_path: Path) -> None:
    # a background process that does not hold stdout outlives its replica: it would hold
    # CPU/GPU while the next replicas run; the replica's process group ends it
    trainer = tmp_path / "leaves_daemon.py"
    trainer.write_text(
        "import json, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(f'pid {child.pid}', file=sys.stderr)\n"
        "for s in range(3): print(json.dumps({'step': s, 'kl': 0.1}))\n"
    )
    result = check_command(f"{PY} {shlex.quote(str(trainer))}", compare=["kl"], replicas=2,
                           out_dir=tmp_path / "out", make_figure=False)
    assert result.exit_code == 0, result.card
    pids = reported_pids(b"".join(
        (tmp_path / "out" / f"replica_{i}" / "stderr.log").read_bytes() for i in range(2)))
    assert_all_gone(pids, expected=2)


def test_interrupting_the_check_stops_every_replica(tmp_path: Path) -> None:
    trainer = tmp_path / "slow.py"
    trainer.write_text(
        "import json, os, sys, time\n"
        "print(f'pid {os.getpid()}', file=sys.stderr, flush=True)\n"
        "for s in range(600): print(json.dumps({'step': s, 'kl': 0.1}), flush=True); time.sleep(0.1)\n"
    )
    ticks = []

    def interrupt(progress) -> None:
        ticks.append(1)
        if all(p.steps >= 2 for p in progress):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_command(f"{PY} {shlex.quote(str(trainer))}", compare=["kl"], replicas=3,
                      out_dir=tmp_path / "out", on_tick=interrupt, make_figure=False)
    pids = reported_pids(b"".join(
        (tmp_path / "out" / f"replica_{i}" / "stderr.log").read_bytes() for i in range(3)))
    assert_all_gone(pids, expected=3)


# ---------------------------------------------------------------- usage errors


def test_unknown_compare_metric_is_an_error(tmp_path: Path) -> None:
    result = check_command(
        f"{PY} {SIM} --steps 3", compare=["kl", "bogus_metric"], replicas=2, out_dir=tmp_path
    )
    assert result.exit_code == 2
    assert "bogus_metric" in result.reason and "no replica logged" in result.reason


def test_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(DeterminismError, match="command not found: no-such-trainer-xyz"):
        check_command("no-such-trainer-xyz --steps 3", replicas=2, out_dir=tmp_path)


# ---------------------------------------------------------------- --runs mode


def _rows(n: int, **overrides) -> list[dict]:
    rows = [{"step": s, "train/kl": 0.01 * s, "env/reward_mean": 1.0 + s} for s in range(n)]
    for step, values in overrides.items():
        rows[int(step.lstrip("s"))].update(values)
    return rows


def test_runs_mode_identical_logs_pass_and_alias_compare(tmp_path: Path) -> None:
    paths = [_write_jsonl(tmp_path / f"r{i}.jsonl", _rows(6)) for i in range(2)]
    result = check_runs(paths, compare=["kl", "reward"], out_dir=tmp_path / "out")
    assert result.exit_code == 0
    assert result.card["compare"] == ["kl", "reward_mean"]
    assert result.card["exit_codes"] == [None, None]


def test_runs_mode_late_growing_divergence_points_at_kernels(tmp_path: Path) -> None:
    base = _rows(10)
    drift = _rows(10)
    for step in range(5, 10):  # agrees for 5 steps, then a tiny gap that amplifies
        drift[step]["env/reward_mean"] += 1e-5 * 10 ** (step - 5)
    paths = [_write_jsonl(tmp_path / "a.jsonl", base), _write_jsonl(tmp_path / "b.jsonl", drift)]
    result = check_runs(paths, compare=["reward_mean", "kl"], out_dir=tmp_path / "out")
    card = result.card
    assert result.exit_code == 1
    assert card["first_divergence"] == {"reward_mean": 5, "kl": None}
    assert card["mismatches"] == 5
    recs = " ".join(card["recommendations"])
    assert "the gap grows" in recs and "torch.use_deterministic_algorithms" in recs
    assert "CUBLAS_WORKSPACE_CONFIG" in recs and "no-op on this CPU" in recs
    assert "unseeded" not in recs


def test_runs_mode_one_odd_replica_points_at_environment(tmp_path: Path) -> None:
    rows = [_rows(6), _rows(6), _rows(6, s3={"train/kl": 9.0})]
    paths = [_write_jsonl(tmp_path / f"r{i}.jsonl", r) for i, r in enumerate(rows)]
    result = check_runs(paths, compare=["kl"], out_dir=tmp_path / "out")
    assert result.exit_code == 1
    assert any("Only replica 2 disagrees" in rec for rec in result.card["recommendations"])


def test_tolerances_absolute_and_relative(tmp_path: Path) -> None:
    a = _rows(4)
    b = _rows(4, s2={"env/reward_mean": 3.0 + 1e-4})
    paths = [_write_jsonl(tmp_path / "a.jsonl", a), _write_jsonl(tmp_path / "b.jsonl", b)]
    strict = check_runs(paths, compare=["reward_mean"], out_dir=tmp_path / "o1")
    assert strict.card["mismatches"] == 1
    assert strict.card["max_abs_diff"]["reward_mean"] == pytest.approx(1e-4)
    loose_abs = check_runs(paths, compare=["reward_mean"], out_dir=tmp_path / "o2", atol=1e-3)
    loose_rel = check_runs(paths, compare=["reward_mean"], out_dir=tmp_path / "o3", rtol=1e-4)
    assert loose_abs.exit_code == 0 and loose_rel.exit_code == 0


def test_nan_equals_nan_but_not_a_number(tmp_path: Path) -> None:
    both_nan = [_rows(4, s1={"train/kl": math.nan}) for _ in range(2)]
    paths = [_write_jsonl(tmp_path / f"n{i}.jsonl", r) for i, r in enumerate(both_nan)]
    assert check_runs(paths, compare=["kl"], out_dir=tmp_path / "o1").exit_code == 0

    mixed = [_rows(4, s1={"train/kl": math.nan}), _rows(4)]
    paths = [_write_jsonl(tmp_path / f"m{i}.jsonl", r) for i, r in enumerate(mixed)]
    result = check_runs(paths, compare=["kl"], out_dir=tmp_path / "o2")
    card = _read_card(tmp_path / "o2")  # strict JSON: no bare NaN/Infinity tokens
    assert result.exit_code == 1
    assert card["mismatches"] == 1 and card["first_divergence"] == {"kl": 1}
    assert card["max_abs_diff"] == {"kl": "Infinity"}
    assert (tmp_path / "o2" / FIGURE_NAME).exists()


def test_non_numeric_value_is_a_mismatch_not_a_crash(tmp_path: Path) -> None:
    bad = [_rows(4), _rows(4, s2={"train/kl": "oops"})]
    paths = [_write_jsonl(tmp_path / f"b{i}.jsonl", r) for i, r in enumerate(bad)]
    result = check_runs(paths, compare=["kl"], out_dir=tmp_path / "out")
    assert result.exit_code == 1 and result.card["passed"] is False


def test_runs_mode_unreadable_log_names_the_file(tmp_path: Path) -> None:
    good = _write_jsonl(tmp_path / "good.jsonl", _rows(3))
    with pytest.raises(DeterminismError, match="missing.jsonl"):
        check_runs([good, tmp_path / "missing.jsonl"], out_dir=tmp_path / "out")


# ---------------------------------------------------------------- the CLI


def test_cli_runs_mode_and_exit_codes(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", _rows(5))
    b = _write_jsonl(tmp_path / "b.jsonl", _rows(5, s4={"train/kl": 1.0}))
    runner = CliRunner()
    out = tmp_path / "out"
    same = runner.invoke(app, ["determinism", "--runs", str(a), str(a), "-o", str(out)])
    assert same.exit_code == 0, same.output
    assert "PASSED" in same.output
    diff = runner.invoke(
        app, ["determinism", "--runs", str(a), str(b), "--compare", "kl", "-o", str(out)]
    )
    assert diff.exit_code == 1 and "FAILED" in diff.output and "culprits: kl" in diff.output
    unknown = runner.invoke(
        app, ["determinism", "--runs", str(a), str(b), "--compare", "nope", "-o", str(out)]
    )
    assert unknown.exit_code == 2 and "nope" in unknown.output
    assert "Traceback" not in unknown.output


def test_cli_command_not_found_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["determinism", "--cmd", "no-such-trainer-xyz", "-o", str(tmp_path), "-q"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == "rldk determinism: command not found: no-such-trainer-xyz"


def test_cli_runs_a_command_with_plain_progress(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "determinism", "--cmd", f"{PY} {SIM} --mode nondet --steps 4",
        "--compare", "kl,policy_loss,reward_mean", "--replicas", "2", "-o", str(tmp_path),
    ])
    assert result.exit_code == 1, result.output
    assert "replica 1: done, 4 steps, exit 0" in result.output
    assert "culprits: reward_mean" in result.output


# ---------------------------------------------------------------- live progress


def test_live_progress_reports_latest_values_and_max_diff_so_far(tmp_path: Path) -> None:
    ticks: list[list[tuple[dict, float | None]]] = []

    def on_tick(progress) -> None:
        ticks.append([(dict(p.latest), p.max_diff) for p in progress])

    for mode, compare in (("nondet", ["reward_mean"]), ("deterministic", ["kl", "reward_mean"])):
        ticks.clear()
        result = check_command(f"{PY} {SIM} --mode {mode} --steps 15 --sleep 0",
                               compare=compare, replicas=2, out_dir=tmp_path / mode,
                               on_tick=on_tick, make_figure=False)
        final = ticks[-1]
        card_diff = max(result.card["max_abs_diff"][m] for m in result.card["compare"])
        for latest, max_diff in final:
            assert {"kl", "reward_mean", "entropy"} <= latest.keys()
            assert all(isinstance(v, float) for v in latest.values())
            # Once every replica ended, every shared step counts: the card's figure.
            assert max_diff == pytest.approx(card_diff, abs=1e-12)
        assert (final[0][1] > 1e-6) is (mode == "nondet")
        # The replicas print the same last step: their latest kl is the same number.
        assert final[0][0]["kl"] == final[1][0]["kl"]


def test_live_diff_counts_a_step_only_once_every_replica_passed_it() -> None:
    from rldk_engine.determinism import LiveDiff, ReplicaProgress
    from rldk_engine.ingest.parse import Record

    progress = [ReplicaProgress(state="running") for _ in range(3)]
    live = LiveDiff(progress, ["train/kl"])  # canonicalised: kl
    for i, p in enumerate(progress):
        p.observe(Record(0, {"kl": 0.1, "loss": float(i)}))
    live.update()
    assert [p.max_diff for p in progress] == [None, None, None]  # step 0 may still grow
    progress[0].observe(Record(1, {"kl": 0.5}))
    progress[1].observe(Record(1, {"kl": 0.1}))
    progress[2].observe(Record(1, {"kl": 0.1}))
    live.update()
    assert [p.max_diff for p in progress] == [0.0, 0.0, 0.0]  # step 0 agreed; loss not compared
    for p in progress:
        p.state = "done"
    live.update()
    assert [p.max_diff for p in progress] == pytest.approx([0.4] * 3)
    progress[0].observe(Record(2, {"kl": math.nan}))
    progress[1].observe(Record(2, {"kl": math.nan}))
    progress[2].observe(Record(2, {"kl": 0.1}))
    live.update()
    assert progress[0].max_diff == math.inf  # NaN against a number: a mismatch
    assert math.isnan(progress[0].latest["kl"]) and progress[0].latest["loss"] == 0.0
    assert all(p.feed == [] for p in progress) and live.pending == {}


# ----------------------------------------------------------------------------- non-finite replicas, background processes


def test_odd_replica_diverging_to_inf_is_named():
    base = [Record(i, {"kl": 0.01 * i}) for i in range(10)]
    odd = base[:5] + [Record(i, {"kl": math.inf}) for i in range(5, 10)]
    runs = [run_from_records(r) for r in (base, base, base, odd)]
    comparison = compare_metric("kl", runs, [0, 1, 2, 3], atol=1e-6, rtol=0.0)
    assert comparison.n_mismatches == 5
    assert comparison.deviating_replicas == {3}


def test_odd_replica_diverging_to_nan_is_named():
    base = [Record(i, {"kl": 0.01 * i}) for i in range(10)]
    odd = base[:5] + [Record(i, {"kl": np.nan}) for i in range(5, 10)]
    runs = [run_from_records(r) for r in (base, base, odd)]
    comparison = compare_metric("kl", runs, [0, 1, 2], atol=1e-6, rtol=0.0)
    assert comparison.deviating_replicas == {2}


def test_determinism_does_not_wait_for_a_background_process_holding_stdout(tmp_path):
    # `sleep 60 &` keeps the replica's stdout pipe open after the replica exits: reading
    # used to block until that process ended (forever for a daemon)
    import time

    from rldk_engine.determinism import check_command

    script = tmp_path / "train.sh"
    script.write_text('#!/bin/sh\nsleep 60 &\necho \'{"step": 1, "kl": 0.1}\'\n'
                      'echo \'{"step": 2, "kl": 0.2}\'\n')
    script.chmod(0o755)
    started = time.monotonic()
    result = check_command(str(script), replicas=2, out_dir=tmp_path / "out", make_figure=False)
    assert time.monotonic() - started < 20
    assert result.exit_code == 0
    assert result.card["replica_steps"] == [2, 2]
