"""Fault injection for `rldk-engine monitor` with REAL child processes (issue 9, item 3).

Every case checks three things: the exit code, that no process the child reported
(grandchildren included) outlives the monitor, and that every metric line written before
the fault is in run.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from helpers import MONITOR_FAST, REPO, pid_gone, reported_pids, wait_until

PY = sys.executable

# children print "pid N" for themselves and every process they start
PRELUDE = """
import json, os, signal, subprocess, sys, time
def metric(step, kl=0.05, stream=sys.stdout):
    stream.write(json.dumps({"step": step, "kl": kl, "reward_mean": 0.5}) + "\\n"); stream.flush()
def report_pid(pid):
    print("pid", pid, flush=True)
report_pid(os.getpid())
"""
SLEEPER = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def child(body: str) -> list[str]:
    return [PY, "-c", PRELUDE + textwrap.dedent(body)]


def monitor(tmp_path: Path, cmd: list[str], *opts: str, timeout: float = 30, run_dir: Path | None = None):
    run_dir = run_dir or tmp_path / "run"
    proc = subprocess.run([*MONITOR_FAST, "--run-dir", str(run_dir), *opts, "--", *cmd],
                          capture_output=True, timeout=timeout, cwd=REPO)
    return proc, run_dir


def assert_no_orphans(stdout: bytes, expected: int) -> None:
    pids = reported_pids(stdout)
    assert len(pids) == expected, f"child reported {pids}"
    alive = [p for p in pids if not pid_gone(p)]
    for p in alive:  # do not leave them behind for the rest of the suite
        os.kill(p, signal.SIGKILL)
    assert not alive, f"orphans left running: {alive}"


def steps_in(run_dir: Path) -> list[int]:
    path = run_dir / "run.jsonl"
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if x.strip()]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


# ----------------------------------------------------------------------------- the child dies


def test_child_sigkilled_mid_run_exits_137_and_its_workers_are_stopped(tmp_path):
    proc, run_dir = monitor(tmp_path, child(f"""
        worker = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}])
        report_pid(worker.pid)
        for s in range(30):
            metric(s)
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
        """))
    assert proc.returncode == 137, proc.stderr.decode()
    assert steps_in(run_dir) == list(range(30))
    assert_no_orphans(proc.stdout, 2)
    st = status(run_dir)
    assert (st["state"], st["exit_code"]) == ("exited", 137)
    assert any("still running" in e for e in st["errors"])  # the leftover worker was reported


def test_child_killed_from_outside_exits_137(tmp_path):
    run_dir = tmp_path / "run"
    mon = subprocess.Popen([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
        for s in range(10):
            metric(s)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    wait_until(lambda: (run_dir / "run.jsonl").exists() and len(steps_in(run_dir)) == 10, timeout=15)
    os.kill(status(run_dir)["child_pid"], signal.SIGKILL)
    out, err = mon.communicate(timeout=15)
    assert mon.returncode == 137, err.decode()
    assert steps_in(run_dir) == list(range(10))
    assert_no_orphans(out, 1)


@pytest.mark.parametrize("how", ["signal", "ctypes"])
def test_segfault_exits_139(tmp_path, how):
    crash = ("os.kill(os.getpid(), signal.SIGSEGV)" if how == "signal"
             else "import ctypes; ctypes.string_at(0)")
    proc, run_dir = monitor(tmp_path, child(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test dir
        for s in range(12):
            metric(s)
        {crash}
        """))
    assert proc.returncode == 139, proc.stderr.decode()
    assert steps_in(run_dir) == list(range(12))
    assert_no_orphans(proc.stdout, 1)


def test_child_exits_mid_line_last_line_is_kept(tmp_path):
    proc, run_dir = monitor(tmp_path, child("""
        for s in range(5):
            metric(s)
        sys.stdout.write(json.dumps({"step": 5, "kl": 0.07}))  # no newline: cut mid-write
        sys.stdout.flush()
        os._exit(4)
        """))
    assert proc.returncode == 4, proc.stderr.decode()
    assert steps_in(run_dir) == list(range(6))
    assert_no_orphans(proc.stdout, 1)


# ----------------------------------------------------------------------------- odd streams


def test_child_closes_stdout_and_keeps_running(tmp_path):
    proc, run_dir = monitor(tmp_path, child("""
        for s in range(5):
            metric(s)
        sys.stdout.close(); os.close(1)
        time.sleep(0.8)  # the monitor must not treat a closed stdout as the end of the run
        for s in range(5, 10):
            metric(s, stream=sys.stderr)
        time.sleep(0.3)
        sys.exit(5)
        """))
    assert proc.returncode == 5, proc.stderr.decode()
    assert steps_in(run_dir) == list(range(10))
    assert status(run_dir)["exit_code"] == 5
    assert_no_orphans(proc.stdout, 1)


