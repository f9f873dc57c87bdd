"""A tiny PPO-style "trainer" that prints one JSON line of metrics per step.

It exists to exercise `rldk-engine determinism`:

    python demos/determinism_sim.py --mode deterministic --steps 200 --sleep 0.02
    python demos/determinism_sim.py --mode nondet --steps 200 --sleep 0.02

Every metric comes from a fixed-seed `random.Random`, so replicas print identical
numbers in `deterministic` mode. `nondet` mode adds noise drawn from
`random.SystemRandom` (the OS entropy pool, which no seed controls) to `reward_mean`,
the way an unseeded sampler or `os.urandom`-based shuffle would. Standard library
only, so a replica starts in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time

SEED = 1234


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("nondet", "deterministic"), default="deterministic")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step")
    return parser.parse_args(argv)


def step_metrics(step: int, rng: random.Random, noise: random.SystemRandom | None) -> dict:
    """PPO-shaped curves: reward climbs, KL drifts up, entropy decays, losses shrink."""
    progress = step / 100.0
    reward = 1.0 - math.exp(-progress) + rng.gauss(0.0, 0.02)
    if noise is not None:
        reward += noise.gauss(0.0, 0.01)
    return {
        "step": step,
        "kl": 0.02 + 0.01 * progress + abs(rng.gauss(0.0, 0.002)),
        "kl_coef": 0.1,
        "policy_loss": -0.05 * math.exp(-progress) + rng.gauss(0.0, 0.005),
        "value_loss": 0.5 * math.exp(-progress) + abs(rng.gauss(0.0, 0.01)),
        "reward_mean": reward,
        "reward_std": 0.3 + abs(rng.gauss(0.0, 0.01)),
        "entropy": 2.0 * math.exp(-0.3 * progress) + rng.gauss(0.0, 0.01),
        "clip_frac": 0.1 + abs(rng.gauss(0.0, 0.01)),
        "grad_norm": 1.0 + abs(rng.gauss(0.0, 0.1)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(SEED)
    noise = random.SystemRandom() if args.mode == "nondet" else None
    for step in range(args.steps):
        print(json.dumps(step_metrics(step, rng, noise)), flush=True)
        if args.sleep > 0:
            time.sleep(args.sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
