"""Doctored training runs with known faults, for tests, the detector matrix and
the detector-quality evaluation.

One generator core serves PPO and GRPO: a healthy run is built from shared noise
primitives (AR(1) with heavy-ish tails, random walks, warm-up transients, benign
single-step blips) and a fault is a small object that (1) may change the run's
dynamics before the series are built (KL pressure, a frozen KL controller) and
(2) edits the series inside its window afterwards. Each fault knows its true
window, written next to the run as a labels file.

Everything is deterministic given (algo, scenario, seed, n_steps).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LOG_NAME = "training.jsonl"
LABELS_NAME = "labels.json"
KL_SPIKE_RUN = "logs_doctored_kl_spike"
ADVANTAGE_BIAS = 0.237
WARMUP_STEPS = 4

# Output key per canonical metric: what TRL's PPOTrainer / GRPOTrainer log.
PER_SEQUENCE_KL_KEY = "objective/kl"  # TRL PPO logs KL summed over the response tokens
# (kl: written as TRL PPO's per-sequence objective/kl, see GeneratedRun.rows)
PPO_TRL_KEYS = {
    "kl_coef": "objective/kl_coef",
    "approx_kl": "ppo/policy/approxkl",
    "reward_mean": "env/reward_mean",
    "reward_std": "env/reward_std",
    "entropy": "objective/entropy",
    "clip_frac": "ppo/policy/clipfrac",
    "grad_norm": "grad_norm",
    "value_grad_norm": "critic/grad_norm",
    "policy_loss": "ppo/loss/policy",
    "value_loss": "ppo/loss/value",
    "advantage_mean": "ppo/policy/advantages_mean",
    "explained_var": "ppo/val/var_explained",
    "response_len_mean": "tokens/responses_len_mean",
    "response_clip_ratio": "response_length/clip_ratio",
    "lr": "ppo/learning_rate",
}
GRPO_TRL_KEYS = {
    "kl": "kl",
    "reward_mean": "reward",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "response_len_mean": "completions/mean_length",
    "response_clip_ratio": "completions/clipped_ratio",
    "clip_frac": "clip_ratio/region_mean",
    "entropy": "entropy",
    "grad_norm": "grad_norm",
    "lr": "learning_rate",
}
# GRPO trainers also log these; they are not canonical and stay verbatim.
GRPO_EXTRA_ZERO_KEYS = ("clip_ratio/low_mean", "clip_ratio/high_mean")


@dataclass(frozen=True)
class Label:
    rule: str
    start_step: int
    end_step: int
    # Secondary labels are symptoms a fault legitimately causes: a detection of
    # one is neither a false positive nor required for recall.
    secondary: bool = False

    def to_dict(self) -> dict:
        out = {"rule": self.rule, "start_step": self.start_step, "end_step": self.end_step}
        if self.secondary:
            out["secondary"] = True
        return out


@dataclass
class Dynamics:
    """Knobs a fault may turn before the healthy series are generated."""

    n: int
    kl_pressure: np.ndarray  # multiplies how hard the policy pulls away from the reference
    freeze_coef_at: int | None = None  # the KL controller stops adapting from this step
    kl_beta: float = 0.04  # GRPO: 0 means KL is not logged at all


@dataclass
class GeneratedRun:
    algo: str
    scenario: str
    seed: int
    steps: np.ndarray
    series: dict[str, np.ndarray]
    labels: list[Label]
    extras: dict[str, float] = field(default_factory=dict)

    def rows(self, keys: str = "trl") -> list[dict]:
        names = self._key_names(keys)
        rows = []
        for i, step in enumerate(self.steps):
            row: dict = {"step": int(step)}
            per_sequence = keys == "trl" and self.algo == "ppo"
            for canon, values in self.series.items():
                if per_sequence and canon == "kl":
                    self._write_kl_seq(row, i)
                else:
                    row[names.get(canon, canon)] = _round(values[i])
            if self.algo == "grpo" and keys == "trl":
                row.update(self.extras)
                row["epoch"] = round(float(step) / len(self.steps), 4)
            rows.append(row)
        return rows

    def _write_kl_seq(self, row: dict, i: int) -> None:
        """TRL PPO's objective/kl is per sequence (SPEC kl_seq): the per-token KL times the
        mean response length, so readers derive the same per-token kl back."""
        kl = self.series["kl"][i]
        length = self.series.get("response_len_mean")
        if length is not None and np.isfinite(length[i]) and length[i] > 0:
            row[PER_SEQUENCE_KL_KEY] = _round(kl * length[i])
        else:
            row["kl"] = _round(kl)

    def _key_names(self, keys: str) -> dict[str, str]:
        if keys == "canonical":
            return {}
        return PPO_TRL_KEYS if self.algo == "ppo" else GRPO_TRL_KEYS


def _round(value: float) -> float:
    value = float(value)
    return float(f"{value:.6g}") if np.isfinite(value) else value


# ---------------------------------------------------------------- noise primitives


def ar1(rng: np.random.Generator, n: int, phi: float, sigma: float, df: float = 5.0) -> np.ndarray:
    """Stationary AR(1) with Student-t innovations (heavy-ish tails), unit-free."""
    scale = sigma * np.sqrt((df - 2.0) / df)
    shocks = rng.standard_t(df, n) * scale
    out = np.empty(n)
    out[0] = shocks[0] / np.sqrt(max(1.0 - phi * phi, 1e-6))
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def bounded_walk(rng: np.random.Generator, n: int, sigma: float, pull: float = 0.01) -> np.ndarray:
    """Slow random walk pulled weakly back to zero, like a length or entropy drift."""
    return ar1(rng, n, 1.0 - pull, sigma, df=8.0)


def learning_curve(n: int, start: float, end: float, tau: float) -> np.ndarray:
    t = np.arange(n, dtype=float)
    return start + (end - start) * (1.0 - np.exp(-t / tau))


def add_blips(rng: np.random.Generator, x: np.ndarray, rate: float, low: float, high: float) -> None:
    """Benign single-step multiplicative blips that heal on the next step."""
    n = len(x)
    hits = np.flatnonzero(rng.random(n) < rate)
    hits = hits[hits > WARMUP_STEPS + 2]
    x[hits] *= rng.uniform(low, high, len(hits))


def warmup_ramp(n: int, tau: float) -> np.ndarray:
    return 1.0 - np.exp(-(np.arange(n) + 1.0) / tau)


def ramp(n_total: int, start: int, length: int) -> np.ndarray:
    """0 before start, rising linearly to 1 over `length` steps, 1 afterwards."""
    t = np.arange(n_total, dtype=float)
    return np.clip((t - start + 1.0) / max(length, 1), 0.0, 1.0)


# ---------------------------------------------------------------- healthy runs


def kl_controller(rng: np.random.Generator, dyn: Dynamics, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive KL controller (Ziegler et al.): coef follows KL towards target.

    KL is the policy's pull away from the reference (a mean-reverting log walk
    times the fault's pressure) divided by the penalty coefficient.
    """
    n = dyn.n
    pressure = np.exp(ar1(rng, n, 0.97, 0.04)) * dyn.kl_pressure * warmup_ramp(n, 12.0)
    obs_noise = np.exp(ar1(rng, n, 0.3, 0.07))
    coef0, gain = 0.2, 0.05
    kl = np.empty(n)
    coef = np.empty(n)
    c = coef0
    for i in range(n):
        coef[i] = c
        kl[i] = target * pressure[i] * (coef0 / c) * obs_noise[i]
        frozen = dyn.freeze_coef_at is not None and i >= dyn.freeze_coef_at
        if not frozen:
            c *= 1.0 + gain * float(np.clip(kl[i] / target - 1.0, -0.2, 0.2))
    return kl, coef


