"""`rldk monitor` (the original kit's command): --stream/--once, --rules (the original's
format or rldk's), --preset, --pid (a process rldk did not start), --alerts, --report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO

RULES_YAML = textwrap.dedent('''\
    # the original kit's rules.yaml
    rules:
      - id: stop_on_high_kl
        where: name == "kl"
        condition: value > 0.35
        window:
          size: 5
          kind: consecutive
        cooldown_steps: 5
        grace_steps: 5
        actions:
          - warn:
              msg: "KL {value:.3f} exceeded at step {step}"
          - stop:
              msg: "Stopping run due to KL {value:.3f}"
''')

# A streaming trainer in the original's long-format event schema (our own loop): KL rises
# by 0.02 per step from 0.05, so kl > 0.35 from step 16; the 5th consecutive is step 20.
LOOP = textwrap.dedent('''\
    import json, os, signal, subprocess, sys, time
    out, mode = sys.argv[1], sys.argv[2]
    marker = out + ".signals"
    def note(signum, frame):
        with open(marker, "a") as fh:
            fh.write(signal.Signals(signum).name + "\\n")
        if mode == "normal":
            raise KeyboardInterrupt
    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    if mode == "normal":
        # a worker in the trainer's group (a dataloader, a reward server)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    steps = 40 if mode != "healthy" else 12
    if mode == "healthy":
        time.sleep(2.0)  # the monitor attaches first (as `make monitor-demo` waits 1 s)
    try:
        with open(out, "a") as fh:
            for step in range(1, steps + 1):
                kl = 0.05 + 0.02 * step if mode != "healthy" else 0.05
                for name, value in (("kl", kl), ("reward", 0.4 - 0.01 * step)):
                    fh.write(json.dumps({"time": "2025-01-01T00:00:00Z", "step": step, "name": name,
                                         "value": value, "meta": {"run": "t"}}) + "\\n")
                fh.flush()
                time.sleep(0.05)
            if mode != "healthy":
                time.sleep(60)
    except KeyboardInterrupt:
        with open(marker, "a") as fh:
            fh.write("saved checkpoint\\n")
        sys.exit(130)
''')


def _rldk(*args, timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", "rldk_engine.cli.compat", "monitor", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


def _events(path: Path, kl_values):
    path.write_text("".join(json.dumps({"step": i + 1, "name": "kl", "value": v}) + "\n"
                            for i, v in enumerate(kl_values)))
    return path


@pytest.fixture
def rules_file(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(RULES_YAML)
    return p


def test_once_with_the_original_rules_file(tmp_path, rules_file):
    stream = _events(tmp_path / "run.jsonl", [0.1, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5])
    proc = _rldk("--once", str(stream), "--rules", str(rules_file), "--alerts", str(tmp_path / "a.jsonl"),
                 "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 3, proc.stderr
    alerts = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(a["rule"], a["step"], a["action"], a["severity"]) for a in alerts] == [
        ("stop_on_high_kl", 6, "stop", "critical")]  # 5 consecutive > 0.35: steps 2..6
    assert alerts[0]["message"] == "Stopping run due to KL 0.500" and alerts[0]["rule_id"] == "stop_on_high_kl"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outcome"]["result"] == "stopped" and report["outcome"]["exit_code"] == 3
    assert report["rules"]["stop_on_high_kl"]["activations"] == 1
    assert report["steps"] == 6 and report["last_step"] == 6 and len(report["alerts"]) == 1


def test_healthy_stream_exits_0_and_reports_no_alerts(tmp_path, rules_file):
    stream = _events(tmp_path / "run.jsonl", [0.1] * 20)
    proc = _rldk("--once", str(stream), "--rules", str(rules_file), "--alerts", str(tmp_path / "a.jsonl"),
                 "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["alerts"] == [] and report["steps"] == 20 and report["outcome"]["result"] == "stream_ended"


def test_pid_group_leader_is_stopped_with_its_group(tmp_path, rules_file):
    stream = tmp_path / "artifacts" / "run.jsonl"
    stream.parent.mkdir()
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(stream), "normal"], start_new_session=True)
    try:
        proc = _rldk("--stream", str(stream), "--rules", str(rules_file), "--pid", str(loop.pid), "--grace", "10",
                     "--alerts", str(tmp_path / "alerts.jsonl"), "--report", str(tmp_path / "report.json"))
        assert proc.returncode == 3, proc.stderr
        assert loop.wait(timeout=10) == 130  # it saved on SIGINT and exited
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["outcome"]["stop_step"] == 20 and report["outcome"]["signals_sent"] == ["SIGINT"]
        assert report["outcome"]["process_gone"] is True
        assert (Path(str(stream) + ".signals")).read_text().splitlines() == ["SIGINT", "saved checkpoint"]
        # its worker (same group) is gone too; zombies do not count (when this pytest process
        # became a child subreaper for an in-process monitor, orphans are re-parented to it)
        from rldk_engine.live.process import group_alive

        deadline = time.monotonic() + 5
        while group_alive(loop.pid):
            if time.monotonic() > deadline:
                pytest.fail("the trainer's group outlived the stop")
            time.sleep(0.05)
    finally:
        _kill_group(loop)


def test_pid_that_ignores_signals_gets_sigkill(tmp_path, rules_file):
    stream = tmp_path / "run.jsonl"
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(stream), "stubborn"], start_new_session=True)
    try:
        proc = _rldk("--stream", str(stream), "--rules", str(rules_file), "--pid", str(loop.pid),
                     "--grace", "0.3", "--kill-timeout-sec", "0.3", "--report", str(tmp_path / "r.json"),
                     "--alerts", str(tmp_path / "a.jsonl"))
        assert proc.returncode == 3, proc.stderr
        assert loop.wait(timeout=10) == -signal.SIGKILL
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["outcome"]["signals_sent"] == ["SIGINT", "SIGTERM", "SIGKILL"]
    finally:
        _kill_group(loop)


def test_pid_in_our_own_group_is_stopped_alone(tmp_path, rules_file):
    """A trainer started with `&` from a script shares the script's group: only it is stopped."""
    stream = tmp_path / "run.jsonl"
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(stream), "plain"])  # pytest's group
    try:
        proc = _rldk("--stream", str(stream), "--rules", str(rules_file), "--pid", str(loop.pid),
                     "--grace", "0.3", "--kill-timeout-sec", "0.3", "--alerts", str(tmp_path / "a.jsonl"))
        assert proc.returncode == 3, proc.stderr
        assert loop.wait(timeout=10) != 0
    finally:
        if loop.poll() is None:
            loop.kill()


