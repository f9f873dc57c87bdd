"""Scan and Determinism tabs driving the real engine (small inputs)."""

from __future__ import annotations

import sys
import threading
from functools import partial
from pathlib import Path

import pytest
from helpers import REAL_LOGS as REAL
from helpers import REPO, wait_for
from textual.widgets import DataTable, Input, Static

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.screens import HelpScreen
from rldk_tui.widgets import scan_view
from rldk_tui.widgets.determinism_view import DeterminismView
from rldk_tui.widgets.health_bars import HealthBars, all_components, bars_text
from rldk_tui.widgets.scan_view import ScanView
from rldk_tui.widgets.window_plot import WindowPlot


@pytest.fixture
def real_grpo_log() -> Path:
    path = REAL / "trl_grpo_chaos_training_logs.json"
    if not path.exists():
        pytest.skip(f"real fixtures absent: {path}")
    return path


wait_for = partial(wait_for, timeout=30.0)


async def test_scan_tab_lists_runs_anomalies_and_plots_the_window(real_grpo_log):
    app = RldkApp(AppConfig(scan_paths=[str(real_grpo_log)], initial_tab="scan", gpu=False))
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(ScanView)
        await wait_for(pilot, lambda: view.report is not None)
        runs = app.query_one("#scan-runs", DataTable)
        assert runs.row_count == 1
        assert str(runs.get_row_at(0)[5]) == "hf_trainer_state"
        anomalies = app.query_one("#scan-anomalies", DataTable)
        expected = view.report["runs"][0]["anomalies"]
        assert anomalies.row_count == len(expected) > 0
        await pilot.press("tab")  # runs table -> anomalies table
        assert app.focused is anomalies
        await pilot.press("down", "up")
        plot = app.query_one(WindowPlot)
        await wait_for(pilot, lambda: bool(plot.series[0]))
        first = expected[0]
        assert plot.window == (first["start_step"], first["end_step"])
        assert first["metric"] in plot.border_title

        # The selected run's component health, from the engine's analysis of the same file.
        from rldk_engine.forensics.analyze import analyze_run, component_bars
        from rldk_engine.ingest.readers import read_run

        bars = app.query_one(HealthBars)
        await wait_for(pilot, lambda: bars.components is not None)
        engine = component_bars(analyze_run(read_run(real_grpo_log)))
        assert list(bars.components) == all_components(engine)
        shown = str(bars.render())
        for _name, health in bars.components:
            assert (f"{health:.2f}" if health is not None else "n/a") in shown
        assert len(engine) < 5 and "n/a" in shown  # a GRPO log has no value-head grads etc.


async def test_health_bars_follow_the_selected_run_and_say_why_not(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(f'{{"step": {s}, "kl": 0.05, "reward_mean": {s / 100}}}\n'
                            for s in range(60)))
    report = {"runs": [
        {"run_id": "good", "source": str(good), "format": "jsonl", "n_steps": 60,
         "anomalies": [], "health": {"overall": 1.0}},
        {"run_id": "gone", "source": str(tmp_path / "gone.jsonl"), "format": "jsonl",
         "n_steps": 0, "anomalies": [], "health": {"overall": 1.0}},
    ]}
    app = RldkApp(AppConfig(initial_tab="scan", gpu=False))
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(ScanView)
        view.show_report(report)
        bars = app.query_one(HealthBars)
        await wait_for(pilot, lambda: bars.components is not None)
        assert [name for name, h in bars.components if h is not None] == ["kl", "reward"]
        await pilot.press("down")  # the runs table has the focus
        await wait_for(pilot, lambda: bars.components is None and "no analysis" in bars.message)
        assert "gone.jsonl" in bars.message
        await pilot.press("up")  # cached: shown at once, no second analysis
        assert bars.components is not None and view.selected_run == 0


def test_bars_text_marks_absent_components_na():
    text = bars_text(all_components([("kl", 0.9), ("reward", 0.4)]), width=10)
    lines = text.plain.splitlines()
    assert [line.split()[0] for line in lines] == ["KL", "gradients", "advantages", "reward",
                                                   "length"]
    assert lines[0].count("█") == 9 and lines[0].endswith("0.90")
    assert lines[3].count("█") == 4 and lines[3].endswith("0.40")
    assert lines[1].endswith("n/a") and lines[2].endswith("n/a") and lines[4].endswith("n/a")


async def test_determinism_tab_runs_replicas_and_shows_the_verdict(tmp_path):
    sim = REPO / "demos" / "determinism_sim.py"
    command = f"{sys.executable} {sim} --mode nondet --steps 30 --sleep 0.02"
    app = RldkApp(AppConfig(initial_tab="determinism", gpu=False,
                            determinism=(command, 2, "kl,reward_mean", str(tmp_path / "det"))))
    finished = []
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(DeterminismView)
        assert app.query_one("#det-cmd", Input).value == command
        view.start()
        table = app.query_one("#det-replicas-table", DataTable)
        live_rows = []  # rows seen while a replica was still running
        for _ in range(1200):
            if not view.running:
                break
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            live_rows += [row for row in rows if row[1] == "running"]
            await pilot.pause(0.05)
        assert not view.running
        assert any(row[4] != "--" and "kl=" in row[4] for row in live_rows)
        assert any(row[5] != "--" for row in live_rows)  # max diff so far, mid-run
        assert table.row_count == 2
        assert [table.get_row_at(i)[2] for i in range(2)] == ["30", "30"]
        assert float(table.get_row_at(0)[5]) > 1e-6  # nondet: reward_mean differs
        assert table.get_row_at(0)[4].startswith("kl=")
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
        await pilot.press("ctrl+pagedown")  # Runs, Run, Scan, Determinism
        assert app.query_one("TabbedContent").active == "scan"
        await pilot.press("ctrl+pageup", "ctrl+pageup")
        assert app.query_one("TabbedContent").active == "runs"
        await pilot.press("ctrl+pageup")
        assert app.query_one("TabbedContent").active == "determinism"


# ----------------------------------------------------------------------------- scan tab: stale plot loads


def anomaly(metric: str, rule: str) -> dict:
    return {"metric": metric, "rule": rule, "start_step": 3, "end_step": 5,
            "severity": "warning"}


async def test_a_slow_stale_plot_never_replaces_the_selected_anomalys_plot(monkeypatch):
    """Moving through anomalies fast: the first plot's load finishes last and must be
    dropped (its exclusive worker was cancelled), not drawn over the selected one."""
    release_first = threading.Event()

    def load_series(source: str, metric: str):
        if metric == "kl":
            release_first.wait(5)
        return list(range(10)), [float(i) for i in range(10)]

    monkeypatch.setattr(scan_view, "load_series", load_series)
    report = {"runs": [{"source": "x.jsonl", "format": "jsonl", "steps": 10,
                        "anomalies": [anomaly("kl", "kl_spike"),
                                      anomaly("entropy", "entropy_collapse")]}]}
    app = RldkApp(AppConfig(gpu=False, initial_tab="scan"))
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(scan_view.ScanView)
        view.show_report(report)
        await pilot.pause(0.1)
        view.plot_anomaly(0, 0)  # blocks in load_series
        await pilot.pause(0.1)
        view.plot_anomaly(0, 1)
        plot = app.query_one(WindowPlot)
        await wait_for(pilot, lambda: "entropy" in str(plot.border_title), timeout=10.0)
        release_first.set()
        await pilot.pause(0.5)
        assert "entropy" in str(plot.border_title)
        assert app.query_one("#scan-anomalies", DataTable).row_count == 2
