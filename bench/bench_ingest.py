"""Ingest: reading a 1,000,000-row, 12-metric JSONL log into columns vs a bare orjson loop."""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
from _util import best_of, child_peak_rss_mb, result  # noqa: E402

KEYS = ["objective/kl", "objective/kl_coef", "ppo/policy/approxkl", "env/reward_mean", "env/reward_std",
        "objective/entropy", "ppo/policy/clipfrac", "grad_norm", "ppo/loss/policy", "ppo/loss/value",
        "tokens/responses_len_mean", "lr"]


def write_log(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with open(path, "wb") as handle:
        for step in range(rows):
            row = {"step": step}
            for key in KEYS:
                row[key] = rng.random()
            handle.write(orjson.dumps(row) + b"\n")


def bare_orjson(path: Path) -> None:
    loads = orjson.loads
    with open(path, "rb") as handle:
        for line in handle:
            loads(line)


def run(quick: bool = False) -> list[dict]:
    from rldk_engine.ingest.readers import read_run

    rows = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        write_log(path, rows)
        baseline = best_of(lambda: bare_orjson(path))
        ours = best_of(lambda: read_run(path))
        peak_mb, info = child_peak_rss_mb(
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            f"from rldk_engine.ingest.readers import read_run\nrun = read_run({str(path)!r})\n"
            "import json; print(json.dumps({'steps': run.n_steps}))"
        )
        size_mb = os.path.getsize(path) / 2**20
    assert info.get("steps") == rows
    return [
        result(f"read {rows:,}-row JSONL ({size_mb:.0f} MB) into columns", ours, "s", baseline,
               "bare orjson loop", "<= 2x", ours <= 2 * baseline),
        result(f"peak RSS reading {rows:,} rows", peak_mb, "MB", 1024.0, "limit", "< 1024 MB", peak_mb < 1024),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
