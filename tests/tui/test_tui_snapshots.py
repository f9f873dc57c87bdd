"""Snapshots of each tab on deterministic injected data (accept with --snapshot-update)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input
from tui_sample import T0, sample_status, write_sample_run_dir

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.screens import AlertScreen
from rldk_tui.widgets.determinism_view import DeterminismView, ReplicaRow
from rldk_tui.widgets.health_bars import HealthBars
from rldk_tui.widgets.scan_view import ScanView
from rldk_tui.widgets.window_plot import WindowPlot

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def frozen_world(tmp_path, monkeypatch):
    """Fixed cwd-relative paths, UTC clock text, no colour opt-out, no cursor blink."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(tab: str, run_dir: Path | None = None, **extra) -> RldkApp:
    return RldkApp(AppConfig(run_dir=run_dir, initial_tab=tab, gpu=False,
                             clock=lambda: T0 + 100, refresh_s=0.05, **extra))


def run_view_settled(app: RldkApp) -> bool:
    """All 60 sample rows drawn and the preset from status.json in force (its threshold
    lines are part of the picture; status.json may be read after the rows)."""
    return app.live.rows_shown == 60 and app.live.preset == "ppo"


async def no_blink(pilot) -> None:
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    pilot.app.set_focus(None)


SCAN_REPORT = {
    "runs": [
        {"run_id": "ppo_runaway", "source": "logs/ppo_runaway.jsonl", "format": "jsonl",
         "n_steps": 120, "metrics": ["kl", "reward_mean"],
         "anomalies": [
             {"rule": "kl_spike", "metric": "kl", "start_step": 80, "end_step": 95,
              "severity": "critical", "message": "kl above 0.35 for 16 steps",
              "evidence": {"peak": 1.9, "baseline": 0.08}},
             {"rule": "entropy_collapse", "metric": "entropy", "start_step": 90,
              "end_step": 119, "severity": "warning", "message": "entropy fell 85%",
              "evidence": {}}],
         "health": {"overall": 0.31, "stability": 0.4}, "errors": []},
        {"run_id": "healthy", "source": "logs/healthy.csv", "format": "csv", "n_steps": 300,
         "metrics": ["kl"], "anomalies": [], "health": {"overall": 1.0, "stability": 1.0},
         "errors": ["line 17: not valid JSON (skipped)"]},
    ]
}


def test_live_tab_snapshot(snap_compare):
    run_dir = write_sample_run_dir(Path("run"))

    async def ingest(pilot) -> None:
        for _ in range(100):
            if run_view_settled(pilot.app):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        await no_blink(pilot)

    assert snap_compare(make_app("live", Path("run")), terminal_size=SIZE, run_before=ingest)
    assert run_dir.exists()


def test_scan_tab_snapshot(snap_compare):
    # The plot is read by the real reader from this file (the report itself is injected).
    Path("logs").mkdir()
    with open("logs/ppo_runaway.jsonl", "w") as out:
        for step in range(120):
            kl = 0.05 + (0.1 * (step - 78) if step >= 80 else 0.01 * math.sin(step))
            out.write(json.dumps({"step": step, "kl": kl}) + "\n")

    async def inject(pilot) -> None:
        view = pilot.app.query_one(ScanView)
        view.show_report(SCAN_REPORT)  # highlights the first anomaly, which loads the plot
        plot = pilot.app.query_one(WindowPlot)
        bars = pilot.app.query_one(HealthBars)  # analysed from the same file, in a worker
        for _ in range(200):
            if plot.series[0] and bars.components is not None:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.1)
        await no_blink(pilot)

    assert snap_compare(make_app("scan"), terminal_size=SIZE, run_before=inject)