def healthy_ppo(rng: np.random.Generator, dyn: Dynamics) -> dict[str, np.ndarray]:
    n = dyn.n
    scale = float(np.exp(rng.normal(0.0, 0.3)))  # each run has its own scale
    target = 0.1 * float(np.exp(rng.normal(0.0, 0.15)))
    kl, kl_coef = kl_controller(rng, dyn, target)
    add_blips(rng, kl, 1 / 600, 1.8, 3.0)

    reward = learning_curve(n, -0.2, 1.2, n / 3.5) * scale + ar1(rng, n, 0.6, 0.06 * scale)
    grad = 2.7 * scale * np.exp(ar1(rng, n, 0.5, 0.18))
    grad[:WARMUP_STEPS] *= np.linspace(4.0, 1.2, WARMUP_STEPS)
    add_blips(rng, grad, 1 / 400, 5.0, 25.0)  # like verl's 66-vs-2.7 step
    vgrad = 22.0 * scale * np.exp(ar1(rng, n, 0.5, 0.2))
    vgrad[:3] *= np.array([43.0, 37.0, 4.0])  # critic warm-up, as in the verl Qwen log
    add_blips(rng, vgrad, 1 / 500, 3.0, 8.0)
    length = 180.0 * np.exp(bounded_walk(rng, n, 0.01) + learning_curve(n, 0.0, 0.15, n / 3))
    series = {
        "kl": kl,
        "kl_coef": kl_coef,
        "approx_kl": 0.015 * np.exp(ar1(rng, n, 0.4, 0.3)) * warmup_ramp(n, 2.0),
        "reward_mean": reward,
        "reward_std": 0.8 * scale * np.exp(ar1(rng, n, 0.8, 0.05)) * learning_curve(n, 1.0, 0.75, n / 3),
        "entropy": 2.4 * np.exp(bounded_walk(rng, n, 0.006) + learning_curve(n, 0.0, -0.25, n / 2)),
        "clip_frac": np.clip(0.11 + ar1(rng, n, 0.5, 0.012), 0.0, 1.0) * warmup_ramp(n, 1.5),
        "grad_norm": grad,
        "value_grad_norm": vgrad,
        "policy_loss": -0.01 + ar1(rng, n, 0.2, 0.012),
        "value_loss": learning_curve(n, 1.0, 0.2, n / 6) * scale**2 * np.exp(ar1(rng, n, 0.5, 0.15)),
        "advantage_mean": ar1(rng, n, 0.2, 0.02),  # whitened: centred on zero
        "explained_var": np.clip(learning_curve(n, -0.8, 0.6, n / 10) + ar1(rng, n, 0.5, 0.04), -5, 1),
        "response_len_mean": length,
        "response_clip_ratio": np.clip(0.02 * np.exp(ar1(rng, n, 0.6, 0.3)), 0.0, 1.0),
        "lr": 1.41e-5 * np.minimum(1.0, (np.arange(n) + 1.0) / 10.0),
    }
    add_blips(rng, series["value_loss"], 1 / 500, 2.0, 4.0)
    return series


