"""Silence made loud (issue 14 item 3): a monitor that reads lines but recognises no
metric says so ONCE, on stderr, in monitor.log and in status.json "notice"."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import MONITOR, REPO

from rldk_engine.live import monitor as monitor_module
from rldk_engine.live.protocol import read_status, send_control
from rldk_engine.live.rules import preset_rules


def run(tmp_path: Path, code: str, *opts: str):
    run_dir = tmp_path / "run"
    proc = subprocess.run([*MONITOR, "--run-dir", str(run_dir), *opts, "--", sys.executable, "-c", code],
                          capture_output=True, timeout=60, cwd=REPO)
    return proc, run_dir


NO_METRICS = r"""
import sys
print("\x1b[31m| rollout/ | [bold]table[/bold] |\x1b[0m")
for i in range(300):
    print(f"loading shard {i} of 300 ...")
"""


def test_no_metric_in_200_lines_is_said_once_everywhere(tmp_path):
    proc, run_dir = run(tmp_path, NO_METRICS)
    assert proc.returncode == 0
    err = proc.stderr.decode()
    expected = ("no metrics recognised yet — 200 lines read; sample: "
                "\\x1b[31m| rollout/ | [bold]table[/bold] |\\x1b[0m; see `rldk-engine inspect --stdin`")
    assert err.count("no metrics recognised yet") == 2  # the message, and the summary's notice line
    assert f"rldk: {expected}" in err and "\x1b" not in err
    status = read_status(run_dir)
    assert status["notice"] == expected and status["steps"] == 0
    log = (run_dir / "monitor.log").read_text()
    assert log.count("no metrics recognised yet") == 1 and f"rldk: {expected}\n" in log
    assert len(log.splitlines()) == 302  # every trainer line kept, plus the notice


def test_long_sample_is_cut_and_quiet_keeps_stderr_clean(tmp_path):
    code = "print('x' * 5000)\nfor i in range(250): print('noise', i)"
    proc, run_dir = run(tmp_path, code, "--quiet")
    assert "no metrics" not in proc.stderr.decode()
    notice = read_status(run_dir)["notice"]
    assert "sample: " + "x" * 120 + "…;" in notice and len(notice) < 250


def test_metrics_seen_means_no_notice_and_late_metrics_clear_it(tmp_path):
    proc, run_dir = run(tmp_path, "import json\nfor i in range(300): print(json.dumps({'step': i, 'kl': 0.01}))")
    assert "no metrics" not in proc.stderr.decode()
    assert "notice" not in read_status(run_dir)
    late = ("import json\nfor i in range(250): print('warming up', i)\n"
            "for i in range(3): print(json.dumps({'step': i, 'kl': 0.01}))")
    proc, run_dir = run(tmp_path / "late", late)
    assert proc.stderr.decode().count("rldk: no metrics recognised yet") == 1
    status = read_status(run_dir)
    assert status["steps"] == 3 and "notice" not in status  # it no longer applies


def test_notice_after_the_time_limit_with_few_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(monitor_module, "SILENCE_SECONDS", 0.3)
    log = tmp_path / "train.log"
    log.write_text("starting up\nloading the model\n")
    run_dir = tmp_path / "run"
    mon = monitor_module.Monitor(monitor_module.MonitorConfig(
        rules=preset_rules("ppo"), run_dir=run_dir, follow=log, quiet=True, passthrough=False))
    thread = threading.Thread(target=mon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "notice" not in read_status(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        notice = read_status(run_dir).get("notice", "")
        assert notice.startswith("no metrics recognised yet — 2 lines read; sample: starting up;")
    finally:
        send_control(run_dir, {"action": "stop", "by": "test"})
        thread.join(10)
    assert not thread.is_alive()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "stopped"
