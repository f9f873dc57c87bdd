"""`rldk-tui watch`: the Live view attached to run directories written in the test."""

from __future__ import annotations

import shutil

import orjson
import pytest
from helpers import wait_for
from textual.widgets import Switch
from tui_sample import T0, sample_row, write_sample_run_dir

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.screens import ConfirmKillScreen, QuitScreen
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.metric_chart import MetricChart
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner


def watch_app(run_dir) -> RldkApp:
    return RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100, refresh_s=0.05))




def control_lines(run_dir):
    path = run_dir / "control.jsonl"
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


async def test_watch_shows_a_guardrail_stop(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run")
    app = watch_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await pilot.pause(0.1)
        header = app.query_one(RunHeader)
        assert header.state_text == "stopped by guardrail (kl_spike, step 56)"
        banner = app.query_one(StopBanner)
        assert banner.display and "kl_spike at step 56" in str(banner.render())
        assert app.query_one(AlertsTable).row_count == 6  # fires only; the clear is not a row
        panes = {chart.metric: chart for chart in app.query(MetricChart)}
        assert list(panes)[0] == "kl"
        assert panes["kl"].has_class("-alert") and not panes["grad_norm"].has_class("-alert")
        assert app.check_action("kill", ()) is None  # greyed out: nothing runs
        await pilot.press("k")
        assert not isinstance(app.screen, ConfirmKillScreen)
        await pilot.press("q")  # nothing runs: quits without asking
    assert app.return_value is None


@pytest.fixture
def live_dir(tmp_path):
    return write_sample_run_dir(tmp_path / "live", steps=20, stopped=False)


async def test_watch_follows_appended_rows_and_controls_the_monitor(live_dir):
    app = watch_app(live_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 20 and app.live.is_running)
        with open(live_dir / "run.jsonl", "ab") as out:
            out.writelines(orjson.dumps(sample_row(s)) + b"\n" for s in range(20, 45))
        await wait_for(pilot, lambda: app.live.rows_shown == 45)
        assert app.query_one(RunHeader).step == 44

        await pilot.press("k")
        assert isinstance(app.screen, ConfirmKillScreen)
        await pilot.press("n")
        assert control_lines(live_dir) == []
        await pilot.press("k", "y")
        assert control_lines(live_dir) == [{"action": "stop", "by": "rldk-tui"}]

        switch = app.query_one("#auto-stop", Switch)
        assert switch.value is True
        await pilot.click("#auto-stop")
        await pilot.pause(0.1)
        assert control_lines(live_dir)[-1] == {"action": "auto_stop", "enabled": False}
        # The status still says auto_stop true: the switch must not snap back at once.
        await pilot.pause(0.3)
        assert switch.value is False

        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("c")
        assert not isinstance(app.screen, QuitScreen)
        await pilot.press("q", "l")
    assert app.return_value == "left-running"
    assert control_lines(live_dir)[-1]["action"] == "auto_stop"  # leaving sends no stop


async def test_quit_and_stop_sends_a_stop(live_dir):
    app = watch_app(live_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running)
        await pilot.press("q", "s")
    assert app.return_value == "stopped"
    assert control_lines(live_dir) == [{"action": "stop", "by": "rldk-tui"}]


async def test_state_change_in_status_json_reaches_the_header(live_dir):
    app = watch_app(live_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running)
        status = orjson.loads((live_dir / "status.json").read_bytes())
        status.update(state="exited", exit_code=0)
        tmp = live_dir / "status.json.tmp"
        tmp.write_bytes(orjson.dumps(status))
        tmp.replace(live_dir / "status.json")
        await wait_for(pilot, lambda: not app.live.is_running)
        assert app.query_one(RunHeader).state_text == "exited with code 0"
        assert app.check_action("kill", ()) is None


# ----------------------------------------------------------------------------- the run dir disappears


async def test_run_dir_deleted_while_watched_says_so_and_k_does_not_crash(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", stopped=False)
    app = RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100,
                            refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running, timeout=10.0)
        shutil.rmtree(run_dir)
        header = app.query_one(RunHeader)
        await wait_for(pilot, lambda: "run directory gone" in header.state_text, timeout=10.0)
        assert header.state_kind == "alert"
        assert not app.live.is_running  # nothing can reach the monitor: k is greyed out
        app.live.request_stop()  # a stop sent anyway fails with a message, not a traceback
        await pilot.pause(0.1)
    assert app.return_value is None  # exited normally, no exception escaped