def healthy_grpo(rng: np.random.Generator, dyn: Dynamics) -> dict[str, np.ndarray]:
    n = dyn.n
    reward = np.clip(learning_curve(n, 0.2, 0.65, n / 3) + ar1(rng, n, 0.5, 0.04), 0.0, 1.0)
    # Binary-ish rewards: a group's std is zero when all its completions agree.
    zero_std = np.clip(0.12 + 0.5 * (reward - 0.45) ** 2 + ar1(rng, n, 0.4, 0.03), 0.0, 1.0)
    length = 260.0 * np.exp(bounded_walk(rng, n, 0.012) + learning_curve(n, 0.0, 0.2, n / 3))
    grad = 0.35 * np.exp(ar1(rng, n, 0.5, 0.2))
    grad[:WARMUP_STEPS] *= np.linspace(3.0, 1.2, WARMUP_STEPS)
    add_blips(rng, grad, 1 / 400, 4.0, 15.0)
    series = {
        "reward_mean": reward,
        "reward_std": np.clip(0.38 * np.exp(ar1(rng, n, 0.6, 0.06)), 0.0, 1.0),
        "frac_reward_zero_std": zero_std,
        "response_len_mean": length,
        "response_clip_ratio": np.clip(0.03 * np.exp(ar1(rng, n, 0.6, 0.3)), 0.0, 1.0),
        "clip_frac": np.zeros(n),  # on-policy GRPO: the ratio is 1, never clipped
        "entropy": 0.65 * np.exp(bounded_walk(rng, n, 0.008) + learning_curve(n, 0.0, -0.2, n / 2)),
        "grad_norm": grad,
        "lr": 1e-6 * np.minimum(1.0, (np.arange(n) + 1.0) / 20.0),
    }
    if dyn.kl_beta > 0:
        kl = 0.002 * learning_curve(n, 0.05, 4.0, n / 2) * np.exp(ar1(rng, n, 0.6, 0.15))
        kl[0] = 0.0  # first step: policy == reference
        series["kl"] = kl * dyn.kl_pressure
    return series


