"""`rldk-engine monitor` with real child processes (tiny inline Python children)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import MONITOR, REPO, pid_alive, wait_until

from rldk_engine.live.rules import replay

PY = sys.executable


def child(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def run_monitor(tmp_path: Path, cmd: list[str], *opts: str, stdin=None, timeout=30):
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run(MONITOR + ["--run-dir", str(run_dir), *opts, "--", *cmd], input=stdin,
                          capture_output=True, timeout=timeout, cwd=REPO)
    return proc, run_dir, time.monotonic() - t0


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


RUNAWAY_THEN_HANG = """
import json, os, signal, subprocess, sys, time
{prelude}
for s in range(8):
    print(json.dumps({{"step": s, "kl": 0.1 if s < 2 else 0.6}}), flush=True)
time.sleep(60)
"""


def test_stop_kills_grandchild_that_ignores_sigint(tmp_path):
    prelude = """
gc = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"])
print("grandchild", gc.pid, flush=True)
time.sleep(0.2)
"""
    proc, run_dir, took = run_monitor(tmp_path, child(RUNAWAY_THEN_HANG.format(prelude=prelude)),
                                      "--grace-int", "0.3", "--grace-term", "0.3")
    assert proc.returncode == 3, proc.stderr.decode()
    gc_pid = int(proc.stdout.decode().split("grandchild ")[1].split()[0])
    assert not pid_alive(gc_pid)
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["stop_reason"], status["stop_rule"], status["stop_step"]) == (
        "stopped", "guardrail", "kl_spike", 6)
    alerts = jsonl(run_dir / "alerts.jsonl")
    assert alerts[0]["rule"] == "kl_spike" and alerts[0]["action"] == "stop" and alerts[0]["step"] == 6
    assert took < 10


@pytest.mark.parametrize("ignored", ["SIGINT", "SIGTERM"])
def test_signal_ignoring_child_is_escalated(tmp_path, ignored):
    prelude = f"""
signal.signal(signal.SIGINT, signal.SIG_IGN)
if "{ignored}" == "SIGTERM":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
"""
    proc, run_dir, took = run_monitor(tmp_path, child(RUNAWAY_THEN_HANG.format(prelude=prelude)),
                                      "--grace-int", "0.2", "--grace-term", "0.2")
    assert proc.returncode == 3
    status = json.loads((run_dir / "status.json").read_text())
    assert not pid_alive(status["child_pid"])
    assert "stopped by guardrail kl_spike at step 6" in proc.stderr.decode()
    assert took < 10


def test_child_crash_mid_line_keeps_everything_and_its_exit_code(tmp_path):
    code = """
import os, sys
sys.stdout.write('{"step": 0, "kl": 0.1}\\n{"step": 1, "kl": 0.')
sys.stdout.flush()
os._exit(7)
"""
    proc, run_dir, _ = run_monitor(tmp_path, child(code))
    assert proc.returncode == 7
    assert [r["step"] for r in jsonl(run_dir / "run.jsonl")] == [0]
    assert proc.stdout.endswith(b'"kl": 0.')  # passthrough unchanged
    assert (run_dir / "monitor.log").read_bytes().endswith(b'"kl": 0.\n')
    assert json.loads((run_dir / "status.json").read_text())["state"] == "exited"


def test_no_trailing_newline_last_line_is_parsed(tmp_path):
    code = 'import sys; sys.stdout.write(\'{"step": 0, "kl": 0.1}\\n{"step": 3, "kl": 0.2}\')'
    proc, run_dir, _ = run_monitor(tmp_path, child(code))
    assert proc.returncode == 0
    assert [r["step"] for r in jsonl(run_dir / "run.jsonl")] == [0, 3]


def test_megabyte_line_and_binary_output(tmp_path):
    code = """
