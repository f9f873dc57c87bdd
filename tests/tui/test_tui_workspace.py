"""Pilot tests for every key of the workspace and the Run tab, overlays, the alert panel,
the stop banner's resume plan and bell, and user strings shown as text."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import orjson
import pytest
from helpers import wait_for
from textual.widgets import DataTable, Input
from tui_sample import T0, sample_row, sample_status, write_sample_run_dir

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.screens import AlertScreen, HelpScreen
from rldk_tui.widgets.alerts_table import AlertsTable
from rldk_tui.widgets.metric_chart import MetricChart
from rldk_tui.widgets.metric_grid import MetricGrid
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.stop_banner import StopBanner
from rldk_tui.widgets.workspace_view import WorkspaceView

wait_for = partial(wait_for, timeout=15.0)

RESUME = {"last_healthy_step": 51, "first_bad_step": 52, "checkpoint": "out/checkpoint-50",
          "rules": ["kl_spike"], "fixes": ["lower the learning rate",
                                           "raise the KL coefficient (or the KL target)"],
          "scan_command": "rldk-engine scan run"}


def write_status(run_dir: Path, status: dict) -> None:
    (run_dir / "status.json").write_bytes(orjson.dumps(status))


def crashed_run(path: Path) -> Path:
    run_dir = write_sample_run_dir(path, steps=30, stopped=False)
    write_status(run_dir, sample_status(run_dir, "exited", 30, exit_code=1))
    return run_dir


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "rldk_runs"
    write_sample_run_dir(root / "runaway")  # stopped by its guardrail at step 56
    write_sample_run_dir(root / "healthy", steps=40, runaway_from=10_000, stopped=False)
    crashed_run(root / "crashed")
    return root


def workspace_app(root: Path, **extra) -> RldkApp:
    return RldkApp(AppConfig(workspace=root, initial_tab="runs", gpu=False,
                             clock=lambda: T0 + 100, refresh_s=0.05, **extra))


def table_rows(app) -> dict[str, tuple[str, ...]]:
    table = app.query_one("#workspace-runs", DataTable)
    rows = [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]
    return {row[1]: row for row in rows}


async def test_workspace_lists_each_run_with_its_state(workspace):
    app = workspace_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.query_one("#workspace-runs", DataTable).row_count == 3)
        rows = table_rows(app)
        assert rows["runaway"][2] == "stopped by guardrail" and rows["runaway"][3] == "critical (1)"
        assert rows["runaway"][6] == "kl_spike @ 56"
        assert rows["healthy"][2] == "running" and rows["healthy"][3] == "ok"
        assert rows["healthy"][4] == "39"
        assert rows["crashed"][2] == "crashed"
        # Running runs lead the table.
        assert str(app.query_one("#workspace-runs", DataTable).get_row_at(0)[1]) == "healthy"
        # A run that starts appears within a poll.
        write_sample_run_dir(workspace / "late", steps=5, runaway_from=10_000, stopped=False)
        await wait_for(pilot, lambda: "late" in table_rows(app))


async def test_enter_opens_space_selects_p_pins_and_esc_comes_back(workspace):
    app = workspace_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#workspace-runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        view = app.query_one(WorkspaceView)
        assert app.focused is table
        order = list(view._order)
        await pilot.press("space")  # select the first run (healthy) for overlay
        assert view.selected == {order[0]}
        assert table_rows(app)["healthy"][0].startswith("▸")
        await pilot.press("down", "down", "p")  # pin the last run: it moves to the top
        assert view.pinned == {order[2]}
        await wait_for(pilot, lambda: view._order[0] == order[2])
        assert "⚑" in str(table.get_row_at(0)[0])
        table.move_cursor(row=view._order.index(workspace / "runaway"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.active_tab == "live"
                       and app.live.run_dir == workspace / "runaway")
        assert app.live.overlay_dirs == [workspace / "healthy"]
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await wait_for(pilot, lambda: any(c.metric == "kl" for c in app.query(MetricChart)))
        kl = next(c for c in app.query(MetricChart) if c.metric == "kl")
        # The overlay is read by the same worker a moment later; charts redraw at 4 Hz.
        await wait_for(pilot, lambda: [line.label for line in kl.lines] == ["runaway", "healthy"])
        assert "healthy" in kl.render().plain.splitlines()[0]  # its legend
        await pilot.press("escape")
        assert app.active_tab == "runs" and app.focused is table
        table.move_cursor(row=view._order.index(workspace / "healthy"))
        await pilot.press("space")  # unselect
        assert view.selected == frozenset()


async def test_run_tab_keys_filter_zoom_pan_log_and_alerts(workspace):
    app = RldkApp(AppConfig(run_dir=workspace / "runaway", workspace=workspace, gpu=False,
                            clock=lambda: T0 + 100, refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await pilot.pause(0.3)
        live = app.live
        charts = {c.metric: c for c in app.query(MetricChart)}
        assert list(charts)[:6] == ["kl", "reward_mean", "entropy", "grad_norm", "clip_frac",
                                    "response_len_mean"]
        assert charts["kl"].has_class("-alert")
        assert [t.value for t in charts["kl"].thresholds] == [0.35]  # preset ppo's line
        assert "╌" in charts["kl"].render().plain
        assert charts["grad_norm"].markers  # the NaN at step 30 and its alert

        await pilot.press("slash")
        box = app.query_one("#chart-filter", Input)
        assert app.focused is box
        await pilot.press(*"grad")
        await wait_for(pilot, lambda: [c.metric for c in app.query_one(MetricGrid).shown_charts()]
                       == ["grad_norm"])
        await pilot.press("escape")  # clears the filter, stays on the tab
        assert box.value == "" and app.active_tab == "live"
        assert len(app.query_one(MetricGrid).shown_charts()) == len(charts)

        await pilot.press("plus")
        assert live.x_range == (14.75, 44.25)  # half of 0..59 about its centre
        assert charts["kl"].x_range == live.x_range
        await pilot.press("right_square_bracket")
        assert live.x_range == (22.125, 51.625)
        await pilot.press("left_square_bracket")
        assert live.x_range == (14.75, 44.25)
        await pilot.press("minus")
        assert live.x_range is None  # zoomed out to the whole run
        await pilot.press("plus", "plus", "0")
        assert live.x_range is None

        await pilot.press("l")  # nothing focused: every chart
        assert all(c.log_scale for c in charts.values())
        await pilot.press("l")
        charts["grad_norm"].focus()
        await pilot.press("l")  # a focused chart alone
        assert charts["grad_norm"].log_scale and not charts["kl"].log_scale

        await pilot.press("a")
        alerts = app.query_one(AlertsTable)
        assert app.focused is alerts and alerts.cursor_row == alerts.row_count - 1
        await pilot.press("enter")  # the last alert: kl_spike, critical, step 56
        await wait_for(pilot, lambda: isinstance(app.screen, AlertScreen))
        screen = app.screen
        text = "\n".join(str(s.render()) for s in screen.query("Static"))
        assert "|kl| > 0.35 for 5 consecutive steps" in text  # the rule in force
        assert "what it usually means" in text and "what to try" in text  # the registry
        assert f"rldk-engine scan {workspace / 'runaway'}" in text
        chart = screen.query_one(MetricChart)
        assert chart.window == (52, 56)  # the rule's 5 steps ending at the alert
        assert chart.x_range is not None and chart.x_range[0] <= 52 and chart.x_range[1] >= 56
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertScreen)
        assert app.active_tab == "live"  # esc closed the panel only

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("escape")  # back to the workspace
        assert app.active_tab == "runs"


@pytest.mark.parametrize(("size", "columns", "height"),
                         [((80, 24), 1, 8), ((120, 40), 2, 10), ((200, 60), 3, 12)])
async def test_layout_adapts_to_the_terminal(workspace, size, columns, height):
    app = RldkApp(AppConfig(run_dir=workspace / "runaway", gpu=False,
                            clock=lambda: T0 + 100, refresh_s=0.05))
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await pilot.pause(0.2)
        grid = app.query_one(MetricGrid)
        assert grid.styles.grid_size_columns == columns
        chart = grid.shown_charts()[0]
        assert chart.outer_size.height == height


async def test_baseline_overlays_any_readable_log_aligned_by_step(workspace, tmp_path):
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("step,kl,reward_mean\n" + "".join(
        f"{step},{0.05 + step / 1000},{step / 100}\n" for step in range(0, 60, 5)))
    app = RldkApp(AppConfig(run_dir=workspace / "runaway", gpu=False, baseline=str(baseline),
                            clock=lambda: T0 + 100, refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 60 and app.live.baseline)
        await pilot.pause(0.3)
        kl = next(c for c in app.query(MetricChart) if c.metric == "kl")
        assert [line.label for line in kl.lines] == ["runaway", "baseline baseline.csv"]
        assert list(kl.lines[1].steps) == list(range(0, 60, 5))  # its own steps
        assert "baseline baseline.csv" in kl.render().plain.splitlines()[0]


async def test_a_bad_baseline_is_one_notification_not_a_crash(workspace, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a log\n")
    app = RldkApp(AppConfig(run_dir=workspace / "runaway", gpu=False, baseline=str(bad),
                            clock=lambda: T0 + 100, refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await pilot.pause(0.5)
        assert app.live.baseline == {}
    assert app.return_value is None


async def test_a_stop_rings_the_bell_and_shows_the_resume_plan(tmp_path, monkeypatch):
    run_dir = write_sample_run_dir(tmp_path / "run", steps=50, stopped=False)
    app = RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100,
                            refresh_s=0.05))
    rings = []
    async with app.run_test(size=(120, 40)) as pilot:
        monkeypatch.setattr(app, "bell", lambda: rings.append(1))
        await wait_for(pilot, lambda: app.live.is_running)
        header = app.query_one(RunHeader)
        write_status(run_dir, sample_status(
            run_dir, "running", 50, notice="no metrics recognised yet — 200 lines read"))
        await wait_for(pilot, lambda: "no metrics recognised" in header.notice)
        assert "notice: no metrics recognised yet" in header.render().plain
        assert rings == []
        write_status(run_dir, sample_status(run_dir, "stopped", 57, stop_reason="guardrail",
                                            stop_rule="kl_spike", stop_step=56, exit_code=3,
                                            resume=RESUME))
        banner = app.query_one(StopBanner)
        await wait_for(pilot, lambda: banner.display and "resume" in str(banner.render()))
        shown = str(banner.render())
        assert "GUARDRAIL STOPPED THE RUN: rule kl_spike at step 56" in shown
        assert "last healthy step 51" in shown and "out/checkpoint-50" in shown
        assert "lower the learning rate" in shown
        await pilot.pause(0.3)
        assert rings == [1]  # once, not on every tick


async def test_an_already_stopped_run_does_not_ring(tmp_path, monkeypatch):
    run_dir = write_sample_run_dir(tmp_path / "run")
    app = RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100, refresh_s=0.05))
    rings = []
    async with app.run_test(size=(120, 40)) as pilot:
        monkeypatch.setattr(app, "bell", lambda: rings.append(1))
        await wait_for(pilot, lambda: app.live.rows_shown == 60)
        await pilot.pause(0.3)
    assert rings == []


async def test_markup_in_names_keys_and_output_is_shown_as_text(tmp_path):
    """A trainer key named `[/bold]`, a run directory named `[/bold]` and trainer output
    full of markup and escape sequences: shown verbatim, never a MarkupError."""
    root = tmp_path / "runs"
    run_dir = root / "[/bold]"
    run_dir.mkdir(parents=True)
    rows = [{**sample_row(step), "[/bold]": step / 10, "[red]x[/red]": 1.0} for step in range(20)]
    (run_dir / "run.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (run_dir / "alerts.jsonl").write_bytes(orjson.dumps(
        {"rule": "[/bold]", "metric": "[/bold]", "step": 3, "severity": "warning",
         "action": "warn", "message": "[/]\x1b[31m", "event": "fire"}) + b"\n")
    (run_dir / "monitor.log").write_bytes(b"[/bold] \x1b[2J step 1 [link=x]\n")
    write_status(run_dir, sample_status(run_dir, "running", 20, cmd=["python", "[/bold].py"],
                                        notice="[/bold] \x1b[0m"))
    app = RldkApp(AppConfig(run_dir=run_dir, workspace=root, gpu=False,
                            clock=lambda: T0 + 100, refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.rows_shown == 20)
        await pilot.pause(0.3)
        charts = {c.metric: c for c in app.query(MetricChart)}
        assert "[/bold]" in charts and "[red]x[/red]" in charts
        assert "[/bold]" in str(charts["[/bold]"].border_title)
        header = app.query_one(RunHeader).render().plain
        assert "[/bold].py" in header and "\\x1b[0m" in header and "\x1b" not in header
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertScreen))
        text = "\n".join(str(s.render()) for s in app.screen.query("Static"))
        assert "[/]\\x1b[31m" in text and "\x1b" not in text
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: "[/bold]" in table_rows(app))
    assert app.return_value is None


async def test_the_workspace_rings_when_a_running_run_is_stopped(workspace, monkeypatch):
    app = workspace_app(workspace)
    rings = []
    async with app.run_test(size=(120, 40)) as pilot:
        monkeypatch.setattr(app, "bell", lambda: rings.append(1))
        await wait_for(pilot, lambda: table_rows(app).get("healthy", ("",) * 3)[2] == "running")
        healthy = workspace / "healthy"
        write_status(healthy, sample_status(healthy, "stopped", 40, stop_reason="guardrail",
                                            stop_rule="kl_spike", stop_step=39, exit_code=3))
        await wait_for(pilot, lambda: table_rows(app)["healthy"][2] == "stopped by guardrail")
        await pilot.pause(1.2)  # a later poll of the same state rings no more
        assert rings == [1]


async def test_an_empty_workspace_says_how_to_start_a_run(tmp_path):
    app = workspace_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        hint = app.query_one("#workspace-hint")
        await wait_for(pilot, lambda: "no run directories here yet" in str(hint.render()))
        write_sample_run_dir(tmp_path / "first", steps=5, stopped=False)
        await wait_for(pilot, lambda: "enter: open" in str(hint.render()))
