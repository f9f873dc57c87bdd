"""TUI benchmarks (docs/CONTRACTS.md "Benchmarks").

Ingest: a headless `run_test` of the app watches a run directory while a writer thread
appends 500,000 metric rows to run.jsonl as fast as it can. Measured:
- rows/s that reach the UI (the Run tab's row count), against the bare tailer
  (LiveState without any app) reading the same file, as the baseline;
- the longest gap between two processed key presses while the rows stream in, against
  the same gap with the app idle, as the baseline.
Goals (issue 7): >= 50,000 lines/s into the UI, longest input gap < 100 ms.

Workspace and charts (issue 17):
- a folder of 200 run directories: time until the Runs tab lists all 200 (goal <= 1 s);
- the longest gap between key presses on the Runs tab while 10 of those runs stream
  5,000 lines/s each (run.jsonl, and status.json twice a second as the monitor writes it),
  and the same with one of them open in the Run tab (goal < 100 ms, baseline: idle);
- one chart of a 1,000,000-step run at the size it has at 120x40 (goal <= 50 ms a frame),
  against the same chart of a 1,000-step run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from textual.binding import Binding  # noqa: E402
from tui_sample import sample_row, sample_status  # noqa: E402

from rldk_tui.app import AppConfig, RldkApp  # noqa: E402
from rldk_tui.live_state import LiveState, RunDirTailer  # noqa: E402

PRESS_EVERY_S = 0.01


class ProbeApp(RldkApp):
    BINDINGS = [*RldkApp.BINDINGS, Binding("x", "probe", show=False)]

    def __init__(self, config: AppConfig) -> None:
        super().__init__(config)
        self.press_times: list[float] = []

    def action_probe(self) -> None:
        self.press_times.append(time.perf_counter())


def make_rows(n: int) -> list[bytes]:
    template = [orjson.dumps(sample_row(step)) for step in range(1000)]
    rows = []
    for step in range(n):
        row = orjson.loads(template[step % 1000])
        row["step"] = step
        rows.append(orjson.dumps(row) + b"\n")
    return rows


def write_rows(path: Path, rows: list[bytes], chunk: int = 2000) -> None:
    with open(path, "ab") as out:
        for start in range(0, len(rows), chunk):
            out.write(b"".join(rows[start:start + chunk]))
            out.flush()


def bare_tailer_rate(path: Path, n: int) -> float:
    state = LiveState()
    tailer = RunDirTailer(path.parent, state)
    started = time.perf_counter()
    while state.rows < n:
        tailer.poll()
    return n / (time.perf_counter() - started)


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("nan"))


def type_keys(app: RldkApp, stop: threading.Event) -> None:
    """A keyboard: like the real driver's input thread, sends a key every 10 ms."""
    from textual import events

    while not stop.is_set():
        event = events.Key("x", "x")
        event.set_sender(app)
        app._driver.send_message(event)
        time.sleep(PRESS_EVERY_S)