def test_stderr_flood_loses_no_metric_and_does_not_deadlock(tmp_path):
    proc, run_dir = monitor(tmp_path, child("""
        err = sys.stderr
        for i in range(200_000):
            err.write(f"warning: noisy library line {i}\\n")
            if i % 2000 == 0:
                metric(i // 2000)
        err.flush()
        """), "--quiet", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:].decode()
    assert steps_in(run_dir) == list(range(100))
    assert proc.stderr.count(b"noisy library line") == 200_000  # passed through, in full
    assert_no_orphans(proc.stdout, 1)


def test_guardrail_stop_kills_grandchildren_that_ignore_signals(tmp_path):
    proc, run_dir = monitor(tmp_path, child(f"""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _ in range(2):
            report_pid(subprocess.Popen([sys.executable, "-c", {SLEEPER!r}]).pid)
        pid = os.fork()
        if pid == 0:  # a forked worker that starts its own child too
            report_pid(subprocess.Popen([sys.executable, "-c", {SLEEPER!r}]).pid)
            time.sleep(60); os._exit(0)
        report_pid(pid)
        time.sleep(0.5)
        for s in range(12):
            metric(s, kl=0.05 if s < 3 else 0.9)
        time.sleep(60)
        """), timeout=30)
    assert proc.returncode == 3, proc.stderr.decode()
    st = status(run_dir)
    assert (st["stop_reason"], st["stop_rule"]) == ("guardrail", "kl_spike")
    assert steps_in(run_dir)[:8] == list(range(8))  # everything up to the stop step
    assert_no_orphans(proc.stdout, 5)


# ----------------------------------------------------------------------------- artifacts fail

TRAINER_TO_THE_END = """
for s in range({n}):
    metric(s)
print("trainer finished", flush=True)
sys.exit(7)
"""


def assert_trainer_finished(proc, n_expected_exit: int = 7) -> None:
    assert proc.returncode == n_expected_exit, proc.stderr.decode()
    assert b"trainer finished" in proc.stdout  # it ran to its natural end
    assert_no_orphans(proc.stdout, 1)


def test_disk_full_on_run_jsonl_keeps_every_whole_line_that_fits(tmp_path):
    """ENOSPC on every write (an ArtifactFile on /dev/full): reported once, nothing torn."""
    from rldk_engine.live.protocol import ArtifactFile

    messages: list[str] = []
    art = ArtifactFile(tmp_path / "run.jsonl", messages.append)
    assert art.fh is not None
    art.fh.close()
    art.fh = open("/dev/full", "ab", buffering=0)  # every write fails with ENOSPC
    for step in range(200):
        art.add(b'{"step": %d}\n' % step)
        art.flush()
    art.close()
    assert len(messages) == 1 and "run.jsonl" in messages[0] and "No space left" in messages[0]
    assert art.size == 0


