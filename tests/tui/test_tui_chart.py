"""The chart renderer, the series store and the workspace scanner, without an app."""

from __future__ import annotations

import math
import os

import numpy as np
import orjson
from tui_sample import T0, sample_status, write_sample_run_dir

from rldk_tui.chart import ChartSpec, Line, Marker, Threshold, nice_ticks, render_chart
from rldk_tui.guardrails import rules_in_force
from rldk_tui.series import SeriesStore, columns
from rldk_tui.workspace import WorkspaceScanner, classify, discover


def line(steps, values, label="run") -> Line:
    return Line(label, np.asarray(steps, dtype=float), np.asarray(values, dtype=float), "cyan")


def plot_rows(text) -> list[str]:
    """The plot rows (the y-axis label column and the two axis rows cut off)."""
    return [row[8:] for row in text.plain.splitlines()[:-2]]


def test_columns_keep_each_buckets_min_and_max_so_a_spike_survives():
    steps = np.arange(1_000_000, dtype=float)
    values = np.zeros(1_000_000)
    values[654_321] = 9.0  # one step in a million
    cols = columns(steps, values, 0, 999_999, 100)
    assert len(cols.high) == 100 and np.nanmax(cols.high) == 9.0
    assert int(np.nanargmax(cols.high)) == 65
    assert np.nanmin(cols.low) == 0.0


def test_columns_bucket_by_step_so_runs_logged_at_different_intervals_line_up():
    dense = columns(np.arange(0, 100, 1.0), np.arange(0, 100, 1.0), 0, 99, 10)
    sparse = columns(np.arange(0, 100, 10.0), np.arange(0, 100, 10.0), 0, 99, 10)
    assert list(sparse.low) == list(dense.low)  # step 30 lands in the same column either way


def test_series_store_grows_orders_and_counts_nonfinite():
    store = SeriesStore(capacity=2)
    store.extend([0, 1, 2], [0.1, math.nan, 0.3])
    store.extend([5, 4], [math.inf, 0.2])  # a step went backwards: drawn sorted
    view = store.snapshot()
    assert list(view.steps) == [0, 1, 2, 4, 5]
    assert view.values[3] == 0.2 and (view.low, view.high) == (0.1, 0.3)
    assert view.non_finite_steps == (1.0, 5.0) and view.count == 5


def test_chart_has_y_ticks_a_step_axis_and_the_guardrail_line():
    steps = np.arange(200)
    text = render_chart(ChartSpec([line(steps, 0.02 + 0.001 * np.sin(steps))],
                                  thresholds=[Threshold(0.35, "kl_spike")]), 60, 12)
    rows = text.plain.splitlines()
    assert len(rows) == 12 and all(len(row) <= 60 for row in rows)
    labels = [row[:7].strip() for row in rows[:-2] if row[7] == "┤"]
    assert len(labels) >= 3 and "0.3" in labels  # ticks cover the threshold too
    assert any("╌" in row for row in rows)  # the 0.35 line
    assert rows[-1].split()[0] == "0" and "150" in rows[-1]  # step tick labels
    # A healthy 0.02 sits low under its 0.35 limit instead of filling the pane.
    drawn = [i for i, row in enumerate(plot_rows(text)) if any("⠀" < c <= "⣿" for c in row)]
    assert min(drawn) >= 7


def test_markers_sit_on_the_step_axis_at_their_step():
    text = render_chart(ChartSpec([line(range(101), [0.0] * 101)],
                                  markers=[Marker(50, "critical")]), 60, 8)
    axis = text.plain.splitlines()[-2]
    col = axis.index("▲") - 8
    assert abs(col - 50 * 52 / 100) <= 1  # 52 plot columns over steps 0..100


def test_log_scale_spreads_decades_and_says_what_it_hides():
    steps = np.arange(4)
    text = render_chart(ChartSpec([line(steps, [1e-3, 1e-2, 1e-1, 1.0])], log=True), 40, 10)
    labels = [row[:7].strip() for row in text.plain.splitlines()[:-2] if row[7] == "┤"]
    assert labels and all(label.startswith("1e") for label in labels)
    empty = render_chart(ChartSpec([line(steps, [0.0, -1.0, 0.0, -2.0])], log=True), 40, 10)
    assert "log scale hides values <= 0" in empty.plain