async def drive(run_dir: Path, rows: list[bytes] | None, idle_s: float) -> tuple[float, float]:
    """(rows/s into the UI or nan, longest gap between processed key presses in s)."""
    app = ProbeApp(AppConfig(run_dir=run_dir, gpu=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        stop = threading.Event()
        keyboard = threading.Thread(target=type_keys, args=(app, stop))
        keyboard.start()
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        writer = None
        if rows is not None:
            writer = threading.Thread(target=write_rows, args=(run_dir / "run.jsonl", rows))
            writer.start()
        deadline = started + (120 if rows is not None else idle_s)
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
            if rows is not None and app.live.rows_shown >= len(rows):
                break
        elapsed = time.perf_counter() - started
        stop.set()
        keyboard.join()
        if writer is not None:
            writer.join()
        await pilot.pause(0.5)  # keys still queued are handled before the app exits
        shown = app.live.rows_shown
        rate = shown / elapsed if rows is not None else float("nan")
        presses = [t for t in app.press_times if started <= t <= started + elapsed]
        return rate, max_gap(presses)


# -- workspace --------------------------------------------------------------------------
def make_workspace(root: Path, n_runs: int) -> list[Path]:
    from tui_sample import write_sample_run_dir

    dirs = []
    for index in range(n_runs):
        run_dir = write_sample_run_dir(root / f"run-{index:03d}", steps=50,
                                       stopped=index % 3 == 0)
        dirs.append(run_dir)
    return dirs


def stream_run(run_dir: Path, lines_per_s: int, stop: threading.Event) -> None:
    """What a monitor writes for a trainer at `lines_per_s`: run.jsonl every 10 ms and an
    atomically replaced status.json twice a second."""
    import os

    template = [orjson.dumps(sample_row(step)) for step in range(1000)]
    step, started, last_status = 1000, time.perf_counter(), 0.0
    with open(run_dir / "run.jsonl", "ab") as out:
        while not stop.is_set():
            due = int((time.perf_counter() - started) * lines_per_s) - (step - 1000)
            if due > 0:
                chunk = []
                for _ in range(due):
                    row = template[step % 1000]
                    chunk.append(row[:-1] + b',"step":' + str(step).encode() + b"}\n")
                    step += 1
                out.write(b"".join(chunk))
                out.flush()
            now = time.perf_counter()
            if now - last_status >= 0.5:
                last_status = now
                status = sample_status(run_dir, "running", step, started=time.time() - 60,
                                       updated=time.time(), last_step=step - 1)
                tmp = run_dir / "status.json.tmp"
                tmp.write_bytes(orjson.dumps(status))
                os.replace(tmp, run_dir / "status.json")
            time.sleep(0.01)


async def workspace_open_time(root: Path, n_runs: int) -> float:
    from textual.widgets import DataTable

    started = time.perf_counter()
    app = ProbeApp(AppConfig(workspace=root, initial_tab="runs", gpu=False))
    async with app.run_test(size=(120, 40)):
        table = app.query_one("#workspace-runs", DataTable)
        while table.row_count < n_runs and time.perf_counter() - started < 30:
            await asyncio.sleep(0.005)
        return time.perf_counter() - started


async def workspace_key_gap(root: Path, streaming: list[Path], seconds: float,
                            open_run: bool) -> float:
    from textual.widgets import DataTable

    app = ProbeApp(AppConfig(workspace=root, initial_tab="runs", gpu=False))
    stop_writers = threading.Event()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#workspace-runs", DataTable)
        while table.row_count == 0:
            await asyncio.sleep(0.01)
        if open_run:
            await app.open_run(streaming[0])
            await pilot.pause(0.3)
        writers = [threading.Thread(target=stream_run, args=(path, 5000, stop_writers))
                   for path in streaming]
        for writer in writers:
            writer.start()
        stop_keys = threading.Event()
        keyboard = threading.Thread(target=type_keys, args=(app, stop_keys))
        keyboard.start()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - started
        stop_keys.set()
        keyboard.join()
        stop_writers.set()
        for writer in writers:
            writer.join()
        await pilot.pause(0.5)  # keys still queued are handled before the app exits
        presses = [t for t in app.press_times if started <= t <= started + elapsed]
        return max_gap(presses)


# -- charts ------------------------------------------------------------------------------
def chart_frame_ms(n_steps: int, frames: int = 20) -> float:
    """Median ms to draw one chart (58x10 cells, a chart's size at 120x40) of a run of
    `n_steps` steps: downsampling included, as on every redraw."""
    import numpy as np

    from rldk_tui.chart import ChartSpec, Line, Marker, Threshold, render_chart
    from rldk_tui.series import SeriesStore

    store = SeriesStore()
    steps = np.arange(n_steps, dtype=float)
    store.extend(steps, 0.05 + 0.02 * np.sin(steps / 500) + (steps > 0.9 * n_steps) * 0.5)
    view = store.snapshot()
    spec = ChartSpec([Line("run", view.steps, view.values, "cyan")],
                     thresholds=[Threshold(0.35, "kl_spike")],
                     markers=[Marker(0.9 * n_steps, "critical")])
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        render_chart(spec, 58, 10)
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * 1000


def run(quick: bool = False) -> list[dict]:
    n = 100_000 if quick else 500_000
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bare_dir = base / "bare"
        bare_dir.mkdir()
        write_rows(bare_dir / "run.jsonl", rows)
        baseline_rate = bare_tailer_rate(bare_dir / "run.jsonl", n)

        live_dir = base / "live"
        live_dir.mkdir()
        (live_dir / "status.json").write_bytes(
            orjson.dumps(sample_status(live_dir, "running", 0, started=time.time())))
        _, idle_gap = asyncio.run(drive(live_dir, None, idle_s=1.5))
        ui_rate, busy_gap = asyncio.run(drive(live_dir, rows, idle_s=0))

        n_runs = 200
        root = base / "workspace"
        dirs = make_workspace(root, n_runs)
        open_s = asyncio.run(workspace_open_time(root, n_runs))
        one_dir = base / "one"
        make_workspace(one_dir, 1)
        one_open_s = asyncio.run(workspace_open_time(one_dir, 1))
        seconds = 3.0 if quick else 8.0
        ws_idle_gap = asyncio.run(workspace_key_gap(root, [], 1.5, open_run=False))
        ws_gap = asyncio.run(workspace_key_gap(root, dirs[:10], seconds, open_run=False))
        run_gap = asyncio.run(workspace_key_gap(root, dirs[:10], seconds, open_run=True))
    big_ms = chart_frame_ms(1_000_000)
    small_ms = chart_frame_ms(1_000)
    return [
        {"name": f"tui ingest ({n:,} rows)", "value": round(ui_rate), "unit": "lines/s",
         "baseline": round(baseline_rate), "baseline_name": "bare tailer, no app",
         "ratio": round(ui_rate / baseline_rate, 3), "goal": ">= 50,000 lines/s",
         "ok": ui_rate >= 50_000},
        {"name": "tui longest key gap under load", "value": round(busy_gap * 1000, 1),
         "unit": "ms", "baseline": round(idle_gap * 1000, 1), "baseline_name": "app idle",
         "ratio": round(busy_gap / idle_gap, 2) if idle_gap else None, "goal": "< 100 ms",
         "ok": busy_gap < 0.1},
        {"name": f"tui workspace of {n_runs} runs opens", "value": round(open_s, 3),
         "unit": "s", "baseline": round(one_open_s, 3), "baseline_name": "workspace of 1 run",
         "ratio": round(open_s / one_open_s, 2) if one_open_s else None, "goal": "<= 1 s",
         "ok": open_s <= 1.0},
        {"name": "tui workspace key gap, 10 runs x 5,000 lines/s", "unit": "ms",
         "value": round(ws_gap * 1000, 1), "baseline": round(ws_idle_gap * 1000, 1),
         "baseline_name": "workspace idle",
         "ratio": round(ws_gap / ws_idle_gap, 2) if ws_idle_gap else None, "goal": "< 100 ms",
         "ok": ws_gap < 0.1},
        {"name": "tui key gap, one of the 10 streaming runs open", "unit": "ms",
         "value": round(run_gap * 1000, 1), "baseline": round(ws_idle_gap * 1000, 1),
         "baseline_name": "workspace idle",
         "ratio": round(run_gap / ws_idle_gap, 2) if ws_idle_gap else None, "goal": "< 100 ms",
         "ok": run_gap < 0.1},
        {"name": "tui chart frame, 1,000,000-step run", "value": round(big_ms, 1), "unit": "ms",
         "baseline": round(small_ms, 2), "baseline_name": "1,000-step run",
         "ratio": round(big_ms / small_ms, 1) if small_ms else None, "goal": "<= 50 ms",
         "ok": big_ms <= 50},
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