def test_symlinked_run_jsonl_is_refused_and_the_trainer_keeps_running(tmp_path):
    """Issue 16 item 4: a symlink planted at an artifact path is never written through."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (run_dir / "run.jsonl").symlink_to(victim)
    proc, _ = monitor(tmp_path, child(TRAINER_TO_THE_END.format(n=200)))
    assert_trainer_finished(proc)
    stderr = proc.stderr.decode()
    assert "run.jsonl" in stderr and "symlink" in stderr
    assert victim.read_bytes() == b"precious\n"
    errors = status(run_dir)["errors"]
    assert any("run.jsonl" in e and "symlink" in e for e in errors)
    assert status(run_dir)["steps"] == 200  # the rules still saw every step


def test_artifact_that_cannot_be_opened_is_reported(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "alerts.jsonl").mkdir(parents=True)  # a pre-existing thing we cannot append to
    proc, _ = monitor(tmp_path, child(TRAINER_TO_THE_END.format(n=20)))
    assert_trainer_finished(proc)
    assert "alerts.jsonl" in proc.stderr.decode()
    assert any("alerts.jsonl" in e for e in status(run_dir)["errors"])
    assert steps_in(run_dir) == list(range(20))


@pytest.fixture
def tiny_tmpfs():
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a 64k tmpfs needs root and mount(8)")
    mnt = Path(tempfile.mkdtemp(prefix="rldk-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    mnt.rmdir()


def test_real_disk_full_on_tmpfs(tmp_path, tiny_tmpfs):
    run_dir = tiny_tmpfs / "run"
    proc, _ = monitor(tmp_path, child(TRAINER_TO_THE_END.format(n=3000)), run_dir=run_dir)
    assert_trainer_finished(proc)
    assert "No space left on device" in proc.stderr.decode()
    st = status(run_dir)  # written in place once the disk refuses new files
    assert st["exit_code"] == 7 and st["steps"] == 3000
    assert any("No space left" in e for e in st["errors"])
    steps = steps_in(run_dir)
    assert steps == list(range(len(steps))) and len(steps) > 100  # a clean prefix, then full


def make_read_only(run_dir: Path) -> str:
    """Refuse new writes under run_dir from now on. chmod does not stop root, so as root
    a read-only bind mount goes over it (files opened before stay writable, as with chmod
    for a normal user). Returns what status.json can still show."""
    if os.geteuid() != 0:
        os.chmod(run_dir, 0o555)
        return "in place"  # status.json itself is still writable: the fallback rewrites it
    for args in (["mount", "--bind", str(run_dir), str(run_dir)],
                 ["mount", "-o", "remount,bind,ro", str(run_dir)]):
        done = subprocess.run(args, capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and cannot make a read-only bind mount: {done.stderr.decode().strip()}")
    return "nothing"  # a read-only mount refuses status.json too: stderr is the only channel


def undo_read_only(run_dir: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", str(run_dir)], capture_output=True)
    else:
        os.chmod(run_dir, 0o755)


def test_run_dir_becomes_unwritable_mid_run(tmp_path):
    run_dir = tmp_path / "run"
    go = tmp_path / "go"
    mon = subprocess.Popen([*MONITOR_FAST, "--run-dir", str(run_dir), "--", *child("""
        for s in range(10):
            metric(s)
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.02)
        for s in range(10, 20):
            metric(s)
        time.sleep(0.7)  # past the status.json rate limit
        print("trainer finished", flush=True)
        sys.exit(7)
        """), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_for_steps(run_dir, 10)
        status_channel = make_read_only(run_dir)
        go.touch()
        out, err = mon.communicate(timeout=20)
    finally:
        if mon.poll() is None:
            mon.kill()
        undo_read_only(run_dir)
    assert mon.returncode == 7, err.decode()
    assert b"trainer finished" in out
    assert "cannot write" in err.decode() and "status.json" in err.decode()
    assert steps_in(run_dir) == list(range(20))  # files opened before keep working
    if status_channel == "in place":
        st = status(run_dir)
        assert st["exit_code"] == 7 and st["steps"] == 20
        assert any("status.json" in e for e in st["errors"])
    assert_no_orphans(out, 1)


# ----------------------------------------------------------------------------- --follow


def wait_for_steps(run_dir: Path, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "run.jsonl").exists() and len(steps_in(run_dir)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"monitor saw {len(steps_in(run_dir))} steps, expected {n}")


def append_steps(path: Path, steps: range, mode: str = "a") -> None:
    with open(path, mode) as fh:
        for s in steps:
            fh.write(json.dumps({"step": s, "kl": 0.05}) + "\n")


def test_follow_across_truncation_and_rotation(tmp_path):
    log = tmp_path / "train.log"
    run_dir = tmp_path / "run"
    append_steps(log, range(0, 20), "w")
    mon = subprocess.Popen([*MONITOR_FAST, "--run-dir", str(run_dir), "--follow", str(log), "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    try:
        wait_for_steps(run_dir, 20)
        append_steps(log, range(20, 30))
        wait_for_steps(run_dir, 30)
        # copytruncate: the file is emptied in place and the trainer goes on writing
        log.write_text("")
        time.sleep(0.4)
        append_steps(log, range(30, 45))
        wait_for_steps(run_dir, 45)
        # rename-and-recreate: the old file ends with a line the trainer never finished
        with open(log, "a") as fh:
            fh.write(json.dumps({"step": 45, "kl": 0.05}))
        time.sleep(0.3)
        log.rename(tmp_path / "train.log.1")
        append_steps(log, range(46, 60), "w")
        wait_for_steps(run_dir, 60)
        with open(run_dir / "control.jsonl", "a") as fh:
            fh.write(json.dumps({"action": "stop", "by": "test"}) + "\n")
        _, err = mon.communicate(timeout=10)
    finally:
        if mon.poll() is None:
            mon.kill()
    assert mon.returncode == 0, err.decode()
    assert steps_in(run_dir) == list(range(60))  # nothing lost, nothing twice
