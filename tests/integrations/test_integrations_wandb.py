"""W&B run folders read offline: .wandb history, or output.log / wandb-summary.json."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rldk_engine.errors import InputError
from rldk_engine.forensics.scan import scan_paths
from rldk_engine.ingest.readers import discover_sources, read_run

WANDB_RUN = """
import math, wandb
run = wandb.init(project="rldk-test", config={"lr": 1e-5})
for step in range(12):
    run.log({"train/kl": 0.01 * step, "env/reward_mean": float(step),
             "grad_norm": math.nan if step == 7 else 1.0, "nested": {"a": step}}, step=step)
run.finish()
"""


@pytest.fixture(scope="module")
def wandb_root(tmp_path_factory) -> Path:
    pytest.importorskip("wandb", reason="the 'wandb' extra is not installed")
    root = tmp_path_factory.mktemp("wb")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root),
               WANDB_DISABLE_GIT="true", WANDB_CONSOLE="off")
    subprocess.run([sys.executable, "-c", WANDB_RUN], env=env, check=True, timeout=60,
                   capture_output=True)
    return root


def _run_folder(root: Path) -> Path:
    (folder,) = [p for p in (root / "wandb").iterdir() if p.name.startswith("offline-run-")]
    return folder


def test_history_of_an_offline_run_folder(wandb_root):
    run = read_run(_run_folder(wandb_root))
    assert run.format == "wandb"
    assert run.steps.tolist() == list(range(12))
    assert run.get("kl").tolist() == pytest.approx([0.01 * s for s in range(12)])
    assert run.get("reward_mean")[-1] == 11.0
    assert run.get("nested.a").tolist() == [float(s) for s in range(12)]
    assert run.nonfinite["grad_norm"].tolist() == [7]
    assert "_timestamp" not in run.columns and not run.errors


def test_scanning_the_wandb_dir_finds_one_run_and_no_debug_logs(wandb_root):
    sources, errors = discover_sources([wandb_root])
    assert [s.run_id for s in sources] == [f"wandb/{_run_folder(wandb_root).name}"] and not errors
    # the wandb/ folder itself, trailing slash and all: its debug*.log files are no runs
    inner, errors = discover_sources([f"{wandb_root / 'wandb'}/"])
    assert [s.run_id for s in inner] == [_run_folder(wandb_root).name] and not errors
    report = scan_paths([wandb_root])
    assert not report["errors"] and report["runs"][0]["n_steps"] == 12


def test_a_cut_history_keeps_the_records_before_the_cut(wandb_root, tmp_path):
    folder = tmp_path / "run-cut"
    shutil.copytree(_run_folder(wandb_root), folder)
    (history,) = folder.glob("*.wandb")
    data = history.read_bytes()
    full = read_run(folder).n_steps
    history.write_bytes(data[: int(len(data) * 0.6)])
    run = read_run(folder)
    assert 0 < run.n_steps < full
    assert any("history ends inside a record" in e for e in run.errors)


def test_a_corrupt_record_is_reported_by_checksum(wandb_root, tmp_path):
    folder = tmp_path / "run-bad"
    shutil.copytree(_run_folder(wandb_root), folder)
    (history,) = folder.glob("*.wandb")
    data = bytearray(history.read_bytes())
    data[len(data) // 2] ^= 0xFF
    history.write_bytes(bytes(data))
    run = read_run(folder)
    assert any("checksum" in e for e in run.errors)


def test_missing_extra_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "wandb" / "run-20240101_000000-abc"
    folder.mkdir(parents=True)
    (folder / "run-abc.wandb").write_bytes(b":W&B\xe1\xbe\x00" + b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "wandb.proto", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "wandb.proto.wandb_internal_pb2", None)
    with pytest.raises(InputError) as err:
        read_run(folder)
    assert "pip install 'rldk[wandb]'" in str(err.value) and "run-abc.wandb" in str(err.value)


def test_not_a_wandb_file(tmp_path):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"hello, this is not W&B")
    pytest.importorskip("wandb", reason="the 'wandb' extra is not installed")
    with pytest.raises(InputError, match="not a W&B history file"):
        read_run(bad)


def test_folder_with_only_output_log(tmp_path):
    folder = tmp_path / "wandb" / "run-20240101_000000-out"
    (folder / "files").mkdir(parents=True)
    lines = [f"{{'loss': {1 / (s + 1):.3f}, 'train/kl': 0.02, 'step': {s}}}" for s in range(5)]
    (folder / "files" / "output.log").write_text("starting\n" + "\n".join(lines) + "\n")
    (folder / "files" / "wandb-summary.json").write_text(json.dumps({"train/kl": 0.02}))
    run = read_run(folder)
    assert run.format == "wandb" and run.steps.tolist() == [0, 1, 2, 3, 4]
    assert run.get("kl").tolist() == [0.02] * 5


def test_folder_with_only_a_summary(tmp_path):
    folder = tmp_path / "run-20240101_000000-sum"
    (folder / "files").mkdir(parents=True)
    summary = {"_step": 99, "_runtime": 12.5, "train/kl": 0.3, "media": {"_type": "image"},
               "_wandb": {"runtime": 12}}
    (folder / "files" / "wandb-summary.json").write_text(json.dumps(summary))
    run = read_run(tmp_path)  # the folder is found inside its parent
    assert run.steps.tolist() == [99] and run.get("kl").tolist() == [0.3]
    assert "_runtime" not in run.columns and not any(math.isnan(v) for v in run.get("kl"))


def test_empty_run_folder_says_what_is_missing(tmp_path):
    folder = tmp_path / "run-20240101_000000-empty"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "wandb-summary.json").write_text("not json")
    with pytest.raises(InputError, match="without a .wandb file"):
        read_run(folder)