import os, sys
out = sys.stdout.buffer
out.write(b"x" * 1_000_000 + b"\\n")
out.write(os.urandom(4096).replace(b"\\n", b"") + b"\\n\\xff\\xfe\\x00garbage\\n")
out.write(b'{"step": 5, "kl": 0.25, "reward": "NaN"}\\n')
out.flush()
"""
    proc, run_dir, _ = run_monitor(tmp_path, child(code))
    assert proc.returncode == 0
    rows = jsonl(run_dir / "run.jsonl")
    assert rows == [{"step": 5, "time": rows[0]["time"], "kl": 0.25, "reward_mean": "NaN"}]
    assert len(proc.stdout) > 1_000_000
    assert (run_dir / "monitor.log").stat().st_size > 1_000_000


def test_child_that_closes_stdout_but_keeps_running(tmp_path):
    code = """
import os, sys, time, json
os.close(1)
time.sleep(0.3)
for s in range(3):
    print(json.dumps({"step": s, "kl": 0.1}), file=sys.stderr, flush=True)
time.sleep(0.3)
sys.exit(5)
"""
    proc, run_dir, took = run_monitor(tmp_path, child(code))
    assert proc.returncode == 5
    assert [r["step"] for r in jsonl(run_dir / "run.jsonl")] == [0, 1, 2]
    assert took >= 0.6


def test_child_killed_by_signal_maps_to_128_plus_n(tmp_path):
    proc, _, _ = run_monitor(tmp_path, child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert proc.returncode == 128 + 9


def test_ctrl_c_is_forwarded_to_the_child(tmp_path):
    run_dir = tmp_path / "run"
    code = """