# ---------------------------------------------------------------- faults

Window = tuple[int, int]
Prepare = Callable[[Dynamics, Window], None]
Apply = Callable[[dict, Window, np.random.Generator], None]


def _noop_prepare(dyn: Dynamics, window: Window) -> None:
    return None


@dataclass(frozen=True)
class Fault:
    rule: str
    algos: tuple[str, ...]
    duration: Callable[[int, np.random.Generator], int | None]  # None: runs to the end
    apply: Apply
    prepare: Prepare = _noop_prepare
    secondary: tuple[str, ...] = ()
    needs_kl: bool = False


def _span(x: np.ndarray, window: Window) -> slice:
    return slice(window[0], window[1] + 1)


def _blend(x: np.ndarray, window: Window, target: np.ndarray | float, onset: int) -> None:
    """Move x towards target inside the window, fully after `onset` steps."""
    s, e = window
    w = ramp(len(x), s, onset)[s : e + 1]
    if isinstance(target, np.ndarray) and len(target) == len(x):
        target = target[s : e + 1]
    x[s : e + 1] = (1 - w) * x[s : e + 1] + w * target


def _kl_spike(series: dict, window: Window, rng: np.random.Generator) -> None:
    kl = series["kl"]
    s, e = window
    base = float(np.median(kl[max(0, s - 50) : s]))
    shape = np.array([0.35, 0.8, 1.0, 0.7, 0.45, 0.3])[: e - s + 1]
    peak = max(1.9, 15 * base) * rng.uniform(0.9, 1.1)
    kl[s : e + 1] = np.maximum(kl[s : e + 1], peak * shape)


def _drift_prepare(dyn: Dynamics, window: Window) -> None:
    dyn.freeze_coef_at = window[0]
    dyn.kl_pressure *= 1.0 + 1.2 * ramp(dyn.n, window[0], 10)


def _controller_drift(series: dict, window: Window, rng: np.random.Generator) -> None:
    s, e = window
    series["kl_coef"][s : e + 1] = series["kl_coef"][s]  # exactly flat, as a stuck controller logs


def _approx_kl_high(series: dict, window: Window, rng: np.random.Generator) -> None:
    series["approx_kl"][_span(series["approx_kl"], window)] *= rng.uniform(9.0, 16.0)


def _advantage_bias(series: dict, window: Window, rng: np.random.Generator) -> None:
    series["advantage_mean"][_span(series["advantage_mean"], window)] += ADVANTAGE_BIAS


def _entropy_collapse(series: dict, window: Window, rng: np.random.Generator) -> None:
    ent = series["entropy"]
    s, e = window
    t = np.arange(e - s + 1, dtype=float)
    ent[s : e + 1] *= 0.04 + 0.96 * np.exp(-t / rng.uniform(12.0, 25.0))


def _grad_norm_spike(series: dict, window: Window, rng: np.random.Generator) -> None:
    series["grad_norm"][_span(series["grad_norm"], window)] *= rng.uniform(12.0, 30.0, window[1] - window[0] + 1)