def test_process_exiting_on_its_own_ends_the_watch_with_0(tmp_path, rules_file):
    stream = tmp_path / "run.jsonl"
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(stream), "healthy"], start_new_session=True)
    try:
        proc = _rldk("--stream", str(stream), "--rules", str(rules_file), "--pid", str(loop.pid),
                     "--report", str(tmp_path / "r.json"), "--alerts", str(tmp_path / "a.jsonl"))
        assert proc.returncode == 0, proc.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["outcome"]["result"] == "process_exited" and report["last_step"] == 12
    finally:
        _kill_group(loop)


def test_preset_and_wide_rows(tmp_path):
    stream = tmp_path / "run.jsonl"
    stream.write_text("".join(json.dumps({"step": s, "objective/kl_coef": 0.1, "kl": 0.5}) + "\n" for s in range(10)))
    proc = _rldk("--once", str(stream), "--preset", "ppo", "--alerts", str(tmp_path / "a.jsonl"))
    assert proc.returncode == 3, proc.stderr
    assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])["rule"] == "kl_spike"


def test_rldk_rules_file_is_accepted_too(tmp_path):
    rules = tmp_path / "mine.yaml"
    rules.write_text("rules:\n  - id: r\n    metric: reward_mean\n    condition: {kind: threshold, op: '<', value: 0}\n"
                     "    action: stop\n")
    stream = tmp_path / "run.jsonl"
    stream.write_text(json.dumps({"step": 1, "name": "reward", "value": -1}) + "\n")
    proc = _rldk("--once", str(stream), "--rules", str(rules), "--alerts", str(tmp_path / "a.jsonl"))
    assert proc.returncode == 3, proc.stderr


