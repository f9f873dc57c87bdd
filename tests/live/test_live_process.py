"""The trainer's whole tree is guarded (issue 16 item 3) and the stop escalation is
configurable (issue 13 item 3, for issue 18's --stop-signal/--grace): real processes.

Every case checks that no process the trainer reported outlives the monitor, and that
status.json says how the run ended."""

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
from helpers import MONITOR_FAST, REPO, assert_all_gone, reported_pids, wait_until

from rldk_engine.live.process import ProcessGroup, stop_plan

PY = sys.executable
LINUX = sys.platform.startswith("linux")

PRELUDE = """
import json, os, signal, subprocess, sys, time
def metric(step, kl=0.05):
    print(json.dumps({"step": step, "kl": kl, "reward_mean": 0.5}), flush=True)
def report_pid(pid):
    print("pid", pid, flush=True)
report_pid(os.getpid())
STUBBORN = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(60)"
def escaped_child():
    p = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True)
    report_pid(p.pid)
    return p
DAEMON = '''
import os, sys, time, signal
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        os.write(w, str(os.getpid()).encode()); os.close(w)
        time.sleep(60)
    os._exit(0)
os.close(w)
print("pid", os.read(r, 32).decode(), flush=True)
'''
def daemon():
    subprocess.run([sys.executable, "-c", DAEMON], stdout=sys.stdout)
"""


def child(body: str) -> list[str]:
    return [PY, "-c", PRELUDE + textwrap.dedent(body)]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def pids_so_far(path: Path) -> list[int]:
    try:
        return reported_pids(path.read_bytes())
    except OSError:
        return []


# ----------------------------------------------------------------------------- escaped descendants


@pytest.mark.skipif(not LINUX, reason="descendant tracking walks /proc")
def test_guardrail_stop_also_stops_a_setsid_grandchild(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
        escaped_child()
        time.sleep(0.6)  # long enough for the monitor to see the tree once
        for s in range(40):
            metric(s, kl=0.9)
            time.sleep(0.02)
        time.sleep(60)
        """)], capture_output=True, timeout=60, cwd=REPO)
    assert proc.returncode == 3, proc.stderr.decode()
    assert status(run_dir)["stop_rule"] == "kl_spike"
    assert_all_gone(reported_pids(proc.stdout), 2)


@pytest.mark.skipif(not LINUX, reason="the child subreaper is Linux only")
def test_double_forked_daemon_is_stopped_when_the_trainer_exits(tmp_path):
    """A daemon that setsid()s and double-forks at once (never seen under its parent) is
    re-parented to the monitor (child subreaper) and stopped after a normal exit."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
        daemon()
        for s in range(5):
            metric(s)
        sys.exit(0)
        """)], capture_output=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "still running; stopping them" in proc.stderr.decode()
    assert status(run_dir)["state"] == "exited"
    assert_all_gone(reported_pids(proc.stdout), 2)


# ----------------------------------------------------------------------------- signals to the monitor


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_or_sigterm_to_the_monitor_stops_the_trainer_with_a_final_status(tmp_path, sig):
    """An SSH session dropped without tmux (SIGHUP) or a shutdown (SIGTERM): the trainer's
    tree is stopped with the full escalation, even a part that ignores every signal."""
    run_dir = tmp_path / "run"
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        mon = subprocess.Popen([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            escaped_child()
            for s in range(1000):
                metric(s)
                time.sleep(0.05)
            """)], stdout=fh, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_until(lambda: len(pids_so_far(out)) == 2 and (run_dir / "run.jsonl").exists()
                 and (run_dir / "run.jsonl").stat().st_size > 0)
        time.sleep(0.5)  # the tree walk has seen the escaped child
        mon.send_signal(sig)
        mon.communicate(timeout=20)
    finally:
        if mon.poll() is None:
            mon.kill()
    st = status(run_dir)
    assert st["state"] == "stopped" and st["stop_reason"] == "signal"
    assert st["exit_code"] == 128 + signal.SIGKILL  # it ignored INT and TERM
    assert_all_gone(pids_so_far(out), 2)


