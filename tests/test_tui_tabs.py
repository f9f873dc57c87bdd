"""Scan and Determinism tabs driving the real engine (small inputs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.screens import HelpScreen
from rldk_tui.widgets.determinism_view import DeterminismView
from rldk_tui.widgets.scan_view import ScanView
from rldk_tui.widgets.window_plot import WindowPlot, plot_text

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


@pytest.fixture
def real_grpo_log() -> Path:
    path = REAL / "trl_grpo_chaos_training_logs.json"
    if not path.exists():
        pytest.skip(f"real fixtures absent: {path}")
    return path


async def wait_for(pilot, condition, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


async def test_scan_tab_lists_runs_anomalies_and_plots_the_window(real_grpo_log):
    app = RldkApp(AppConfig(scan_paths=[str(real_grpo_log)], initial_tab="scan", gpu=False))
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(ScanView)
        await wait_for(pilot, lambda: view.report is not None)
        runs = app.query_one("#scan-runs", DataTable)
        assert runs.row_count == 1
        assert runs.get_row_at(0)[1] == "hf_trainer_state"
        anomalies = app.query_one("#scan-anomalies", DataTable)
        expected = view.report["runs"][0]["anomalies"]
        assert anomalies.row_count == len(expected) > 0
        await pilot.press("tab")  # runs table -> anomalies table
        assert app.focused is anomalies
        await pilot.press("down", "up")
        plot = app.query_one(WindowPlot)
        await wait_for(pilot, lambda: bool(plot._series[0]))
        first = expected[0]
        assert plot._window == (first["start_step"], first["end_step"])
        assert first["metric"] in plot.border_title


def test_plot_marks_the_window_columns():
    text = plot_text(list(range(10)), [0, 1, 2, 3, 4, 5, 6, 7, 8, float("nan")], (4, 6), 10, 2)
    red = [span for span in text.spans if span.style == "bold red"]
    assert len(red) == 2 * 3  # 3 window columns, on both rows
    assert "×" in text.plain  # the non-finite column is shown, not dropped
    assert "window 4–6" in text.plain


async def test_determinism_tab_runs_replicas_and_shows_the_verdict(tmp_path):
    sim = ROOT / "demos" / "determinism_sim.py"
    command = f"{sys.executable} {sim} --mode nondet --steps 30"
    app = RldkApp(AppConfig(initial_tab="determinism", gpu=False,
                            determinism=(command, 2, "kl,reward_mean", str(tmp_path / "det"))))
    finished = []
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(DeterminismView)
        assert app.query_one("#det-cmd", Input).value == command
        view.start()
        await wait_for(pilot, lambda: not view.running, 60)
        table = app.query_one("#det-replicas-table", DataTable)
        assert table.row_count == 2
        assert [table.get_row_at(i)[2] for i in range(2)] == ["30", "30"]
        card = str(app.query_one("#det-card", Static).render())
        finished.append(card)
    assert finished[0].startswith("FAILED")
    assert "reward_mean" in finished[0].split("culprits:")[1]
    assert (tmp_path / "det" / "determinism_card.json").exists()


async def test_help_and_tab_keys():
    app = RldkApp(AppConfig(gpu=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+pagedown")
        assert app.query_one("TabbedContent").active == "scan"
        await pilot.press("ctrl+pageup", "ctrl+pageup")
        assert app.query_one("TabbedContent").active == "determinism"
