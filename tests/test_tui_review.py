"""Bugs found in review of rldk_tui, each pinned by the Pilot test that first failed."""

from __future__ import annotations

import shutil
import threading
from functools import partial

from helpers import wait_for
from textual.widgets import DataTable
from tui_sample import T0, write_sample_run_dir

from rldk_tui.app import AppConfig, RldkApp
from rldk_tui.widgets import scan_view
from rldk_tui.widgets.run_header import RunHeader
from rldk_tui.widgets.window_plot import WindowPlot

wait_for = partial(wait_for, timeout=10.0)


async def test_run_dir_deleted_while_watched_says_so_and_k_does_not_crash(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run", stopped=False)
    app = RldkApp(AppConfig(run_dir=run_dir, gpu=False, clock=lambda: T0 + 100,
                            refresh_s=0.05))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.live.is_running)
        shutil.rmtree(run_dir)
        header = app.query_one(RunHeader)
        await wait_for(pilot, lambda: "run directory gone" in header.state_text)
        assert header.state_kind == "alert"
        assert not app.live.is_running  # nothing can reach the monitor: k is greyed out
        app.live.request_stop()  # a stop sent anyway fails with a message, not a traceback
        await pilot.pause(0.1)
    assert app.return_value is None  # exited normally, no exception escaped


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
        await wait_for(pilot, lambda: "entropy" in str(plot.border_title))
        release_first.set()
        await pilot.pause(0.5)
        assert "entropy" in str(plot.border_title)
        assert app.query_one("#scan-anomalies", DataTable).row_count == 2
