"""The run-directory protocol (rldk_engine.live.protocol) and the one file tailer
(rldk_engine.ingest.tail): flags, atomic writes, symlinks, special files, the lock,
permissions, size-capped reads (issues 13 item 2, 16 items 1 and 4)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MONITOR, REPO

from rldk_engine.ingest.tail import FileTail, NotARegularFile, check_regular
from rldk_engine.live import protocol
from rldk_engine.live.protocol import (
    ArtifactFile,
    ControlChannel,
    RunDirLocked,
    RunDirWriter,
    parse_flag,
    read_status,
    send_control,
    write_atomic,
)

OFF = ["false", "False", " FALSE ", "0", "no", "off", "", False, 0, 0.0, None]
ON = ["true", "1", "yes", "on", True, 1]


# ----------------------------------------------------------------------------- flags


@pytest.mark.parametrize("value", OFF)
def test_parse_flag_off(value):
    assert parse_flag(value) is False


@pytest.mark.parametrize("value", ON)
def test_parse_flag_on(value):
    assert parse_flag(value) is True


def _monitor_for_control(run_dir: Path):
    from rldk_engine.live.monitor import Monitor, MonitorConfig
    from rldk_engine.live.rules import preset_rules

    log = run_dir.parent / "followed.log"
    log.touch()
    return Monitor(MonitorConfig(rules=preset_rules("ppo"), run_dir=run_dir, follow=log,
                                 quiet=True, passthrough=False))


@pytest.mark.parametrize("value", OFF)
def test_auto_stop_off_means_off_in_the_monitor_and_the_hf_callback(tmp_path, value):
    """The same control line turns auto-stop off for both supervisors (the HF callback
    used to read a quoted "false" as on)."""
    run_dir = tmp_path / "run"
    monitor = _monitor_for_control(run_dir)
    try:
        send_control(run_dir, {"action": "auto_stop", "enabled": value})
        monitor.poll_control()
        assert monitor.auto_stop is False
    finally:
        monitor.rundir.close()

    pytest.importorskip("transformers")
    from rldk_engine.integrations.hf import RLDKCallback

    callback = RLDKCallback(preset="ppo", run_dir=tmp_path / "hf")
    callback._handle_command({"action": "auto_stop", "enabled": value}, step=1)
    assert callback.auto_stop is False
    callback._handle_command({"action": "auto_stop", "enabled": "true"}, step=2)
    assert callback.auto_stop is True


def test_tui_client_writes_a_real_boolean(tmp_path):
    from rldk_tui import rundir

    rundir.set_auto_stop(tmp_path, False)
    rundir.request_stop(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / protocol.CONTROL_JSONL).read_text().splitlines()]
    assert lines == [{"action": "auto_stop", "enabled": False}, {"action": "stop", "by": "rldk-tui"}]


def test_tui_uses_the_protocol_names():
    from rldk_tui import rundir

    assert (rundir.RUN_FILE, rundir.ALERTS_FILE, rundir.LOG_FILE, rundir.STATUS_FILE,
            rundir.CONTROL_FILE) == (protocol.RUN_JSONL, protocol.ALERTS_JSONL,
                                     protocol.MONITOR_LOG, protocol.STATUS_JSON,
                                     protocol.CONTROL_JSONL)
    assert rundir.read_status is protocol.read_status


# ----------------------------------------------------------------------------- writing


def test_write_atomic_uses_unpredictable_temp_names_and_never_follows_a_planted_link(tmp_path):
    target = tmp_path / "status.json"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    # the old, predictable temp name: a link planted there must not be written through
    (tmp_path / f".status.json.{os.getpid()}.tmp").symlink_to(victim)
    seen = set()
    original = os.open

    def spy(path, flags, *args):
        if str(path).endswith(".tmp"):
            seen.add(Path(path).name)
            assert flags & os.O_EXCL and flags & os.O_NOFOLLOW
        return original(path, flags, *args)

    os.open = spy
    try:
        for i in range(3):
            write_atomic(target, b'{"n": %d}' % i)
    finally:
        os.open = original
    assert json.loads(target.read_text()) == {"n": 2}
    assert victim.read_text() == "keep"
    assert len(seen) == 3 and all(len(name) > len(".status.json..tmp") + 10 for name in seen)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_files_get_the_umask_and_are_never_world_writable(tmp_path):
    old = os.umask(0)
    try:
        writer = RunDirWriter(tmp_path / "run", lambda m: None)
        writer.status.write({"state": "running"})
        writer.close()
    finally:
        os.umask(old)
    for path in [tmp_path / "run", *(tmp_path / "run").iterdir()]:
        assert not stat.S_IMODE(path.stat().st_mode) & stat.S_IWOTH, path
    old = os.umask(0o077)
    try:
        art = ArtifactFile(tmp_path / "private.jsonl", lambda m: None)
        art.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.jsonl").stat().st_mode) == 0o600


def test_artifact_symlink_and_fifo_are_refused_with_one_line(tmp_path):
    messages: list[str] = []
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(tmp_path / "fifo.jsonl")
    started = time.monotonic()
    a = ArtifactFile(tmp_path / "link.jsonl", messages.append)
    b = ArtifactFile(tmp_path / "fifo.jsonl", messages.append)
    assert time.monotonic() - started < 2  # opening a FIFO never blocks
    assert not a.write(b"x\n") and not b.write(b"x\n")
    assert not (tmp_path / "elsewhere").exists()
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert "symlink" in messages[0] and "FIFO" in messages[1]


def test_second_writer_on_a_run_dir_is_refused(tmp_path):
    first = RunDirWriter(tmp_path, lambda m: None)
    try:
        with pytest.raises(RunDirLocked) as err:
            RunDirWriter(tmp_path, lambda m: None)
        assert f"pid {os.getpid()}" in str(err.value) and "--run-dir" in str(err.value)
    finally:
        first.close()
    RunDirWriter(tmp_path, lambda m: None).close()  # released on close


def test_second_monitor_on_one_run_dir_refuses_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [*MONITOR, "--quiet", "--run-dir", str(run_dir), "--"]
    first = subprocess.Popen([*cmd, sys.executable, "-c", "import time; print('{\"step\": 0, \"kl\": 0.1}', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        deadline = time.monotonic() + 15
        while read_status(run_dir).get("state") != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run([*cmd, sys.executable, "-c", "print('{\"step\": 0}')"],
                                capture_output=True, timeout=30, cwd=REPO)
        assert second.returncode == 2
        err = second.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "in use by another monitor" in err and "Traceback" not in err
        assert [json.loads(x)["step"] for x in (run_dir / "run.jsonl").read_text().splitlines()] == [0]
    finally:
        send_control(run_dir, {"action": "stop", "by": "test"})
        first.communicate(timeout=20)
    assert first.returncode == 3


def test_read_status_refuses_links_fifos_and_huge_files(tmp_path):
    (tmp_path / "status.json").symlink_to(tmp_path / "real.json")
    (tmp_path / "real.json").write_text('{"state": "running"}')
    assert read_status(tmp_path) == {}
    (tmp_path / "status.json").unlink()
    os.mkfifo(tmp_path / "status.json")
    started = time.monotonic()
    assert read_status(tmp_path) == {}
    assert time.monotonic() - started < 2


# ----------------------------------------------------------------------------- control channel


def test_control_channel_ignores_stale_commands_and_reads_whole_lines(tmp_path):
    path = tmp_path / "control.jsonl"
    path.write_text('{"action": "stop"}\n')
    channel = ControlChannel(path, lambda m: None)
    assert channel.poll() == []
    with open(path, "a") as fh:
        fh.write('{"action": "auto_stop", "enabled": "false"}\n{"action": "st')
    assert channel.poll() == [{"action": "auto_stop", "enabled": "false"}]
    with open(path, "a") as fh:
        fh.write('op"}\n')
    assert channel.poll() == [{"action": "stop"}]


def test_control_channel_fifo_is_refused_once_and_never_blocks(tmp_path):
    path = tmp_path / "control.jsonl"
    os.mkfifo(path)
    messages: list[str] = []
    channel = ControlChannel(path, messages.append)
    started = time.monotonic()
    for _ in range(5):
        assert channel.poll() == []
    assert time.monotonic() - started < 2
    assert len(messages) == 1 and "FIFO" in messages[0]


def test_100mb_partial_control_line_costs_bounded_work_per_poll(tmp_path):
    path = tmp_path / "control.jsonl"
    path.touch()
    messages: list[str] = []
    channel = ControlChannel(path, messages.append)
    with open(path, "ab") as fh:
        fh.truncate(100 * 1024 * 1024)  # 100 MB of one line with no newline (sparse)
    reads = []
    original = os.read

    def spy(fd, n):
        reads.append(n)
        return original(fd, n)

    os.read = spy
    try:
        started = time.monotonic()
        for _ in range(20):
            assert channel.poll() == []
        took = time.monotonic() - started
    finally:
        os.read = original
    assert max(reads) <= protocol.CONTROL_SKIP_READ  # bounded memory per poll
    assert took < 5
    assert len(channel.tail.partial) <= protocol.CONTROL_MAX_LINE  # never held whole
    with open(path, "ab") as fh:
        fh.write(b'\n{"action": "stop"}\n')
    seen: list[dict] = []
    for _ in range(20):  # the rest of the long line is skipped, then the command is read
        seen += channel.poll()
        if seen:
            break
    assert seen == [{"action": "stop"}]
    assert sum("longer than" in m for m in messages) == 1


# ----------------------------------------------------------------------------- the tailer


def test_tail_whole_lines_truncation_and_rotation(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a\nb")
    tail = FileTail(path)
    assert tail.read_lines() == [b"a"]
    with open(path, "ab") as fh:
        fh.write(b"c\nd\n")
    assert tail.read_lines() == [b"bc", b"d"]
    path.write_bytes(b"e\n")  # truncated and rewritten
    assert tail.read_lines() == [b"e"]
    with open(path, "ab") as fh:
        fh.write(b"last-unterminated")
    assert tail.read_lines() == []
    path.rename(tmp_path / "log.1")
    path.write_bytes(b"new\n")
    lines = tail.read_lines() + tail.read_lines() + tail.read_lines()
    assert lines == [b"last-unterminated", b"new"]
    tail.close()


def test_tail_splits_or_drops_overlong_lines(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"x" * 25 + b"\nok\n")
    split = FileTail(path, max_line=10)
    got = []
    for _ in range(10):
        got += split.read_lines(max_bytes=7)
    assert b"".join(got[:-1]) == b"x" * 25 and got[-1] == b"ok" and max(map(len, got)) <= 10
    drop = FileTail(path, max_line=10, overlong="drop")
    got = []
    for _ in range(10):
        got += drop.read_lines(max_bytes=7)
    assert got == [b"ok"] and drop.dropped_lines == 1


def test_tail_refuses_special_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotARegularFile, match="FIFO"):
        FileTail(tmp_path / "fifo").read_lines()
    with pytest.raises(NotARegularFile, match="FIFO"):
        check_regular(tmp_path / "fifo")
    check_regular(tmp_path / "absent")  # may appear later: fine


def test_tail_reads_a_csv_again_when_its_header_is_rewritten_in_place(tmp_path):
    """SB3 rewrites progress.csv from the start with a wider header when new keys appear."""
    path = tmp_path / "progress.csv"
    path.write_bytes(b"rollout/ep_rew_mean,time/total_timesteps\n20.0,512\n")
    tail = FileTail(path, watch_head=True)
    assert tail.read_lines() == [b"rollout/ep_rew_mean,time/total_timesteps", b"20.0,512"]
    assert tail.read_lines() == []
    with open(path, "r+b") as handle:  # in place: same inode, longer content
        handle.write(b"rollout/ep_rew_mean,time/total_timesteps,train/approx_kl\n"
                     b"20.0,512,\n25.0,1024,0.01\n")
    assert tail.read_lines() == [b"rollout/ep_rew_mean,time/total_timesteps,train/approx_kl",
                                 b"20.0,512,", b"25.0,1024,0.01"]
    assert tail.rewrites == 1
    plain = FileTail(path)  # without watch_head an append-only reader never goes back
    plain.read_lines()
    with open(path, "ab") as handle:
        handle.write(b"30.0,1536,0.02\n")
    assert plain.read_lines() == [b"30.0,1536,0.02"] and plain.rewrites == 0
