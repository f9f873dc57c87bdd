"""Long runs (issue 9): a streaming scan of a 10,000,000-step JSONL file in a fresh
process, peak RSS against the forensics memory bound (1.5 GB). Quick mode: 1,000,000.

The headless monitor's flat memory over 10M lines is measured in bench_soak.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scan import bare_parse_seconds, scan_in_child, write_big_jsonl  # noqa: E402


def run(quick: bool = False) -> list[dict]:
    n_steps = 1_000_000 if quick else 10_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.jsonl"
        write_big_jsonl(path, n_steps)
        size_gb = os.path.getsize(path) / 2**30
        parse_s = bare_parse_seconds(path)
        scan_s, rss_mb, _, _ = scan_in_child(path)
    label = f"scan {n_steps:,}-step JSONL ({size_gb:.1f} GB, 8 metrics)"
    return [
        {"name": label, "value": round(scan_s, 1), "unit": "s", "baseline": round(parse_s, 1),
         "baseline_name": "bare orjson parse", "ratio": round(scan_s / parse_s, 2),
         "goal": "informational (the 3x goal is for 1M steps, bench_scan)", "ok": True},
        {"name": f"{label} peak RSS", "value": round(rss_mb, 1), "unit": "MB", "baseline": 1536.0,
         "baseline_name": "1.5 GB bound", "ratio": round(rss_mb / 1536.0, 2), "goal": "<= 1x",
         "ok": rss_mb <= 1536.0},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
