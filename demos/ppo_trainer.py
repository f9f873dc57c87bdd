"""A real, tiny RLHF-style trainer in torch (CPU, seconds): PPO or GRPO over tokens.

Policy: a GRU language model over a 16-token vocabulary with a value head; responses of
up to 8 tokens (token 0 is EOS). A frozen copy of the initial policy is the reference.
The reward model likes the "magic" token and is exploitable: a policy that emits it
everywhere scores highly while drifting far from the reference. PPO keeps it in check
with a per-token KL penalty and a Ziegler-style adaptive KL controller; ``--runaway``
forces the KL coefficient to 0 and raises the learning rate, so KL (token-averaged, to
the reference) crosses 0.35 around step 20 and keeps rising.

Prints one JSON line per step on stdout with TRL-style keys and "step".

Keeps the work when stopped: with --output-dir, a Ctrl-C (or the SIGINT `rldk-engine
monitor` sends first on a stop) saves `step_N.pt` (N = the last completed step) before
exiting 130; --save-every K also saves every K steps.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

VOCAB = 16
EOS = 0
MAGIC = 7
MAX_LEN = 8
N_PROMPTS = 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="-1 means unseeded")
    p.add_argument("--no-seed", action="store_true", help="do not seed (same as --seed -1)")
    p.add_argument("--runaway", action="store_true",
                   help="from --runaway-at on: KL coef forced to 0 and the learning rate x1.5")
    p.add_argument("--runaway-at", type=int, default=16, help="step where --runaway kicks in")
    p.add_argument("--algo", choices=("ppo", "grpo"), default="ppo")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--output-dir", default=None, help="where checkpoints go (step_N.pt)")
    p.add_argument("--save-every", type=int, default=0, help="also save every K steps (0 = only on SIGINT)")
    return p.parse_args(argv)


def save_checkpoint(output_dir: str, policy, opt, step: int) -> str:
    import torch

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"step_{step}.pt")
    torch.save({"step": step, "policy": policy.state_dict(), "optimizer": opt.state_dict()}, path)
    return path


def seed_everything(seed: int | None):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def build_policy():
    import torch
    from torch import nn

    class Policy(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, 32)
            self.gru = nn.GRU(32, 64, batch_first=True)
            self.head = nn.Linear(64, VOCAB)
            self.value = nn.Linear(64, 1)

        def forward(self, tokens):
            h, _ = self.gru(self.emb(tokens))
            return self.head(h), self.value(h).squeeze(-1)

    policy = Policy()
    # EOS likely enough that few responses hit the length cap at the start.
    with torch.no_grad():
        policy.head.bias[EOS] += 1.2
    return policy


def sample(policy, prompts):
    """Autoregressive sampling; returns tokens [B, 1+MAX_LEN] (prompt first) and mask [B, MAX_LEN]."""
    import torch

    with torch.no_grad():
        tokens = prompts.unsqueeze(1)
        hidden = None
        x = policy.emb(tokens)
        outs = []
        for _ in range(MAX_LEN):
            h, hidden = policy.gru(x, hidden)
            logits = policy.head(h[:, -1])
            nxt = torch.multinomial(torch.softmax(logits, -1), 1)
            outs.append(nxt)
            x = policy.emb(nxt)
        resp = torch.cat(outs, 1)
    done_before = torch.cumsum((resp == EOS).long(), 1) - (resp == EOS).long()
    mask = (done_before == 0).float()  # tokens up to and including the first EOS
    return torch.cat([prompts.unsqueeze(1), resp], 1), mask


def reward_model(tokens, mask):
    """Exploitable reward: fraction of response tokens that are MAGIC, plus a bonus for
    ending with EOS; what a learned RM with a blind spot looks like."""
    resp = tokens[:, 1:]
    n = mask.sum(1).clamp(min=1)
    magic = ((resp == MAGIC).float() * mask).sum(1) / n
    ended = ((resp == EOS).float() * mask).sum(1).clamp(max=1)
    return magic + 0.2 * ended


def logprobs_of(policy, tokens):
    import torch

    logits, values = policy(tokens[:, :-1])
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    return logp, logp_all, values


class AdaptiveKL:
    """Ziegler et al. 2019: kl_coef *= 1 + clip(kl/target - 1, -0.2, 0.2) * n/horizon."""

    def __init__(self, init: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, kl: float, n: int):
        err = max(-0.2, min(0.2, kl / self.target - 1.0))
        self.value *= 1.0 + err * n / self.horizon


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    seed = None if (args.no_seed or args.seed < 0) else args.seed
    seed_everything(seed)
    policy = build_policy()
    ref = build_policy()
    ref.load_state_dict(policy.state_dict())
    for p in ref.parameters():
        p.requires_grad_(False)

    lr = args.lr if args.lr is not None else 1e-3
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    kl_ctl = AdaptiveKL(init=0.3, target=0.08, horizon=500)
    done = -1  # the last completed step: what a checkpoint holds
    try:
        for step in range(args.steps):
            _train_step(args, step, lr, seed, policy, ref, opt, kl_ctl)
            done = step
            if args.output_dir and args.save_every > 0 and (step + 1) % args.save_every == 0:
                save_checkpoint(args.output_dir, policy, opt, step)
            if args.sleep > 0:
                time.sleep(args.sleep)
    except KeyboardInterrupt:  # the monitor's first signal on a stop: keep the work, then exit
        if args.output_dir and done >= 0:
            print(f"interrupted: saved {save_checkpoint(args.output_dir, policy, opt, done)}",
                  file=sys.stderr, flush=True)
        raise
    return 0


def _train_step(args, step, lr, seed, policy, ref, opt, kl_ctl) -> None:
    """One PPO/GRPO step; prints its metrics as one JSON line."""
    import torch

    batch = args.batch
    group = 8
    t0 = time.perf_counter()
    runaway = args.runaway and step >= args.runaway_at
    if runaway and step == args.runaway_at:
        for g in opt.param_groups:  # the "someone tripled the LR and disabled KL" bug
            g["lr"] = lr * 1.5
    if args.algo == "grpo":
        prompts = torch.randint(1, VOCAB, (batch // group,)).repeat_interleave(group)
    else:
        prompts = torch.randint(1, VOCAB, (batch,))
    tokens, mask = sample(policy, prompts)
    scores = reward_model(tokens, mask)
    with torch.no_grad():
        old_logp, old_all, old_values = logprobs_of(policy, tokens)
        ref_logp, ref_all, _ = logprobs_of(ref, tokens)
        # exact per-token KL(pi || ref) over the vocabulary, token-averaged
        kl_tok = (old_all.exp() * (old_all - ref_all)).sum(-1)
        kl_mean = float(masked_mean(kl_tok, mask))
        kl_sampled = old_logp - ref_logp  # TRL's per-token penalty (k1 estimator)
    if args.algo == "grpo":
        out = grpo_update(policy, opt, tokens, mask, scores, old_logp, ref_all, kl_mean,
                          beta=0.0 if runaway else 1.0, group=group)
    else:
        out = ppo_update(policy, opt, tokens, mask, scores, old_logp, old_values,
                         kl_sampled, kl_ctl, kl_mean, runaway=runaway)
    if not runaway:
        kl_ctl.update(kl_mean, batch)
    out["step"] = step
    out["time/step_s"] = round(time.perf_counter() - t0, 6) if seed is None else 0.0
    print(json.dumps(out), flush=True)


def _optimize(policy, opt, loss) -> float:
    """One optimiser step with gradient clipping; returns the pre-clip gradient norm."""
    import torch

    opt.zero_grad()
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0))
    opt.step()
    return grad_norm


def _entropy(logp_all, mask):
    return masked_mean(-(logp_all.exp() * logp_all).sum(-1), mask)


def ppo_update(policy, opt, tokens, mask, scores, old_logp, old_values, kl_tok, kl_ctl,
               kl_mean, runaway, epochs=4, clip=0.2, gamma=1.0, lam=0.95):
    import torch

    coef = 0.0 if runaway else kl_ctl.value
    with torch.no_grad():
        rewards = -coef * kl_tok * mask
        last = (mask.sum(1).long() - 1).clamp(min=0)
        rewards[torch.arange(len(last)), last] += scores
        adv = torch.zeros_like(rewards)
        gae = torch.zeros(rewards.shape[0])
        for t in reversed(range(rewards.shape[1])):
            nv = old_values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(rewards.shape[0])
            nv = nv * mask[:, t + 1] if t + 1 < rewards.shape[1] else nv
            delta = rewards[:, t] + gamma * nv - old_values[:, t]
            gae = delta + gamma * lam * gae * (mask[:, t + 1] if t + 1 < rewards.shape[1] else 0)
            adv[:, t] = gae
        returns = adv + old_values
        adv_mean = masked_mean(adv, mask)
        adv_std = ((adv - adv_mean) ** 2 * mask).sum() / mask.sum()
        adv_n = (adv - adv_mean) / (adv_std.sqrt() + 1e-8)
    stats = []
    for _ in range(epochs):
        logp, logp_all, values = logprobs_of(policy, tokens)
        ratio = torch.exp(logp - old_logp)
        pg1 = -adv_n * ratio
        pg2 = -adv_n * torch.clamp(ratio, 1 - clip, 1 + clip)
        pg_loss = masked_mean(torch.max(pg1, pg2), mask)
        v_loss = masked_mean((values - returns) ** 2, mask)
        loss = pg_loss + 0.5 * v_loss
        gn = _optimize(policy, opt, loss)
        with torch.no_grad():
            entropy = _entropy(logp_all, mask)
            approxkl = 0.5 * masked_mean((logp - old_logp) ** 2, mask)
            clipfrac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
            stats.append((float(pg_loss), float(v_loss), float(entropy), float(approxkl),
                          float(clipfrac), gn))
    pg, vl, ent, akl, cf, gn = (sum(s[i] for s in stats) / len(stats) for i in range(6))
    with torch.no_grad():
        var_ret = float(((returns - masked_mean(returns, mask)) ** 2 * mask).sum() / mask.sum())
        var_res = float(((returns - old_values) ** 2 * mask).sum() / mask.sum())
    lens = mask.sum(1)
    return {
        "objective/kl": kl_mean,
        "objective/kl_coef": coef,
        "objective/entropy": ent,
        "ppo/policy/approxkl": akl,
        "ppo/policy/entropy": ent,
        "ppo/policy/clipfrac": cf,
        "ppo/policy/advantages_mean": float(adv_mean),
        "ppo/loss/policy": pg,
        "ppo/loss/value": vl,
        "ppo/val/var_explained": 1.0 - var_res / max(var_ret, 1e-8),
        "env/reward_mean": float(scores.mean()),
        "env/reward_std": float(scores.std()),
        "tokens/responses_len_mean": float(lens.mean()),
        "grad_norm": gn,
    }


def grpo_update(policy, opt, tokens, mask, scores, old_logp, ref_all, kl_mean, beta, group):
    import torch

    g = scores.view(-1, group)
    std = g.std(1, keepdim=True)
    adv = ((g - g.mean(1, keepdim=True)) / (std + 1e-4)).view(-1, 1)
    logp, logp_all, _ = logprobs_of(policy, tokens)
    ratio = torch.exp(logp - old_logp)  # exactly 1 with one iteration
    pg = -torch.min(adv * ratio, adv * torch.clamp(ratio, 0.8, 1.2))
    ref_logp = ref_all.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    k3 = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    loss = masked_mean(pg + beta * k3, mask)
    gn = _optimize(policy, opt, loss)
    with torch.no_grad():
        entropy = _entropy(logp_all, mask)
        clipped = masked_mean(((ratio - 1).abs() > 0.2).float(), mask)
    lens = mask.sum(1)
    ended = ((tokens[:, 1:] == EOS).float() * mask).sum(1) > 0
    return {
        "loss": float(loss.detach()),
        "kl": kl_mean,
        "beta": beta,
        "reward": float(scores.mean()),
        "reward_std": float(g.std(1).mean()),
        "frac_reward_zero_std": float((std.squeeze(1) < 1e-6).float().mean()),
        "entropy": float(entropy),
        "clip_ratio/region_mean": float(clipped),
        "completions/mean_length": float(lens.mean()),
        "completions/clipped_ratio": float(1.0 - ended.float().mean()),
        "grad_norm": gn,
        "learning_rate": opt.param_groups[0]["lr"],
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