@pytest.mark.skipif(not LINUX, reason="parent-death signal and /proc are Linux only")
def test_sigkilled_monitor_leaves_no_unguarded_trainer_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        mon = subprocess.Popen([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
            escaped_child()
            for s in range(1000):
                metric(s)
                time.sleep(0.05)
            """)], stdout=fh, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_until(lambda: len(pids_so_far(out)) == 2 and (run_dir / "status.json").exists()
                 and status(run_dir).get("steps", 0) >= 3)
        time.sleep(1.5)  # the tree walk (every TREE_POLL) told the watchdog about the escaped child
        mon.kill()
        mon.communicate(timeout=20)
    finally:
        if mon.poll() is None:
            mon.kill()
    assert_all_gone(pids_so_far(out), 2)
    wait_until(lambda: status(run_dir)["state"] == "lost", 10)
    st = status(run_dir)
    assert st["stop_reason"] == "monitor_lost"
    assert f"monitor pid {mon.pid} ended without cleaning up" in st["notice"]
    from rldk_engine.live.protocol import describe_state

    assert describe_state(st).startswith("monitor lost")


def test_ctrl_c_storm_during_clean_up_orphans_nothing(tmp_path):
    """Signals while the monitor stops a stubborn tree cannot cut its clean-up short."""
    run_dir = tmp_path / "run"
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        mon = subprocess.Popen([*MONITOR_FAST, "--grace-int", "0.5", "--grace-term", "0.5", "--run-dir",
                                str(run_dir), "--", *child("""
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            report_pid(subprocess.Popen([sys.executable, "-c", STUBBORN]).pid)  # in the group
            escaped_child()
            time.sleep(0.6)
            for s in range(40):
                metric(s, kl=0.9)
                time.sleep(0.02)
            time.sleep(60)
            """)], stdout=fh, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_until(lambda: (run_dir / "status.json").exists() and status(run_dir)["state"] == "stopping")
        for _ in range(6):
            mon.send_signal(signal.SIGINT)
            time.sleep(0.1)
        mon.communicate(timeout=30)
    finally:
        if mon.poll() is None:
            mon.kill()
    assert mon.returncode == 3
    st = status(run_dir)
    assert st["state"] == "stopped" and st["stop_reason"] == "guardrail"
    assert_all_gone(pids_so_far(out), 3)


# ----------------------------------------------------------------------------- the escalation plan


def test_stop_plan_first_signal_and_grace_are_configurable():
    assert stop_plan() == [(signal.SIGINT, 0.5), (signal.SIGTERM, 0.5), (signal.SIGKILL, 2.0)]
    assert stop_plan(signal.SIGUSR1, 30, 1) == [(signal.SIGUSR1, 30), (signal.SIGTERM, 1), (signal.SIGKILL, 2.0)]
    assert stop_plan(signal.SIGTERM, 3) == [(signal.SIGTERM, 3), (signal.SIGKILL, 2.0)]


def test_process_group_sends_the_checkpoint_signal_first(tmp_path):
    saved = tmp_path / "saved"
    group = ProcessGroup.spawn([PY, "-c", textwrap.dedent(f"""
        import signal, sys, time
        def save(*_):
            open({str(saved)!r}, "w").write("checkpoint")
            sys.exit(0)
        signal.signal(signal.SIGUSR1, save)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
        """)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert group.proc.stdout.readline() == b"ready\n"
        sent: list[int] = []
        assert group.stop(first_signal=signal.SIGUSR1, grace=10, on_signal=sent.append)
        assert sent == [signal.SIGUSR1] and saved.read_text() == "checkpoint"
        assert group.wait() == 0
    finally:
        group.send(signal.SIGKILL)
        group.close()


def test_a_recycled_pid_is_forgotten_never_claimed():
    """Never a wrong kill: a descendant is remembered with its start time; when its pid
    comes back as another process (another parent, another start) it is not ours."""
    from rldk_engine.live.process import ProcInfo

    group = ProcessGroup.spawn([PY, "-c", "import time; time.sleep(30)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        me, leader, start = os.getpid(), group.pid, group.start or 0
        worker, daemon = 4_000_001, 4_000_002  # beyond pid_max: never real processes
        table = {leader: ProcInfo(me, leader, "S", start),
                 worker: ProcInfo(leader, leader, "S", start + 1),
                 daemon: ProcInfo(worker, daemon, "S", start + 2)}  # setsid: its own group
        group.refresh(table)
        assert group.known == {worker: start + 1, daemon: start + 2}
        # the worker exits, the daemon is re-parented to init, and the worker's pid is
        # reused by an unrelated process
        table = {leader: ProcInfo(me, leader, "S", start),
                 worker: ProcInfo(1, worker, "S", start + 99),
                 daemon: ProcInfo(1, daemon, "S", start + 2)}
        assert group.escaped(table) == [daemon]
        assert group.known == {daemon: start + 2}
    finally:
        group.send(signal.SIGKILL)
        group.wait()
        group.close()
