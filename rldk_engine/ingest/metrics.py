"""The one alias table: trainer keys -> canonical metric names (SPEC "Canonical metrics").

Every reader and the live parser map keys through `canonical_map`, which is cached per
key schema (the tuple of keys a log line carries), so the per-line cost is one dict hit.
"""

from __future__ import annotations

from functools import lru_cache

# Canonical name -> source keys, highest priority first. When one line carries two
# aliases of the same canonical metric, the earlier alias wins and the other key is
# kept under its own name.
ALIASES: dict[str, tuple[str, ...]] = {
    "step": (
        "step", "global_step", "_step", "train/global_step", "iteration",
        "time/total_timesteps", "TotalEnvInteracts", "total_timesteps",
        "misc/total_timesteps", "serial_timesteps", "nupdates", "time/iterations",
        "Epoch",
        # Tianshou's progress-bar postfix, RLlib's result dict, Sample Factory's console
        "env_step", "training_iteration", "total_num_frames",
    ),
    # per-token mean KL: what the 0.35 guardrail means (SPEC)
    "kl": (
        "kl", "train/kl", "critic/kl", "actor/kl_loss", "KL",
        "ppo/mean_non_score_reward_kl", "env/kl", "kl_div", "policy/kl",
        "train/kl_per_token",
    ),
    # per-sequence KL, summed over the response tokens (TRL PPO, PPOv2, RLOO log
    # `objective/kl` this way; healthy values 1-20). Never judged against 0.35; when the
    # mean response length is logged, `kl` is derived as kl_seq / response_len_mean.
    "kl_seq": ("objective/kl", "kl_seq", "train/objective/kl"),
    "kl_coef": (
        "objective/kl_coef", "kl_coef", "actor/kl_coef", "critic/kl_coeff",
        "critic/kl_coef", "beta", "train/kl_coef", "kl_ctl",
        "info/learner/default_policy/learner_stats/cur_kl_coeff",  # RLlib (old API stack)
        "learners/default_policy/curr_kl_coeff",  # RLlib (new API stack)
    ),
    "approx_kl": (
        "ppo/policy/approxkl", "policy/approxkl_avg", "actor/ppo_kl",
        "losses/approx_kl", "train/approx_kl", "approxkl", "loss/approxkl",
        "approx_kl", "policy/approx_kl",
        "losses/old_approx_kl",  # CleanRL's other estimator: used only when alone
        # RLlib PPO's `kl` is between the old and new policy: an approx_kl, not a reference KL
        "info/learner/default_policy/learner_stats/kl", "learners/default_policy/mean_kl_loss",
    ),
    "reward_mean": (
        "env/reward_mean", "reward", "ppo/mean_scores", "objective/scores",
        "critic/score/mean", "rollout/ep_rew_mean", "charts/episodic_return",
        "episode_reward", "EpRet", "AverageEpRet", "eprewmean", "train/reward",
        "reward_mean", "rewards/mean", "objective/rlhf_reward",
        "Environment/Cumulative Reward",  # ML-Agents TensorBoard tag
        "episodic_return",  # CleanRL's printed `global_step=N, episodic_return=[294.]`
        "episode_reward_mean", "env_runners/episode_return_mean", "episode_return_mean",
        "ray/tune/episode_reward_mean", "env_runners/episode_reward_mean",  # RLlib / Tune
        "rew",  # Tianshou's progress-bar postfix
        "avg_episode_reward",  # Sample Factory's `Avg episode reward: [(0, '0.824')]`
        "mean_reward",  # rl_games forks: `mean reward: 1.23`
    ),
    "reward_std": (
        "env/reward_std", "reward_std", "StdEpRet", "ppo/std_scores",
        "critic/score/std", "train/reward_std",
    ),
    "entropy": (
        "objective/entropy", "ppo/policy/entropy", "policy/entropy_avg",
        "actor/entropy", "losses/entropy", "entropy", "Entropy", "policy_entropy",
        "actor/entropy_loss", "train/entropy_loss", "train/entropy",
        "Policy/Entropy",  # ML-Agents
        "info/learner/default_policy/learner_stats/entropy", "learners/default_policy/entropy",
    ),
    "clip_frac": (
        "ppo/policy/clipfrac", "policy/clipfrac_avg", "actor/pg_clipfrac",
        "losses/clipfrac", "train/clip_fraction", "clip_ratio/region_mean",
        "ClipFrac", "clipfrac", "loss/clipfrac", "clip_frac", "train/clip_frac",
        "clip_ratio",
    ),
    "grad_norm": (
        "grad_norm", "actor/grad_norm", "train/grad_norm", "actor_grad_norm",
        "policy/grad_norm", "ppo/policy/grad_norm",
        "info/learner/default_policy/learner_stats/grad_gnorm",  # RLlib
        "learners/default_policy/gradients_default_optimizer_global_norm",
    ),
    "value_grad_norm": ("critic/grad_norm", "critic_grad_norm", "value/grad_norm", "value_grad_norm"),
    "policy_loss": (
        "ppo/loss/policy", "loss/policy_avg", "actor/pg_loss", "losses/policy_loss",
        "train/policy_gradient_loss", "LossPi", "policy_loss", "train/policy_loss",
        "actor_loss", "loss/policy", "pg_loss",
        "Losses/Policy Loss",  # ML-Agents
        "train/actor_loss",  # SB3 SAC/TD3
        "info/learner/default_policy/learner_stats/policy_loss", "learners/default_policy/policy_loss",
    ),
    "value_loss": (
        "ppo/loss/value", "loss/value_avg", "critic/vf_loss", "losses/value_loss",
        "train/value_loss", "critic_loss", "LossV", "value_loss", "train/critic_loss",
        "vf_loss", "loss/value",
        "Losses/Value Loss",  # ML-Agents
        "info/learner/default_policy/learner_stats/vf_loss", "learners/default_policy/vf_loss",
    ),
    "advantage_mean": (
        "ppo/policy/advantages_mean", "critic/advantages/mean", "advantages/mean",
        "advantage_mean", "train/advantages_mean",
    ),
    "advantage_std": (
        "ppo/policy/advantages_std", "critic/advantages/std", "advantages/std",
        "advantage_std",
    ),
    "explained_var": (
        "ppo/val/var_explained", "critic/vf_explained_var", "losses/explained_variance",
        "train/explained_variance", "explained_variance", "explained_var",
        "info/learner/default_policy/learner_stats/vf_explained_var",  # RLlib
        "learners/default_policy/vf_explained_var",
    ),
    "response_len_mean": (
        "tokens/responses_len_mean", "response_length/mean", "completions/mean_length",
        "completion_length", "response_length", "train/response_length",
        "response_len_mean",
        "tokens/response_len_mean",
    ),
    "response_clip_ratio": (
        "response_length/clip_ratio", "completions/clipped_ratio",
        "response_clip_ratio",
    ),
    "frac_reward_zero_std": ("frac_reward_zero_std", "train/frac_reward_zero_std"),
    "lr": (
        "lr", "learning_rate", "ppo/learning_rate", "actor/lr", "train/learning_rate",
        "charts/learning_rate", "actor_lr", "train/actor_lr", "LearningRate",
        "Policy/Learning Rate",  # ML-Agents
        "info/learner/default_policy/learner_stats/cur_lr",  # RLlib
        "learners/default_policy/default_optimizer_learning_rate",
    ),
}