import json, sys, time
print(json.dumps({"step": 0, "kl": 0.1}), flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("child got SIGINT", flush=True)
    sys.exit(130)
"""
    mon = subprocess.Popen(MONITOR + ["--run-dir", str(run_dir), "--", *child(code)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    wait_until(lambda: (run_dir / "run.jsonl").exists() and (run_dir / "run.jsonl").stat().st_size > 0)
    mon.send_signal(signal.SIGINT)
    out, err = mon.communicate(timeout=15)
    assert mon.returncode == 130
    assert b"child got SIGINT" in out
    assert json.loads((run_dir / "status.json").read_text())["stop_reason"] == "signal"


def test_control_stop_and_status(tmp_path):
    run_dir = tmp_path / "run"
    code = """
import json, time
for s in range(10000):
    print(json.dumps({"step": s, "kl": 0.01}), flush=True)
    time.sleep(0.02)
"""
    mon = subprocess.Popen(MONITOR + ["--run-dir", str(run_dir), "--", *child(code)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    status_path = run_dir / "status.json"
    wait_until(lambda: status_path.exists() and json.loads(status_path.read_text())["steps"] > 3)
    status = json.loads(status_path.read_text())
    assert status["state"] == "running" and status["auto_stop"] is True
    assert status["pgid"] == status["child_pid"] and status["monitor_pid"] == mon.pid
    with open(run_dir / "control.jsonl", "a") as fh:
        fh.write(json.dumps({"action": "stop", "by": "test"}) + "\n")
    mon.wait(timeout=15)
    assert mon.returncode == 3
    status = json.loads(status_path.read_text())
    assert (status["state"], status["stop_reason"], status["exit_code"]) == ("stopped", "user", 3)
    assert not pid_alive(status["child_pid"])


def test_no_auto_stop_only_alerts(tmp_path):
    code = 'import json\nfor s in range(10): print(json.dumps({"step": s, "kl": 0.9}))'
    proc, run_dir, _ = run_monitor(tmp_path, child(code), "--no-auto-stop")
    assert proc.returncode == 0
    assert [r["step"] for r in jsonl(run_dir / "run.jsonl")] == list(range(10))
    alerts = jsonl(run_dir / "alerts.jsonl")
    assert [(a["rule"], a["action"], a["step"]) for a in alerts] == [("kl_spike", "stop", 4)]


def test_unwritable_run_dir_never_kills_the_trainer(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    code = 'import json\nfor s in range(3): print(json.dumps({"step": s, "kl": 0.1}))\nraise SystemExit(4)'
    proc = subprocess.run(MONITOR + ["--run-dir", str(blocker / "run"), "--", *child(code)],
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 4
    assert proc.stdout.count(b'"kl"') == 3
    assert b"cannot create run dir" in proc.stderr


def test_bad_rules_file_is_a_usage_error(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - id: x\n    metric: kl\n    condition: {kind: nope}\n")
    proc, _, _ = run_monitor(tmp_path, child("pass"), "--rules", str(rules))
    assert proc.returncode == 2
    assert f"{rules}:4:23: condition.kind must be one of" in proc.stderr.decode()


def test_stdin_mode_and_replay_equals_live(tmp_path):
    lines = []
    for s in range(40):
        kl = 0.5 if 10 <= s < 16 else 0.05
        gn = 30.0 if 25 <= s < 29 else 1.0 + 0.01 * (s % 3)
        lines.append(json.dumps({"step": s, "train/kl": kl, "grad_norm": gn,
                                 "ppo/policy/clipfrac": 0.5 if s >= 33 else 0.1}))
    data = ("\n".join(lines) + "\n").encode()
    run_dir = tmp_path / "run"
    proc = subprocess.run(MONITOR + ["--run-dir", str(run_dir), "--no-auto-stop", "-"], input=data,
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0
    assert proc.stdout == data  # passthrough unchanged
    live = [(a["event"], a["step"], a["rule"], a["metric"]) for a in jsonl(run_dir / "alerts.jsonl")]
    assert ("fire", 14, "kl_spike", "kl") in live
    assert ("fire", 27, "grad_norm_spike", "grad_norm") in live
    assert ("fire", 37, "clip_frac_high", "clip_frac") in live
    from rldk_engine.ingest.readers import read_run

    offline = [(a.event, a.step, a.rule, a.metric) for a in replay(read_run(run_dir / "run.jsonl"), "ppo")]
    assert offline == live


def test_stdin_mode_stop_rule_exits_3(tmp_path):
    data = "".join(json.dumps({"step": s, "kl": 0.9}) + "\n" for s in range(10)).encode()
    run_dir = tmp_path / "run"
    proc = subprocess.run(MONITOR + ["--run-dir", str(run_dir), "-"], input=data,
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 3
    assert json.loads((run_dir / "status.json").read_text())["stop_step"] == 4


def test_follow_survives_truncation_and_rotation(tmp_path):
    log = tmp_path / "train.log"
    run_dir = tmp_path / "run"
    log.write_text("".join(json.dumps({"step": s, "kl": 0.01}) + "\n" for s in range(3)))
    mon = subprocess.Popen(MONITOR + ["--run-dir", str(run_dir), "--follow", str(log)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    rows = lambda: jsonl(run_dir / "run.jsonl") if (run_dir / "run.jsonl").exists() else []  # noqa: E731
    wait_until(lambda: len(rows()) == 3)
    log.write_text(json.dumps({"step": 10, "kl": 0.02}) + "\n")  # truncate + rewrite
    wait_until(lambda: rows()[-1]["step"] == 10)
    log.rename(tmp_path / "train.log.1")  # rotate
    with open(tmp_path / "train.log.1", "a") as fh:  # late lines in the old file still count
        fh.write(json.dumps({"step": 11, "kl": 0.02}) + "\n")
    time.sleep(0.2)
    log.write_text(json.dumps({"step": 20, "kl": 0.03}) + "\n")
    wait_until(lambda: rows()[-1]["step"] == 20)
    with open(run_dir / "control.jsonl", "a") as fh:
        fh.write('{"action": "stop", "by": "test"}\n')
    mon.wait(timeout=15)
    assert mon.returncode == 0
    assert [r["step"] for r in rows()] == [0, 1, 2, 10, 11, 20]


# ----------------------------------------------------------------------------- control channel


def test_control_auto_stop_written_as_a_string_false_turns_it_off(tmp_path):
    from rldk_engine.live.monitor import Monitor, MonitorConfig

    monitor = Monitor(MonitorConfig(rules=[], run_dir=tmp_path, stdin=True, quiet=True,
                                    passthrough=False))
    control = tmp_path / "control.jsonl"
    with open(control, "a") as fh:
        fh.write('{"action": "auto_stop", "enabled": "false"}\n')
    monitor.poll_control()
    assert monitor.auto_stop is False
    with open(control, "a") as fh:
        fh.write('{"action": "auto_stop", "enabled": true}\n')
    monitor.poll_control()
    assert monitor.auto_stop is True
