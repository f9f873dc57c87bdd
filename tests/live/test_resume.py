"""The resume plan (rldk_engine.resume): checkpoint names, output folders, last healthy step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rldk_engine import resume


def _touch(path: Path, is_dir: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        path.mkdir()
    else:
        path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("name,is_dir,expected", [
    ("checkpoint-500", True, (500, "hf")),
    ("global_step_40", True, (40, "verl")),
    ("epoch=2-step=1200.ckpt", False, (1200, "lightning")),
    ("epoch=0-step=30-val_loss=0.12.ckpt", False, (30, "lightning")),
    ("model_step_70.pt", False, (70, "plain")),
    ("ckpt-step100", True, (100, "plain")),
    ("global_step100", True, (100, "plain")),  # DeepSpeed's spelling
    ("step_3.log", False, None),  # a log file is not a checkpoint
    ("checkpoint-500", False, None),  # HF checkpoints are folders
    ("steps_total.pt", False, None),
    ("runs", True, None),
])
def test_checkpoint_names(name, is_dir, expected):
    assert resume.checkpoint_step(name, is_dir) == expected


def test_find_checkpoints_sorted_and_not_inside_checkpoints(tmp_path):
    _touch(tmp_path / "checkpoint-10" / "global_step10", is_dir=True)  # DeepSpeed inside HF
    _touch(tmp_path / "checkpoint-30", is_dir=True)
    _touch(tmp_path / "sub" / "epoch=1-step=20.ckpt")
    _touch(tmp_path / "notes_step_99.txt")
    found = resume.find_checkpoints(tmp_path)
    assert [(c.step, c.kind) for c in found] == [(10, "hf"), (20, "lightning"), (30, "hf")]


def test_find_checkpoints_missing_folder_is_empty(tmp_path):
    assert resume.find_checkpoints(tmp_path / "absent") == []


@pytest.mark.parametrize("argv,expected", [
    (["python", "train.py", "--output_dir", "out"], ["out"]),
    (["python", "train.py", "--output-dir=runs/a"], ["runs/a"]),
    (["python", "-m", "verl.trainer.main_ppo", "trainer.default_local_dir=/ck/x", "data.x=1"], ["/ck/x"]),
    (["python", "train.py", "output_dir=hydra_out"], ["hydra_out"]),
    (["python", "train.py", "--lr", "1e-5"], []),
    (["python", "train.py", "--output_dir"], []),  # no value: nothing guessed
])
def test_output_dirs_from_cmd(tmp_path, argv, expected):
    got = resume.output_dirs_from_cmd(argv, cwd=tmp_path)
    assert got == [Path(e) if Path(e).is_absolute() else tmp_path / e for e in expected]


def test_plan_picks_newest_checkpoint_at_or_before_last_healthy_step(tmp_path):
    for n in (5, 10, 15, 20, 25):
        _touch(tmp_path / f"checkpoint-{n}", is_dir=True)
    anomalies = [
        {"rule": "entropy_collapse", "start_step": 3, "severity": "info"},  # info does not count
        {"rule": "kl_spike", "start_step": 18, "end_step": 24, "severity": "critical"},
        {"rule": "approx_kl_high", "start_step": 21, "severity": "warning"},
    ]
    plan = resume.build_plan(range(0, 25), anomalies, [tmp_path], scan_command="rldk-engine scan x")
    assert plan["first_bad_step"] == 18
    assert plan["last_healthy_step"] == 17
    assert plan["checkpoint"] == str(tmp_path / "checkpoint-15")
    assert plan["rules"] == ["kl_spike", "approx_kl_high"]
    assert plan["scan_command"] == "rldk-engine scan x"
    assert set(plan) == {"last_healthy_step", "first_bad_step", "checkpoint", "rules", "fixes", "scan_command"}


def test_plan_without_anomaly_names_newest_checkpoint(tmp_path):
    _touch(tmp_path / "global_step_4", is_dir=True)
    _touch(tmp_path / "global_step_8", is_dir=True)
    plan = resume.build_plan([1, 2, 9], [], [tmp_path])
    assert plan["first_bad_step"] is None and plan["last_healthy_step"] == 9
    assert plan["checkpoint"].endswith("global_step_8")
    assert plan["fixes"] == [] and plan["rules"] == []


def test_plan_bad_from_the_start_has_no_healthy_step(tmp_path):
    _touch(tmp_path / "checkpoint-4", is_dir=True)
    plan = resume.build_plan([4, 5, 6], [{"rule": "non_finite", "start_step": 4, "severity": "critical"}], [tmp_path])
    assert plan["last_healthy_step"] is None
    assert plan["checkpoint"] is None  # checkpoint-4 holds the bad step's weights


def test_plan_fixes_come_from_the_rulebook(monkeypatch):
    rulebook = pytest.importorskip("rldk_engine.rulebook")
    plan = resume.build_plan([1, 2, 3], [{"rule": "kl_spike", "start_step": 3, "severity": "critical"}])
    assert plan["fixes"] == list(dict.fromkeys(rulebook.fixes_for(["kl_spike"])))
    assert plan["fixes"], "kl_spike has fixes in the registry"


def test_plan_fixes_deduplicated(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("rldk_engine.rulebook")
    fake.fixes_for = lambda ids: ["lower the learning rate"] * len(ids) + [f"fix {i}" for i in ids]
    monkeypatch.setitem(sys.modules, "rldk_engine.rulebook", fake)
    assert resume.rule_fixes(["a", "b"]) == ["lower the learning rate", "fix a", "fix b"]


def test_write_plan_and_text(tmp_path):
    plan = {"last_healthy_step": 17, "first_bad_step": 18, "checkpoint": "/x/checkpoint-15",
            "rules": ["kl_spike"], "fixes": ["lower the learning rate"], "scan_command": "rldk-engine scan r"}
    json_path, text_path = resume.write_plans([{"run_id": "r1", "source": "runs/r1/run.jsonl", "resume": plan}],
                                              tmp_path / "rldk_reports")
    assert json.loads(json_path.read_text()) == {"tool": "rldk", "runs": [
        {"run_id": "r1", "source": "runs/r1/run.jsonl", "resume": plan}]}
    text = text_path.read_text()
    assert text.startswith("r1 (runs/r1/run.jsonl)\nresume plan")
    assert "first bad step: 18 (kl_spike)" in text and "resume from: /x/checkpoint-15" in text
    assert "try: lower the learning rate" in text


def test_streak_start():
    assert resume.streak_start([1, 2, 3, 4, 5, 6], 6, 5) == 2
    assert resume.streak_start([1, 2], 2, 5) == 1
    assert resume.streak_start([7], 7, 1) == 7


def test_resume_is_standard_library_only():
    import ast

    tree = ast.parse(Path(resume.__file__).read_text())
    imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "json", "os", "re", "collections", "dataclasses", "pathlib",
                        "typing", "rldk_engine"}


def test_doctor_writes_the_resume_plan(tmp_path):
    from rldk_engine.forensics.doctor import run_doctor

    run = tmp_path / "out"
    run.mkdir()
    rows = [{"step": s, "kl": 0.05 + 0.001 * (s % 3), "reward_mean": 0.1 + 0.001 * s,
             "entropy": 2.0} for s in range(60)]
    rows += [{"step": s, "kl": 0.8 + 0.01 * (s % 3), "reward_mean": 0.2, "entropy": 2.0} for s in range(60, 100)]
    (run / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for n in (40, 55, 80):
        _touch(run / f"checkpoint-{n}", is_dir=True)
    result = run_doctor([str(run / "train.jsonl")], tmp_path / "reports")
    plan = json.loads((tmp_path / "reports" / "resume_plan.json").read_text())["runs"][0]["resume"]
    assert plan == result.plans[0]["resume"]
    assert plan["first_bad_step"] is not None and 60 <= plan["first_bad_step"] <= 65, plan
    assert plan["last_healthy_step"] == plan["first_bad_step"] - 1
    assert plan["checkpoint"] == str(run / "checkpoint-55")
    assert "kl_spike" in plan["rules"] and plan["fixes"]
    assert "resume from: " + str(run / "checkpoint-55") in (tmp_path / "reports" / "resume_plan.txt").read_text()


def test_tracker_keeps_the_first_bad_episode(tmp_path):
    for n in (2, 6, 9):
        _touch(tmp_path / f"checkpoint-{n}", is_dir=True)
    t = resume.ResumeTracker()
    for s in range(1, 13):
        t.step(s)
        if s == 10:
            t.alert("kl_spike", 10, "critical", 5)  # the episode began at step 6
        if s == 12:
            t.alert("approx_kl_high", 12, "warning", 1)
            t.alert("entropy_collapse", 12, "info", 1)  # info never counts
    plan = t.plan([tmp_path], "rldk-engine scan x")
    assert plan["first_bad_step"] == 6 and plan["last_healthy_step"] == 5
    assert plan["checkpoint"] == str(tmp_path / "checkpoint-2")
    assert plan["rules"] == ["kl_spike", "approx_kl_high"]


def test_tracker_without_alerts_names_the_newest_checkpoint(tmp_path):
    _touch(tmp_path / "step_7.pt")
    t = resume.ResumeTracker()
    for s in range(10):
        t.step(s)
    plan = t.plan([tmp_path])
    assert plan["first_bad_step"] is None and plan["last_healthy_step"] == 9
    assert plan["checkpoint"] == str(tmp_path / "step_7.pt")