CANONICAL: tuple[str, ...] = tuple(ALIASES)

# Source keys whose value has the opposite sign of the canonical metric:
# Stable-Baselines3 logs `train/entropy_loss` = -entropy. (verl's `actor/entropy_loss`
# holds the entropy itself, so it is not listed.)
NEGATED: frozenset[str] = frozenset({"train/entropy_loss"})

# source key -> (canonical name, priority); lower priority wins.
_ALIAS_INDEX: dict[str, tuple[str, int]] = {
    key: (name, rank) for name, keys in ALIASES.items() for rank, key in enumerate(keys)
}


def canonical_name(key: str) -> str:
    """Canonical name of one source key (the key itself when unknown)."""
    hit = _ALIAS_INDEX.get(key)
    return hit[0] if hit else key


@lru_cache(maxsize=4096)
def canonical_map(keys: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
    """For one key schema, the (target name, negate) of each key.

    Conflicts inside one schema (two aliases of `kl`) go to the higher-priority alias;
    the loser is kept under its own source name (`alt/<name>` when that name is itself
    canonical), so no value is silently lost and none is overwritten.
    """
    best: dict[str, tuple[int, int]] = {}
    for pos, key in enumerate(keys):
        hit = _ALIAS_INDEX.get(key)
        if hit is None:
            continue
        name, rank = hit
        if name not in best or rank < best[name][0]:
            best[name] = (rank, pos)
    winners = {pos: name for name, (_, pos) in best.items()}
    out: list[tuple[str, bool]] = []
    for pos, key in enumerate(keys):
        name = winners.get(pos, key)
        if pos not in winners and key in ALIASES:
            name = f"alt/{key}"  # a losing `kl` must not overwrite the winning `objective/kl`
        out.append((name, key in NEGATED and pos in winners))
    return tuple(out)


def is_canonical(name: str) -> bool:
    return name in ALIASES
