"""TUI ingest benchmark (docs/CONTRACTS.md "Benchmarks").

A headless `run_test` of the app watches a run directory while a writer thread appends
500,000 metric rows to run.jsonl as fast as it can. Measured:
- rows/s that reach the UI (the Live view's row count), against the bare tailer
  (LiveState without any app) reading the same file, as the baseline;
- the longest gap between two processed key presses while the rows stream in, against
  the same gap with the app idle, as the baseline.
Goals (issue 7): >= 50,000 lines/s into the UI, longest input gap < 100 ms.
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

from rldk_tui import rundir  # noqa: E402
from rldk_tui.app import AppConfig, RldkApp  # noqa: E402

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
    state = rundir.LiveState()
    tailer = rundir.RunDirTailer(path.parent, state)
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
        shown = app.live.rows_shown
        rate = shown / elapsed if rows is not None else float("nan")
        presses = [t for t in app.press_times if started <= t <= started + elapsed]
        return rate, max_gap(presses)


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
    return [
        {"name": f"tui ingest ({n:,} rows)", "value": round(ui_rate), "unit": "lines/s",
         "baseline": round(baseline_rate), "baseline_name": "bare tailer, no app",
         "ratio": round(ui_rate / baseline_rate, 3), "goal": ">= 50,000 lines/s",
         "ok": ui_rate >= 50_000},
        {"name": "tui longest key gap under load", "value": round(busy_gap * 1000, 1),
         "unit": "ms", "baseline": round(idle_gap * 1000, 1), "baseline_name": "app idle",
         "ratio": round(busy_gap / idle_gap, 2) if idle_gap else None, "goal": "< 100 ms",
         "ok": busy_gap < 0.1},
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
