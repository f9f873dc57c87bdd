"""A short Stable-Baselines3 run that prints SB3's own console tables (verbose=1).

Used by the real-library tests (run under `rldk-engine monitor`), by the golden-input
recorder and by bench/bench_real.py. With --log-dir SB3 also writes its progress.csv.
Runs on CPU; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ast
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", choices=["ppo", "a2c"], default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=4096, help="total_timesteps")
    parser.add_argument("--n-steps", type=int, default=None, help="rollout length (SB3 n_steps)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (SB3 default if unset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=None, help="also write SB3's progress.csv here")
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other algorithm argument, e.g. --set gamma=0.9 (Python literal)")
    parser.add_argument("--quiet", action="store_true", help="verbose=0 (for a baseline timing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(1)  # the test machine has 2 cores shared with the monitor
    algo = {"ppo": PPO, "a2c": A2C}[args.algo]
    kwargs: dict = {"seed": args.seed, "verbose": 0 if args.quiet else 1, "device": "cpu"}
    if args.n_steps is not None:
        kwargs["n_steps"] = args.n_steps
    if args.lr is not None:
        kwargs["learning_rate"] = args.lr
    for item in args.set:
        key, _, value = item.partition("=")
        kwargs[key] = ast.literal_eval(value)
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    model = algo("MlpPolicy", env, **kwargs)
    if args.log_dir and not args.quiet:
        model.set_logger(configure(args.log_dir, ["stdout", "csv"]))
    model.learn(total_timesteps=args.steps)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
