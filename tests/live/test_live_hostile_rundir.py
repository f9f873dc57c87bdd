"""A run directory or followed file turned hostile never blinds the guardrail (issue 16
items 1 and 4): the loop never blocks on a file it reads, and the runaway is still stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import MONITOR_FAST, REPO

from rldk_engine.live import monitor as monitor_module
from rldk_engine.live.protocol import read_status
from rldk_engine.live.rules import preset_rules

RUNAWAY = """
import json, time
for s in range(200):
    print(json.dumps({"step": s, "kl": 0.05 if s < 10 else 0.9}), flush=True)
    time.sleep(0.01)
time.sleep(60)
"""


def run_runaway(run_dir: Path):
    started = time.monotonic()
    proc = subprocess.run([*MONITOR_FAST, "--run-dir", str(run_dir), "--", sys.executable, "-c", RUNAWAY],
                          capture_output=True, timeout=60, cwd=REPO)
    return proc, time.monotonic() - started


def steps(run_dir: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run_dir / "run.jsonl").read_text().splitlines()]


def test_fifo_named_control_jsonl_does_not_freeze_the_loop(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.mkfifo(run_dir / "control.jsonl")
    proc, took = run_runaway(run_dir)
    assert proc.returncode == 3, proc.stderr.decode()
    st = read_status(run_dir)
    assert st["stop_rule"] == "kl_spike" and st["stop_step"] == 14
    assert steps(run_dir)[:15] == list(range(15))
    assert any("control.jsonl" in e and "FIFO" in e for e in st["errors"])
    assert took < 20


def test_100mb_partial_control_line_does_not_delay_the_stop(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "control.jsonl").touch()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import time
time.sleep(0.3)
with open({str(run_dir / 'control.jsonl')!r}, "ab") as fh:
    for _ in range(100):
        fh.write(b"x" * (1 << 20)); fh.flush()
"""])
    try:
        proc, took = run_runaway(run_dir)
    finally:
        writer.wait(30)
    assert proc.returncode == 3, proc.stderr.decode()
    st = read_status(run_dir)
    assert st["stop_rule"] == "kl_spike" and st["stop_step"] == 14
    assert took < 20


def test_followed_file_replaced_by_a_fifo_ends_following_with_a_message(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(json.dumps({"step": 0, "kl": 0.1}) + "\n")
    run_dir = tmp_path / "run"
    mon = monitor_module.Monitor(monitor_module.MonitorConfig(
        rules=preset_rules("ppo"), run_dir=run_dir, follow=log, quiet=True, passthrough=False))
    result = []
    thread = threading.Thread(target=lambda: result.append(mon.run()))
    thread.start()
    deadline = time.monotonic() + 10
    while read_status(run_dir).get("steps", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.rename(tmp_path / "train.log.1")
    os.mkfifo(log)
    thread.join(10)
    assert not thread.is_alive(), "the follow loop blocked on a FIFO"
    res = result[0]
    assert res.steps == 1 and res.exit_code == 0
    assert any("FIFO" in e for e in res.errors)


def test_symlinked_status_json_is_never_written_through(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (run_dir / "status.json").symlink_to(victim)
    proc = subprocess.run([*MONITOR_FAST, "--run-dir", str(run_dir), "--", sys.executable, "-c",
                           "import json; print(json.dumps({'step': 0, 'kl': 0.1}))"],
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0
    assert victim.read_text() == "precious"
    assert not (run_dir / "status.json").is_symlink()  # replaced by rename, not followed
    assert read_status(run_dir)["state"] == "exited"
