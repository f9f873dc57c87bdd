"""Comprehensive analysis speed (protocol: docs/CONTRACTS.md "Benchmarks").

`rldk-engine analyze` work (read + detectors + component analysis) on an N-step JSONL run
(1,000,000 steps; 100,000 with --quick) against the scan of the same file (read +
detectors + health), both in this process, best of two: goal <= 2x.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _util import best_of  # noqa: E402


def run(quick: bool = False) -> list[dict]:
    from bench_scan import write_big_jsonl

    from rldk_engine.forensics.analyze import analyze_run
    from rldk_engine.forensics.scan import scan_paths
    from rldk_engine.ingest.readers import read_run

    n_steps = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jsonl"
        write_big_jsonl(big, n_steps)
        scan_s = best_of(lambda: scan_paths([big]), repeat=2)
        analyze_s = best_of(lambda: analyze_run(read_run(big)), repeat=2)
    ratio = analyze_s / scan_s
    return [{
        "name": f"analyze {n_steps:,}-step JSONL", "value": round(analyze_s, 3), "unit": "s",
        "baseline": round(scan_s, 3), "baseline_name": "scan of the same run",
        "ratio": round(ratio, 2), "goal": "<= 2x", "ok": ratio <= 2.0,
    }]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(f"{row['name']:<40} {row['value']:>10} {row['unit']:<3} vs {row['baseline_name']} "
              f"{row['baseline']} -> {row['ratio']}x (goal {row['goal']}) {'OK' if row['ok'] else 'MISS'}")