@pytest.mark.parametrize("snippet,line,reason", [
    ('    where: tags.env == "prod"\n', 3, "where 'tags.env == \"prod\"' is not supported"),
    ("    condition: count(value > 0) > 3\n", 4, "condition 'count(value > 0) > 3' is not supported"),
    ("    actions:\n      - shell:\n          cmd: rm -rf /\n", 6, "action 'shell' is refused"),
    ("    window:\n      size: 3\n      aggregator: mean\n", 7, "window.aggregator is ambiguous"),
    ("    severity: high\n", 5, "unknown key 'severity'"),
])
def test_unclear_rules_are_refused_with_their_line(tmp_path, snippet, line, reason):
    base = 'rules:\n  - id: r\n    where: name == "kl"\n    condition: value > 1\n'
    if snippet.startswith("    where:"):
        text = base.replace('    where: name == "kl"\n', snippet)
    elif snippet.startswith("    condition:"):
        text = base.replace("    condition: value > 1\n", snippet)
    else:
        text = base + snippet
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    stream = _events(tmp_path / "run.jsonl", [0.1])
    proc = _rldk("--once", str(stream), "--rules", str(rules))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{rules}:{line}: " in proc.stderr and reason in proc.stderr, proc.stderr


def test_the_original_rule_sets_are_named_not_guessed(tmp_path):
    stream = _events(tmp_path / "run.jsonl", [0.1])
    proc = _rldk("--once", str(stream), "--rules", "ppo_safe")
    assert proc.returncode == 2 and "ppo_safe: no such rules file" in proc.stderr


def test_bad_pid_is_usage_error(tmp_path, rules_file):
    stream = _events(tmp_path / "run.jsonl", [0.1])
    proc = _rldk("--stream", str(stream), "--rules", str(rules_file), "--pid", "999999999")
    assert proc.returncode == 2 and "no such process" in proc.stderr


def test_kit_engine_windows():
    from rldk_engine.live.kit_rules import KitEngine, parse_kit_rules

    rules = parse_kit_rules(textwrap.dedent('''\
        rules:
          - id: stall
            where: name in ("kl_coef", "beta")
            condition: max(value) - min(value) < 0.003
            window: {size: 4, kind: rolling}
            grace_steps: 6
            cooldown_steps: 3
            actions: [warn]
          - id: low_entropy
            where: name == 'entropy'
            condition: mean(value) < 1.0
            window: {size: 3, kind: rolling}
    '''))
    engine = KitEngine(rules, clock=lambda: 0.0)
    fired = []
    for step in range(1, 13):
        fired += [(a.rule, a.step) for a in engine.observe(step, {"beta": 0.1, "entropy": 3.0 if step < 8 else 0.1})]
    # stall: window full at 4, grace 6 -> fires at 6, cooldown 3 -> again at 10
    # low_entropy: mean of (3, 3, 0.1) = 2.03 at 8, (3, .1, .1) = 1.07 at 9, (.1, .1, .1) at 10
    assert fired == [("stall", 6), ("stall", 10), ("low_entropy", 10), ("low_entropy", 11), ("low_entropy", 12)]


def test_message_template_never_reaches_attributes():
    from rldk_engine.live.kit_rules import format_message

    assert format_message("KL {value:.3f} at {step} {value.__class__} {other}",
                          {"value": 0.5, "step": 3}) == "KL 0.500 at 3 {value.__class__} {other}"


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def test_stream_defaults_to_rldk_metrics_path_or_stdin(tmp_path, rules_file):
    stream = _events(tmp_path / "run.jsonl", [0.5] * 6)
    env = dict(os.environ, RLDK_METRICS_PATH=str(stream))
    proc = subprocess.run([sys.executable, "-m", "rldk_engine.cli.compat", "monitor", "--rules", str(rules_file),
                           "--alerts", str(tmp_path / "a.jsonl")], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 3, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "rldk_engine.cli.compat", "monitor", "--rules", str(rules_file),
                           "--alerts", str(tmp_path / "b.jsonl")], capture_output=True, text=True, timeout=60,
                          cwd=REPO, input=stream.read_text())
    assert proc.returncode == 3, proc.stderr
