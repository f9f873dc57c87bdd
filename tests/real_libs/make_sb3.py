"""Re-make the SB3 runs of tests/data/real_made (progress.csv of real Stable-Baselines3 runs).

    PYTHONPATH=. python tests/real_libs/make_sb3.py [--only NAME,...]     (~3 minutes on 1 core)
"""

from __future__ import annotations

from made import main

SB3 = ("stable-baselines3", "gymnasium", "torch", "numpy")
KEEP = {"progress.csv": "progress.csv"}

RUNS = {
    "sb3_ppo_cartpole_lr005_diverged": dict(
        script="sb3_cartpole.py", keep=KEEP, packages=SB3,
        args=["--steps", "40960", "--lr", "0.05", "--seed", "0", "--log-dir", "OUT"],
        what="PPO on CartPole-v1 with learning rate 0.05 (SB3 default 3e-4), seed 0, 20 rollouts "
             "of 2048 steps: the policy collapses to a deterministic bad action within 3 updates."),
    "sb3_ppo_cartpole_healthy": dict(
        script="sb3_cartpole.py", keep=KEEP, packages=SB3,
        args=["--steps", "61440", "--seed", "0", "--log-dir", "OUT"],
        what="PPO on CartPole-v1 with SB3's defaults, seed 0, 30 rollouts of 2048 steps."),
    "sb3_ppo_pendulum_healthy": dict(
        script="sb3_cartpole.py", keep=KEEP, packages=SB3,
        args=["--env", "Pendulum-v1", "--steps", "81920", "--n-envs", "4", "--n-steps", "1024",
              "--lr", "0.001", "--set", "gamma=0.9", "--set", "gae_lambda=0.95",
              "--set", "ent_coef=0.0", "--seed", "0", "--log-dir", "OUT"],
        what="PPO on Pendulum-v1 (continuous actions, Gaussian policy) with RL Zoo-like settings "
             "(4 envs x 1024 steps, lr 1e-3, gamma 0.9, gae_lambda 0.95, no SDE), seed 0, 20 rollouts."),
}

if __name__ == "__main__":
    raise SystemExit(main(RUNS))