def test_sparse_points_are_joined_and_the_window_is_shaded():
    text = render_chart(ChartSpec([line([0, 100], [0.0, 1.0])], window=(40, 60)), 60, 10)
    rows = plot_rows(text)
    lit = {col for row in rows for col, c in enumerate(row) if "⠀" < c <= "⣿"}
    assert len(lit) >= 45  # a line across, not two dots
    shaded = [span for span in text.spans if "grey23" in str(span.style)]
    assert shaded


def test_zoom_range_and_overlays_with_a_legend():
    a = line(range(1000), np.linspace(0, 1, 1000), "run-a")
    b = line(range(0, 1000, 10), np.linspace(1, 0, 100), "baseline")
    text = render_chart(ChartSpec([a, b], x_range=(500, 600), legend=True), 70, 12)
    rows = text.plain.splitlines()
    assert "run-a" in rows[0] and "baseline" in rows[0]
    assert rows[-1].split()[0] == "500"
    assert nice_ticks(0, 1, 4) == [0.0, 0.5, 1.0]  # 1/2/5 spacing, never more than asked
    assert nice_ticks(0, 100, 5) == [0, 20, 40, 60, 80, 100]


def test_thresholds_come_from_the_rules_in_force():
    ppo = rules_in_force("ppo")
    assert [t.value for t in ppo.thresholds("kl")] == [0.35]  # |kl| > 0.35: ...
    assert [t.value for t in ppo.thresholds("kl", data_low=-0.1)] == [0.35, -0.35]  # ... both
    assert [t.value for t in ppo.thresholds("clip_frac")] == [0.4]
    assert ppo.window({"rule": "kl_spike", "step": 56}) == (52, 56)  # for: 5
    assert rules_in_force("no-such-preset").rules == ()


def write_status(run_dir, status) -> None:
    (run_dir / "status.json").write_bytes(orjson.dumps(status))


def test_workspace_states_from_status_json(tmp_path):
    now = T0 + 100
    assert classify({}, now) == "no status"
    running = {"state": "running", "monitor_pid": os.getpid(), "updated": now}
    assert classify(running, now) == "running"
    assert classify({**running, "monitor_pid": 2**22 + 12345}, now,
                    pid_alive=lambda pid: False) == "stale"
    assert classify({**running, "updated": now - 7200}, now) == "stale"
    assert classify({"state": "stopped", "stop_reason": "guardrail"}, now) == "stopped by guardrail"
    assert classify({"state": "exited", "exit_code": 0}, now) == "finished"
    assert classify({"state": "exited", "exit_code": 1}, now) == "crashed"
    assert classify({"state": "lost"}, now) == "crashed"


def test_workspace_finds_nested_runs_and_follows_them(tmp_path):
    stopped = write_sample_run_dir(tmp_path / "a")
    running = write_sample_run_dir(tmp_path / "exp" / "out" / "rldk", steps=20, stopped=False)
    (tmp_path / "notes").mkdir()
    assert discover(tmp_path) == [stopped, running]
    scanner = WorkspaceScanner(tmp_path, clock=lambda: T0 + 100)
    runs = {run.name: run for run in scanner.poll()}
    assert runs["a"].state == "stopped by guardrail" and runs["a"].step == 59
    assert runs["a"].health == "critical" and runs["a"].last_alert == "kl_spike @ 56"
    live = runs["exp/out/rldk"]
    assert live.state == "running" and live.health == "ok"
    write_status(running, sample_status(running, "running", 40, updated=T0 + 30))
    with open(running / "alerts.jsonl", "ab") as out:
        out.write(orjson.dumps({"rule": "clip_frac_high", "metric": "clip_frac", "step": 39,
                                "severity": "warning", "event": "fire"}) + b"\n")
    live = {run.name: run for run in scanner.poll()}["exp/out/rldk"]
    assert live.step == 39 and live.health == "warning"
    assert live.steps_per_s == (40 - 20) / (30 - 10)  # from two status.json updates
    write_sample_run_dir(tmp_path / "b")  # a run that starts shows up on the next poll
    assert len(scanner.poll()) == 3