def test_determinism_tab_snapshot(snap_compare):
    card = {"passed": False, "replicas": 3, "tolerance": 1e-6, "mismatches": 412,
            "culprit_metrics": ["reward_mean"], "max_abs_diff": {"reward_mean": 0.031, "kl": 0.0},
            "first_divergence": {"reward_mean": 0, "kl": None},
            "recommendations": ["reward_mean differs from step 0: seed every RNG (random, "
                                "numpy, torch) from one seed"]}

    async def inject(pilot) -> None:
        view = pilot.app.query_one(DeterminismView)
        rows = [ReplicaRow(i, "done", 200, 0, {"kl": 0.04, "reward_mean": 0.86 + i / 100},
                           0.031) for i in range(3)]
        view.show_progress(rows, ["kl", "reward_mean"])
        view.show_card(card)
        await pilot.pause(0.1)
        await no_blink(pilot)

    assert snap_compare(make_app("determinism"), terminal_size=SIZE, run_before=inject)


# -- the workspace, a run, an overlay and the alert panel, at 120x40 and 80x24 -------------
SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]
RESUME = {"last_healthy_step": 51, "first_bad_step": 52, "checkpoint": "out/checkpoint-50",
          "rules": ["kl_spike"], "fixes": ["lower the learning rate or the PPO epochs per batch",
                                           "raise the KL coefficient (or the KL target)"],
          "scan_command": "rldk-engine scan runs/runaway"}


def three_runs() -> Path:
    """runs/: one stopped by its guardrail (with a resume plan), one healthy, one crashed."""
    root = Path("runs")
    runaway = write_sample_run_dir(root / "runaway")
    status = sample_status(runaway, "stopped", 60, stop_reason="guardrail",
                           stop_rule="kl_spike", stop_step=56, exit_code=3, resume=RESUME)
    (runaway / "status.json").write_text(json.dumps(status))
    write_sample_run_dir(root / "healthy", steps=40, runaway_from=10_000, stopped=False)
    crashed = write_sample_run_dir(root / "crashed", steps=30, stopped=False)
    (crashed / "status.json").write_text(json.dumps(
        sample_status(crashed, "exited", 30, exit_code=1)))
    return root


async def until(pilot, condition) -> None:
    for _ in range(200):
        if condition():
            break
        await pilot.pause(0.05)
    await pilot.pause(0.3)
    await no_blink(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_workspace_snapshot(snap_compare, size):
    root = three_runs()

    async def listed(pilot) -> None:
        await until(pilot, lambda: pilot.app.query_one("#workspace-runs", DataTable).row_count == 3)
        pilot.app.query_one("#workspace-runs", DataTable).focus()

    assert snap_compare(make_app("runs", workspace=root), terminal_size=size, run_before=listed)


@pytest.mark.parametrize("size", SIZES)
def test_run_snapshot(snap_compare, size):
    root = three_runs()

    async def ingest(pilot) -> None:
        await until(pilot, lambda: run_view_settled(pilot.app))

    assert snap_compare(make_app("live", root / "runaway", workspace=root), terminal_size=size,
                        run_before=ingest)


@pytest.mark.parametrize("size", SIZES)
def test_overlay_snapshot(snap_compare, size):
    root = three_runs()
    baseline = Path("baseline.csv")
    baseline.write_text("step,kl,reward_mean,entropy\n" + "".join(
        f"{step},{0.04 + step / 2000},{step / 70},{2.0 - step / 50}\n" for step in range(0, 60, 4)))

    async def ingest(pilot) -> None:
        await until(pilot, lambda: run_view_settled(pilot.app) and pilot.app.live.baseline
                    and pilot.app.live.overlay_states[root / "healthy"].rows == 40)
        pilot.app.live.refresh_view(force=True)
        await pilot.pause(0.2)

    app = make_app("live", root / "runaway", workspace=root, overlays=[root / "healthy"],
                   baseline=str(baseline))
    assert snap_compare(app, terminal_size=size, run_before=ingest)


@pytest.mark.parametrize("size", SIZES)
def test_alert_panel_snapshot(snap_compare, size):
    root = three_runs()

    async def open_alert(pilot) -> None:
        await until(pilot, lambda: run_view_settled(pilot.app))
        await pilot.press("a", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, AlertScreen))

    assert snap_compare(make_app("live", root / "runaway", workspace=root), terminal_size=size,
                        run_before=open_alert)