def _grad_imbalance(series: dict, window: Window, rng: np.random.Generator) -> None:
    vg = series["value_grad_norm"]
    s, e = window
    vg[s : e + 1] *= 1.0 + rng.uniform(40.0, 70.0) * ramp(len(vg), s, 8)[s : e + 1]


def _non_finite(series: dict, window: Window, rng: np.random.Generator) -> None:
    s, e = window
    names = [m for m in ("policy_loss", "grad_norm", "value_loss") if m in series]
    for name in names:
        series[name][s : e + 1] = np.nan
    series["grad_norm"][s] = np.inf  # fp16 overflow usually shows up as inf first


def _reward_hacking_prepare(dyn: Dynamics, window: Window) -> None:
    s = window[0]
    growth = np.where(np.arange(dyn.n) >= s, 1.012 ** (np.arange(dyn.n) - s), 1.0)
    dyn.kl_pressure *= growth


def _reward_hacking(series: dict, window: Window, rng: np.random.Generator) -> None:
    s, e = window
    n = len(series["reward_mean"])
    up = ramp(n, s, (e - s) // 2)[s : e + 1]
    r = series["reward_mean"]
    level = float(np.median(r[max(0, s - 50) : s]))
    spread = float(np.std(r[: s])) + 1e-9
    cap = 1.0 if "frac_reward_zero_std" in series else np.inf
    r[s : e + 1] = np.minimum(r[s : e + 1] + up * max(0.6 * abs(level), 6 * spread), cap)
    series["response_len_mean"][s : e + 1] *= 1.0 + 0.9 * up
    if "frac_reward_zero_std" in series and "kl" in series:
        series["kl"][s : e + 1] *= 1.0 + 3.0 * up


def _reward_collapse(series: dict, window: Window, rng: np.random.Generator) -> None:
    r = series["reward_mean"]
    s, _ = window
    floor = 0.02 if "frac_reward_zero_std" in series else float(np.quantile(r[: max(s, 2)], 0.02)) - 0.5 * float(np.std(r[:s]) + 1e-9)
    _blend(r, window, floor + 0.1 * (r - np.median(r)), onset=8)
    _blend(series["reward_std"], window, 0.15 * series["reward_std"], onset=8)
    if "frac_reward_zero_std" in series:
        _blend(series["frac_reward_zero_std"], window, 0.9, onset=8)


def _clip_frac_high(series: dict, window: Window, rng: np.random.Generator) -> None:
    cf = series["clip_frac"]
    _blend(cf, window, np.clip(rng.uniform(0.43, 0.55) + 0.03 * rng.standard_normal(len(cf)), 0, 1), onset=4)


def _length_explosion(series: dict, window: Window, rng: np.random.Generator) -> None:
    s, e = window
    n = len(series["response_len_mean"])
    cap = 512.0 if "frac_reward_zero_std" in series else 400.0
    length = series["response_len_mean"]
    grow = ramp(n, s, max(20, (e - s) // 3))[s : e + 1]
    length[s : e + 1] = np.minimum(length[s : e + 1] * (1.0 + 2.5 * grow), cap * 0.985)
    clipped = np.clip(0.97 * grow + 0.02 * rng.standard_normal(e - s + 1), 0.0, 1.0)
    series["response_clip_ratio"][s : e + 1] = np.maximum(series["response_clip_ratio"][s : e + 1], clipped)
    r = series["reward_mean"]  # learning stops: reward flat at its level
    level = float(np.median(r[max(0, s - 30) : s]))
    r[s : e + 1] = level + (r[s : e + 1] - np.median(r[s : e + 1])) * 0.5


def _length_collapse(series: dict, window: Window, rng: np.random.Generator) -> None:
    length = series["response_len_mean"]
    _blend(length, window, rng.uniform(4.0, 12.0) * np.exp(0.1 * rng.standard_normal(len(length))), onset=15)


def _zero_std_groups(series: dict, window: Window, rng: np.random.Generator) -> None:
    zs = series["frac_reward_zero_std"]
    _blend(zs, window, np.clip(0.88 + 0.04 * rng.standard_normal(len(zs)), 0, 1), onset=10)
    _blend(series["reward_std"], window, 0.06 * series["reward_std"] / 0.38, onset=10)


def _value_divergence(series: dict, window: Window, rng: np.random.Generator) -> None:
    s, e = window
    t = np.arange(e - s + 1, dtype=float)
    series["value_loss"][s : e + 1] *= np.exp(t / rng.uniform(15.0, 30.0)).clip(max=1e4)
    _blend(series["explained_var"], window, -2.0 - 0.02 * np.arange(len(series["explained_var"])) / 10, onset=30)
    series["value_grad_norm"][s : e + 1] *= 1.0 + 2.0 * ramp(len(t), 0, 30)


def _short(lo: int, hi: int) -> Callable[[int, np.random.Generator], int]:
    return lambda n, rng: int(rng.integers(lo, hi + 1))


def _bounded(frac_lo: float, frac_hi: float) -> Callable[[int, np.random.Generator], int]:
    return lambda n, rng: max(10, int(n * rng.uniform(frac_lo, frac_hi)))


def _to_end(n: int, rng: np.random.Generator) -> None:
    return None


BOTH = ("ppo", "grpo")
FAULTS: dict[str, Fault] = {
    "kl_spike": Fault("kl_spike", BOTH, _short(5, 6), _kl_spike, needs_kl=True),
    "kl_controller_drift": Fault(
        "kl_controller_drift", ("ppo",), _to_end, _controller_drift, _drift_prepare,
        secondary=("kl_spike",),  # a stuck controller lets KL run past the guardrail
    ),
    "approx_kl_high": Fault("approx_kl_high", ("ppo",), _bounded(0.08, 0.12), _approx_kl_high),
    "advantage_bias": Fault("advantage_bias", ("ppo",), _to_end, _advantage_bias),
    "entropy_collapse": Fault("entropy_collapse", BOTH, _to_end, _entropy_collapse),
    "grad_norm_spike": Fault("grad_norm_spike", BOTH, _short(4, 8), _grad_norm_spike),
    "grad_imbalance": Fault("grad_imbalance", ("ppo",), _bounded(0.15, 0.25), _grad_imbalance),
    "non_finite": Fault("non_finite", BOTH, _short(3, 8), _non_finite, secondary=("grad_norm_spike",)),
    "reward_hacking": Fault(
        "reward_hacking", BOTH, _to_end, _reward_hacking, _reward_hacking_prepare,
        # the rule is defined by reward, length AND KL rising together: KL must be logged
        secondary=("kl_spike", "length_explosion"), needs_kl=True,
    ),
    "reward_collapse": Fault(
        "reward_collapse", BOTH, _to_end, _reward_collapse, secondary=("zero_std_groups",)
    ),
    "clip_frac_high": Fault("clip_frac_high", ("ppo",), _bounded(0.08, 0.12), _clip_frac_high),
    "length_explosion": Fault("length_explosion", BOTH, _to_end, _length_explosion),
    "length_collapse": Fault("length_collapse", BOTH, _to_end, _length_collapse),
    "zero_std_groups": Fault("zero_std_groups", ("grpo",), _to_end, _zero_std_groups),
    "value_divergence": Fault(
        "value_divergence", ("ppo",), _to_end, _value_divergence, secondary=("grad_imbalance",)
    ),
}


def scenarios(algo: str) -> list[str]:
    """'clean' first, then one scenario per rule this algorithm can show."""
    return ["clean"] + [name for name, f in FAULTS.items() if algo in f.algos]


# ---------------------------------------------------------------- the core


def _seed_for(algo: str, scenario: str, seed: int, n_steps: int) -> int:
    return zlib.crc32(f"{algo}/{scenario}/{seed}/{n_steps}".encode())


@dataclass(frozen=True)
class Injection:
    fault: Fault
    window: Window


def generate(algo: str, injections: list[Injection], seed: int, n_steps: int, scenario: str,
             kl_beta: float | None = None) -> GeneratedRun:
    """The one generator: healthy series for `algo`, then each injection in order."""
    if algo not in ("ppo", "grpo"):
        raise ValueError(f"unknown algorithm {algo!r} (expected ppo or grpo)")
    rng = np.random.default_rng(_seed_for(algo, scenario, seed, n_steps))
    beta = kl_beta if kl_beta is not None else (0.04 if seed % 2 == 0 else 0.0)
    if any(inj.fault.needs_kl for inj in injections):
        beta = max(beta, 0.04)
    dyn = Dynamics(n=n_steps, kl_pressure=np.ones(n_steps), kl_beta=beta)
    for inj in injections:
        inj.fault.prepare(dyn, inj.window)
    series = (healthy_ppo if algo == "ppo" else healthy_grpo)(rng, dyn)
    labels: list[Label] = []
    for inj in injections:
        inj.fault.apply(series, inj.window, rng)
        s, e = inj.window
        labels.append(Label(inj.fault.rule, s, e))
        labels.extend(Label(rule, s, e, secondary=True) for rule in inj.fault.secondary)
    extras = {k: 0.0 for k in GRPO_EXTRA_ZERO_KEYS} if algo == "grpo" else {}
    return GeneratedRun(algo, scenario, seed, np.arange(n_steps), series, labels, extras)


def scenario_run(algo: str, scenario: str, seed: int, n_steps: int = 1000) -> GeneratedRun:
    """A clean run or a run with one fault in a seed-dependent window."""
    if scenario == "clean":
        return generate(algo, [], seed, n_steps, scenario)
    fault = FAULTS.get(scenario)
    if fault is None or algo not in fault.algos:
        raise ValueError(f"no {algo} scenario named {scenario!r}; choose from {', '.join(scenarios(algo))}")
    rng = np.random.default_rng(_seed_for(algo, scenario + "/window", seed, n_steps))
    start = int(n_steps * rng.uniform(0.45, 0.7))
    length = fault.duration(n_steps, rng)
    end = n_steps - 1 if length is None else min(n_steps - 1, start + length - 1)
    return generate(algo, [Injection(fault, (start, end))], seed, n_steps, scenario)


def kl_spike_run(seed: int = 0) -> GeneratedRun:
    """The classic doctored run: 1,000 steps, KL surge 800-804, then a stuck
    controller with KL above target through 999, advantage bias ~0.237 from 600."""
    n = 1000
    injections = [
        Injection(FAULTS["kl_controller_drift"], (800, 999)),
        Injection(FAULTS["kl_spike"], (800, 804)),
        Injection(FAULTS["advantage_bias"], (600, 999)),
    ]
    return generate("ppo", injections, seed, n, KL_SPIKE_RUN)


# ---------------------------------------------------------------- writing


def write_run(run: GeneratedRun, directory: Path, keys: str = "trl") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / LOG_NAME
    with log.open("w", encoding="utf-8") as fh:
        for row in run.rows(keys):
            fh.write(json.dumps(row) + "\n")  # NaN / Infinity tokens, as Python loggers write them
    labels = [label.to_dict() for label in run.labels]
    (directory / LABELS_NAME).write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    return log


def read_labels(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / LABELS_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def write_fixtures(out: Path, grpo: bool = False, seeds: int = 5, n_steps: int = 1000,
                   keys: str = "trl") -> list[Path]:
    """PPO: out/logs_doctored_kl_spike + out/logs_ppo/seed_k/<scenario>/.
    GRPO: out/seed_k/<scenario>/ (make fixtures-grpo points out at logs_grpo)."""
    out = Path(out)
    written: list[Path] = []
    algo = "grpo" if grpo else "ppo"
    root = out if grpo else out / "logs_ppo"
    if not grpo:
        written.append(write_run(kl_spike_run(0), out / KL_SPIKE_RUN, keys).parent)
    for seed in range(seeds):
        for scenario in scenarios(algo):
            run = scenario_run(algo, scenario, seed, n_steps)
            written.append(write_run(run, root / f"seed_{seed}" / scenario, keys).parent)
    return written
