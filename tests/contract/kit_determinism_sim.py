"""A PPO-like metric simulation in the original kit's determinism-demo format (our code).

Like the original kit's `scripts/blog_determinism_sim.py` it writes one flat JSON object per
step (`step`, `kl`, `policy_loss`, `reward_mean`, `policy_grad_norm`) to the file named by
`RLDK_METRICS_PATH`, all at once when the run ends, and prints only a one-line JSON summary
to stdout. `--mode nondet` draws its noise from the operating system (different in every
replica); `--mode deterministic` from a seeded generator.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path


def noise_source(mode: str) -> random.Random:
    return random.SystemRandom() if mode == "nondet" else random.Random(2024)


def simulate(mode: str, steps: int, sleep: float) -> list[dict]:
    rng = noise_source(mode)
    rows = []
    for step in range(steps):
        grad = [rng.gauss(0.0, 1.0) for _ in range(16)]
        rows.append({
            "step": step,
            "kl": 0.05 + 0.008 * math.cos(step / 25) + 0.003 * rng.random(),
            "policy_loss": 0.7 * math.exp(-step / 100) + 0.01 * (rng.random() - 0.5),
            "reward_mean": 1.0 - math.exp(-step / 150) + 0.01 * (rng.random() - 0.5),
            "policy_grad_norm": math.sqrt(sum(g * g for g in grad) / len(grad)),
        })
        if sleep:
            time.sleep(sleep)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["deterministic", "nondet"], default="deterministic")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.02)
    args = parser.parse_args(argv)
    path = Path(os.environ.get("RLDK_METRICS_PATH", "kit_determinism_metrics.jsonl"))
    rows = simulate(args.mode, args.steps, args.sleep)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(json.dumps({
        "mode": args.mode, "steps": len(rows), "metrics_path": str(path.resolve()),
        "kl_peak": max(row["kl"] for row in rows), "reward_final": rows[-1]["reward_mean"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
