"""Fault injection seen from the app (issue 9 item 3): the supervisor dies, the monitor
reports errors, run.jsonl holds garbage, `watch` is pointed at something that is no run
directory. Faults are injected by writing the run-dir files or killing a real monitor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import orjson
import pytest
from helpers import wait_for
from tui_sample import T0, sample_row, sample_status, write_sample_run_dir

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.cli import main
from rldk_tui.rundir import pid_alive, read_status
from rldk_tui.screens import ConfirmKillScreen
from rldk_tui.widgets.metric_chart import MetricChart
from rldk_tui.widgets.monitor_errors import MonitorErrors
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner

SLOW_TRAINER = textwrap.dedent("""
    import json, sys, time
    for step in range(100000):
        print(json.dumps({"step": step, "kl": 0.05, "reward_mean": step / 1000}), flush=True)
        time.sleep(0.05)
""")




def watch_app(run_dir) -> RldkApp:
    return RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100, refresh_s=0.05))


def write_status(run_dir, status: dict) -> None:
    tmp = run_dir / "status.json.tmp"
    tmp.write_bytes(orjson.dumps(status))
    tmp.replace(run_dir / "status.json")  # atomic, as the monitor writes it


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


@pytest.fixture
def launched(tmp_path):
    """A run dir for a real monitor the app starts; whatever is left is killed after."""
    run_dir = tmp_path / "run"
    yield run_dir
    status = read_status(run_dir)
    for key in ("pgid", "monitor_pid"):
        if status.get(key):
            try:
                os.killpg(status[key], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


async def test_sigkilled_supervisor_is_reported_not_a_traceback(launched, tmp_path):
    """The monitor SIGKILLed (OOM-killer style, no clean-up of its own): its watchdog stops
    the trainer and marks status.json "lost"; the app says so, never a traceback."""
    trainer = tmp_path / "trainer.py"
    trainer.write_text(SLOW_TRAINER)
    app = RldkApp(AppConfig(run_dir=launched, launch_cmd=[sys.executable, str(trainer)],
                            gpu=False, refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running and app.live.rows_shown >= 3)
        monitor = app.live.monitor
        child_pid = read_status(launched)["child_pid"]
        os.kill(monitor.pid, signal.SIGKILL)
        header = app.query_one(RunHeader)
        await wait_for(pilot, lambda: "monitor lost" in header.state_text, 10)
        assert header.state_kind == "alert"
        status = read_status(launched)
        assert status["state"] == "lost" and status["stop_reason"] == "monitor_lost"
        assert f"monitor pid {monitor.pid} ended without cleaning up" in status["notice"]
        assert pid_alive(child_pid) is False  # the trainer does not run on unguarded
        banner = str(app.query_one(StopBanner).render())
        assert "MONITOR LOST" in banner
        # Nothing is left to stop: the kill key is greyed out, and quitting does not ask.
        assert not app.live.is_running and app.check_action("kill", ()) is None
        await pilot.press("k")
        assert not isinstance(app.screen, ConfirmKillScreen)
        await pilot.press("q")
    assert app.return_value is None


async def test_watch_sees_a_dead_supervisor_by_its_pid(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", steps=20, stopped=False)
    app = watch_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running)
        pid = dead_pid()
        write_status(run_dir, sample_status(run_dir, "running", 20, monitor_pid=pid))
        header = app.query_one(RunHeader)
        await wait_for(pilot, lambda: "supervisor gone" in header.state_text, 5)
        assert f"monitor pid {pid} is not running" in header.state_text
        assert not app.live.is_running


async def test_monitor_errors_in_status_json_are_shown(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", steps=20, stopped=False)
    app = watch_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 20)
        errors_line = app.query_one(MonitorErrors)
        assert not errors_line.display
        errors = [f"cannot write {run_dir}/alerts.jsonl: Permission denied",
                  f"cannot write {run_dir}/run.jsonl: No space left on device"]
        write_status(run_dir, sample_status(run_dir, "running", 20, errors=errors))
        await wait_for(pilot, lambda: errors_line.display, 5)
        text = str(errors_line.render())
        assert "No space left on device" in text and "+1 more" in text
        assert app.live.is_running  # an artifact error never stops the trainer
        write_status(run_dir, sample_status(run_dir, "running", 20, errors=[]))
        await wait_for(pilot, lambda: not errors_line.display, 5)


async def test_garbage_and_truncated_lines_are_skipped_and_counted(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", steps=10, stopped=False)
    app = watch_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 10)
        garbage = [b'{"step": 10, "kl": 0.0', b"\x00\xff\xfe binary", b"[1, 2, 3]",
                   b"not json at all", b'"a string"', b'{"step": 11, "kl": NaN']
        with open(run_dir / "run.jsonl", "ab") as out:
            out.write(b"\n".join(garbage) + b"\n")
            out.writelines(orjson.dumps(sample_row(s)) + b"\n" for s in range(12, 20))
            out.write(b'{"step": 20, "kl"')  # cut mid-line: waits for the rest
        await wait_for(pilot, lambda: app.live.rows_shown == 18)
        header = app.query_one(RunHeader)
        assert header.skipped == len(garbage) and header.step == 19
        assert f"skipped {len(garbage)} bad line(s)" in str(header.render())
        with open(run_dir / "run.jsonl", "ab") as out:
            out.write(b': 0.07, "step_extra": 1}\n')  # the cut line completes
        await wait_for(pilot, lambda: app.live.rows_shown == 19)
        assert header.skipped == len(garbage)
        charts = {chart.metric: chart for chart in app.query(MetricChart)}
        assert "kl" in charts  # the view kept going


def test_watch_of_something_that_is_no_run_dir_is_one_line_exit_2(tmp_path, capsys):
    a_file = tmp_path / "run.jsonl"
    a_file.write_text("{}\n")
    for target, reason in ((tmp_path / "missing", "no such folder"),
                           (a_file, "a file, not a folder")):
        assert main(["watch", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith(f"rldk-tui: {target}: not a run directory") and reason in err


def test_pid_alive_knows_dead_live_and_unknown():
    assert pid_alive(os.getpid()) is True
    assert pid_alive(dead_pid()) is False
    assert pid_alive(None) is None and pid_alive("12") is None


async def test_hidden_live_tab_draws_nothing_but_tracks_the_run(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", steps=20, stopped=False)
    app = watch_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 20)
        kl = next(c for c in app.query(MetricChart) if c.metric == "kl")
        drawn = kl.lines
        await pilot.press("ctrl+pagedown")  # Scan tab: Live is hidden
        with open(run_dir / "run.jsonl", "ab") as out:
            out.writelines(orjson.dumps(sample_row(s)) + b"\n" for s in range(20, 45))
        await wait_for(pilot, lambda: app.live.state.rows == 45)  # still read ...
        await pilot.pause(0.3)
        assert app.live.rows_shown == 20 and kl.lines is drawn  # ... but not drawn
        write_status(run_dir, sample_status(run_dir, "exited", 45, exit_code=0))
        await wait_for(pilot, lambda: not app.live.is_running)  # the kill key still follows
        await pilot.press("ctrl+pageup")  # back to Live: redrawn at once
        assert app.live.rows_shown == 45 and kl.lines is not drawn
        assert app.query_one(RunHeader).state_text == "exited with code 0"
