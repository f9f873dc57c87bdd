"""Helpers shared by the bench scripts: timing, peak memory of a child, result rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def best_of(fn, repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls: the least disturbed by other load."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def child_peak_rss_mb(code: str) -> tuple[float, dict]:
    """Run `code` in a fresh interpreter; it prints one JSON object. Returns (peak MB, object)."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak at fork into the child's ru_maxrss
    wrapper = code + (
        "\nwith open('/proc/self/status') as _f:\n"
        "    print('PEAK', next(l.split()[1] for l in _f if l.startswith('VmHWM:')))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True).stdout
    peak_kb = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("PEAK"))
    payload = next((json.loads(line) for line in out.splitlines() if line.startswith("{")), {})
    return peak_kb / 1024, payload


def result(name, value, unit, baseline, baseline_name, goal, ok, ratio=None) -> dict:
    if ratio is None and baseline:
        ratio = value / baseline
    return {"name": name, "value": value, "unit": unit, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": ratio, "goal": goal, "ok": bool(ok)}
