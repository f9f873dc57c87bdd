"""Comprehensive PPO/GRPO analysis: one health section per component of a finished run.

`analyze_run(run)` scans the run (the same `detect` and `health` as `rldk-engine scan`)
and adds, per component, the shape of the whole run as numbers. Everything is a few
vectorised numpy passes per metric; long series are summarised in blocks of `W` points,
`W = clip(n // 50, 5, 200)` logged points (n = the metric's finite points).

Formulas (README copy). `ramp(x, good, bad)` is 1 at x <= good, 0 at x >= bad, linear
between. The first `warmup_points(n)` points (3..25) never count.

* kl — target: `--kl-target`, else the adaptive controller's implied target (the KL at
  which a regression of the next step's d log(kl_coef) on KL crosses zero, over the
  settled first half), else no target: the envelope then follows the KL's own block
  median. Envelope: [target / 1.5, target * 1.5] (own level: [level / 2, level * 2],
  +-0.005 nats). `inside` = fraction of points in the envelope, scored ramp(1 - inside,
  0.05, 0.5). Overshoot = peak of the 3-point median of KL over the envelope's upper edge,
  minus 1, scored ramp(overshoot, 0.5, 4). Oscillation = full swings from above the
  envelope to below it (or back) per 100 points, ramp(swings, 0.5, 5). Responsiveness
  (adaptive controller only, 10+ off-target points) = share of off-target points (on the
  3-point median) after which kl_coef moves in
  the right direction (at the lag of best correlation, 0..5, between log(kl/target) and
  d log kl_coef), scored ramp(1 - responsiveness, 0.2, 0.8).
* gradients — per norm (grad_norm = policy, value_grad_norm = value head): exploding =
  share of points > 10x the run's median, ramp(0.005, 0.05); vanishing = share < 1/100 of
  it, ramp(0.01, 0.2); spikes = runs of points > 5x their block median: a run of at most
  2 points that comes back is healed (free), a longer one persisted, scored by its peak
  ratio ramp(log10 peak, log10 5, 2). Imbalance = share of points whose block median of
  log10(value/policy) is more than a decade from the run's median, ramp(0.02, 0.3).
* advantages — z = advantage_mean / median advantage_std (1 if not logged); bias = mean z;
  peak bias = largest |block mean of z|, ramp(0.08, 0.4); normalised = share of points whose
  block mean |z| <= 0.1, ramp(1 - normalised, 0.05, 0.5); scale = median advantage_std,
  ramp(|log10 scale|, 1, 3); skew is evidence only.
* reward — range = q95 - q5 of the points; collapse = (best block mean - mean of the
  last 10 %) / range, ramp(0.3, 0.8); volatility = diff-based noise / range (evidence);
  volatility burst = largest / median block std, ramp(4, 15) (10+ blocks); saturation =
  share of points pinned at the run's max or min, ramp(0.2, 0.8); trend = least-squares
  change over the run / range (evidence).
* length — early = median of the first 10 % after warm-up; drift = largest
  |ln(block median / early)|, ramp(ln 2, ln 6); truncation = largest block mean of
  response_clip_ratio, ramp(0.15, 0.6).

A component's `feature_health` is the product of its check scores; `anomaly_health` is
`health.health()` (the scan's formula) of the scan anomalies touching it, each rule's
warning/critical windows first merged into one finding (worst severity, union of the
windows' steps) so that a fault split into several windows never costs more than one;
`health = feature_health * anomaly_health`. `component_score = 0.5 * min + 0.5 * mean` of
the available components' health (one broken component pulls it down, however many are
fine). `overall` / `stability` are the scan report's health for the run, unchanged.
Components whose metrics are absent are `{"available": false}` and do not count.

Output files of `write_analysis(..., out_dir)`:

comprehensive_analysis.json — the dict `analyze_run` returns.

metrics.csv — one row per logged step: `step`, then per canonical metric present
  `<metric>` (the logged value, empty when not logged), `<metric>_roll_mean` and
  `<metric>_roll_std` (mean and population std of the finite values among the last `W`
  rows, the row itself included; `W` is the analysis window).

health_timeline.csv — one row per step window (about 100 windows of equal row count):
  `window`, `start_step`, `end_step`, `n_steps`, then one column per available component:
  the share of the window's points that pass the component's checks (KL inside the
  envelope; norms not exploding, vanishing, in a persisted spike or imbalanced; |block
  bias| <= 0.1; reward not more than 30 % of its range below its best so far; length
  within 2x of its early level and truncation <= 0.15), times (1 - severity weight) of
  the worst scan anomaly of that component overlapping the window (weights 0.005, 0.15,
  0.4 for info, warning, critical). Empty when the window holds no scored point of the
  component (warm-up points are not scored).

summary.csv — one row per component: `component`, `available`, `health`,
  `feature_health`, `anomaly_health`, `n_anomalies`, `worst_severity`, `weakest_check`,
  `weakest_score`, then the run's `overall`, `stability` and `component_score`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from rldk_engine.constants import NOISE_SIGMA, SEVERITY_RANK
from rldk_engine.rulebook import COMPONENTS, component_rules

if TYPE_CHECKING:
    from rldk_engine.forensics.detectors import Anomaly
    from rldk_engine.ingest.run import Run

COMPONENT_METRICS = {
    "kl": ("kl", "kl_coef", "approx_kl"),
    "gradients": ("grad_norm", "value_grad_norm", "policy_loss", "value_loss", "explained_var"),
    "advantages": ("advantage_mean", "advantage_std"),
    "reward": ("reward_mean", "reward_std", "frac_reward_zero_std"),
    "length": ("response_len_mean", "response_clip_ratio"),
}
COMPONENT_RULES = {component: component_rules(component) for component in COMPONENTS}
KL_ENVELOPE = 1.5  # target / 1.5 .. target * 1.5
KL_LEVEL_ENVELOPE = 2.0  # without a target: own level / 2 .. level * 2
KL_SLACK = 0.005  # nats: KL near zero is noise
EXPLODE_X = 10.0
VANISH_X = 0.01
SPIKE_X = 5.0
HEAL_POINTS = 2
MIN_OFF_TARGET = 10  # fewer off-target points say nothing about the controller
BIAS_OK = 0.1
TIMELINE_WINDOWS = 100


# ---------------------------------------------------------------- numeric helpers


def ramp(x: float | None, good: float, bad: float) -> float:
    """1 at x <= good, 0 at x >= bad, linear between; no measurement scores 1."""
    if x is None or not math.isfinite(x):
        return 1.0 if x is None or math.isnan(x) else 0.0
    return float(min(1.0, max(0.0, (bad - x) / (bad - good))))


def window_size(n: int) -> int:
    return int(min(200, max(5, n // 50)))


def _blocks(x: np.ndarray, w: int, stat) -> np.ndarray:
    """Per point, `stat` of its block of w points (the last partial block on its own)."""
    n = x.size
    full = n // w
    parts = []
    if full:
        parts.append(np.repeat(stat(x[: full * w].reshape(full, w), axis=1), w))
    if n > full * w:
        parts.append(np.full(n - full * w, stat(x[full * w :])))
    return np.concatenate(parts) if parts else x.copy()


def block_median(x: np.ndarray, w: int) -> np.ndarray:
    return _blocks(x, w, np.median)


def block_mean(x: np.ndarray, w: int) -> np.ndarray:
    return _blocks(x, w, np.mean)


def median3(x: np.ndarray) -> np.ndarray:
    """3-point running median: a one-step blip that heals at once disappears."""
    if x.size < 3:
        return x.copy()
    a, b, c = x[:-2], x[1:-1], x[2:]
    mid = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return np.concatenate([x[:1], mid, x[-1:]])


def runs_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends exclusive) of the True runs of a boolean mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def noise_sigma(x: np.ndarray) -> float:
    """Point noise from first differences (robust; a slow trend barely moves it)."""
    if x.size < 3:
        return 0.0
    d = np.diff(x)
    if d.size > 8_000:
        d = d[:: d.size // 8_000]
    return float(NOISE_SIGMA * np.median(np.abs(d - np.median(d))))


def _r(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


@dataclass
class Series:
    """A metric's finite points after warm-up, with their row positions in the run."""

    rows: np.ndarray
    values: np.ndarray

    @property
    def n(self) -> int:
        return int(self.values.size)


def series(run: Run, name: str) -> Series | None:
    from rldk_engine.forensics.detectors import warmup_points

    col = run.columns.get(name)
    if col is None:
        return None
    rows = np.flatnonzero(np.isfinite(col))
    if rows.size < 5:
        return None
    warm = warmup_points(rows.size)
    if rows.size - warm < 3:
        warm = 0
    return Series(rows[warm:], col[rows[warm:]])


@dataclass
class Component:
    name: str
    available: bool
    scores: dict[str, float] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    ok_rows: np.ndarray | None = None  # rows with a point of this component
    ok_values: np.ndarray | None = None  # 1.0 where that point passes the checks


def _unavailable(name: str) -> Component:
    return Component(name, False)


def _merge_ok(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of several series; a row passes only if it passes in every series holding it."""
    size = max(int(r[-1]) for r, _ in parts) + 1  # rows are sorted row positions
    present = np.zeros(size, dtype=bool)
    ok = np.ones(size)
    for r, v in parts:
        present[r] = True
        ok[r] = np.minimum(ok[r], v)
    rows = np.flatnonzero(present)
    return rows, ok[rows]


# ---------------------------------------------------------------- components


def implied_kl_target(kl: np.ndarray, dlog_coef: np.ndarray) -> float | None:
    """KL at which the controller's next d log(coef) is zero (least squares), if sane."""
    ok = np.isfinite(kl) & np.isfinite(dlog_coef)
    if ok.sum() < 10:
        return None
    x, y = kl[ok], dlog_coef[ok]
    sx = float(np.std(x))
    if sx <= 0:
        return None
    slope = float(np.mean((x - x.mean()) * (y - y.mean()))) / sx**2
    if slope <= 0:
        return None
    target = float(x.mean() - y.mean() / slope)
    lo, hi = np.quantile(x, [0.05, 0.95])
    return target if lo <= target <= hi and target > 0 else None


def _coef_steps(run: Run, s: Series) -> np.ndarray | None:
    """d log(kl_coef) from each KL point's row to the next row (NaN when unknown)."""
    coef = run.columns.get("kl_coef")
    if coef is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(np.where(coef > 0, coef, np.nan))
    nxt = np.minimum(s.rows + 1, coef.size - 1)
    d = logc[nxt] - logc[s.rows]
    d[s.rows + 1 >= coef.size] = np.nan
    return d


def _best_lag(err: np.ndarray, d: np.ndarray, max_lag: int = 5) -> tuple[int, float | None]:
    best, best_corr = 0, None
    for lag in range(0, min(max_lag, err.size - 5) + 1):
        a, b = err[: err.size - lag], d[lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        c = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if best_corr is None or c > best_corr:
            best, best_corr = lag, c
    return best, best_corr


def analyze_kl(run: Run, kl_target: float | None, w: int) -> Component:
    s = series(run, "kl")
    if s is None:
        return _unavailable("kl")
    kl = s.values
    d = _coef_steps(run, s)
    half = kl[: max(10, kl.size // 2)]
    adaptive = d is not None and bool(np.mean(np.abs(np.nan_to_num(d[: half.size])) > 1e-12) >= 0.5)
    ev: dict = {"points": s.n}
    if kl_target is not None:
        mode, target = "given", float(kl_target)
    elif adaptive and d is not None:
        implied = implied_kl_target(half, d[: half.size])
        mode = "controller"
        target = implied if implied is not None else float(np.median(half))
        ev["target_source"] = "controller_implied" if implied is not None else "settled_median"
    else:
        mode, target = "own_level", None
    if target is not None:
        lower = np.full(kl.size, target / KL_ENVELOPE)
        upper = np.full(kl.size, target * KL_ENVELOPE)
    else:
        level = block_median(kl, w)
        lower = level / KL_LEVEL_ENVELOPE - KL_SLACK
        upper = np.maximum(level, 0.0) * KL_LEVEL_ENVELOPE + KL_SLACK
    inside_mask = (kl >= lower) & (kl <= upper)
    inside = float(inside_mask.mean())
    smooth = median3(kl)
    with np.errstate(divide="ignore", invalid="ignore"):
        overshoot = max(0.0, float(np.nanmax(smooth / np.maximum(upper, 1e-12))) - 1.0)
    state = np.where(smooth > upper, 1, np.where(smooth < lower, -1, 0))
    state = state[state != 0]
    swings = int(np.count_nonzero(np.diff(state))) if state.size > 1 else 0
    swings_per_100 = 100.0 * swings / kl.size
    ev.update({
        "mode": mode, "target": _r(target),
        "envelope": [_r(target / KL_ENVELOPE), _r(target * KL_ENVELOPE)] if target is not None
        else f"own block median / {KL_LEVEL_ENVELOPE:g} .. x {KL_LEVEL_ENVELOPE:g} (+-{KL_SLACK} nats)",
        "inside_fraction": _r(inside), "overshoot": _r(overshoot),
        "swings_per_100_steps": _r(swings_per_100),
        "median": _r(np.median(kl)), "p95": _r(np.quantile(kl, 0.95)), "max": _r(kl.max()),
    })
    scores = {
        "inside_envelope": ramp(1.0 - inside, 0.05, 0.5),
        "overshoot": ramp(overshoot, 0.5, 4.0),
        "oscillation": ramp(swings_per_100, 0.5, 5.0),
    }
    if d is not None and target is not None and (adaptive or np.any(np.abs(np.nan_to_num(d)) > 1e-12)):
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.log(np.where(kl > 0, kl, np.nan) / target)
        lag, corr = _best_lag(err, d)
        # off target on the 3-point median: a blip that heals at once needs no response
        smooth_inside = (smooth >= lower) & (smooth <= upper)
        off = ~smooth_inside[: kl.size - lag] & np.isfinite(err[: kl.size - lag]) & np.isfinite(d[lag:])
        ev["controller_lag"] = lag
        ev["controller_corr"] = _r(corr)
        ev["off_target_points"] = int(off.sum())
        if off.sum() >= MIN_OFF_TARGET:
            right = np.sign(d[lag:][off]) == np.sign(err[: kl.size - lag][off])
            responsiveness = float(right.mean())
            ev["responsiveness"] = _r(responsiveness)
            scores["responsiveness"] = ramp(1.0 - responsiveness, 0.2, 0.8)
        else:
            ev["responsiveness"] = None
    approx = series(run, "approx_kl")
    if approx is not None:
        ev["approx_kl_median"] = _r(np.median(approx.values))
        ev["approx_kl_p95"] = _r(np.quantile(approx.values, 0.95))
    return Component("kl", True, scores, ev, s.rows, inside_mask.astype(float))


def _norm_checks(s: Series, w: int) -> tuple[dict, dict, np.ndarray]:
    x = s.values
    med = float(np.median(x))
    exploding = x > EXPLODE_X * med
    vanishing = x <= VANISH_X * med
    ref = block_median(x, w)
    ratio = x / np.maximum(ref, 1e-30)
    spike = ratio > SPIKE_X
    starts, ends = runs_of(spike)
    lengths = ends - starts
    # a spike at the very end has not been seen to heal
    healed = (lengths <= HEAL_POINTS) & (ends < x.size)
    peaks = np.maximum.reduceat(ratio, starts) if starts.size else np.zeros(0)
    persisted_peak = float(peaks[~healed].max()) if (~healed).any() else None
    in_persisted = np.zeros(x.size, dtype=bool)
    for a, b in zip(starts[~healed], ends[~healed], strict=True):  # few episodes
        in_persisted[a:b] = True
    ev = {
        "median": _r(med), "p95": _r(np.quantile(x, 0.95)), "max": _r(x.max()),
        "exploding_fraction": _r(exploding.mean()), "vanishing_fraction": _r(vanishing.mean()),
        "spikes_healed": int(healed.sum()), "spikes_persisted": int((~healed).sum()),
        "persisted_peak_ratio": _r(persisted_peak),
    }
    scores = {
        "exploding": ramp(float(exploding.mean()), 0.005, 0.05),
        "vanishing": ramp(float(vanishing.mean()), 0.01, 0.2),
        "persisted_spikes": ramp(math.log10(persisted_peak) if persisted_peak else None,
                                 math.log10(SPIKE_X), 2.0),
    }
    ok = ~(exploding | vanishing | in_persisted)
    return ev, scores, ok.astype(float)


def analyze_gradients(run: Run, w: int) -> Component:
    policy, value = series(run, "grad_norm"), series(run, "value_grad_norm")
    if policy is None and value is None:
        return _unavailable("gradients")
    ev: dict = {}
    scores: dict[str, float] = {}
    parts = []
    for label, s in (("policy", policy), ("value", value)):
        if s is None:
            continue
        e, sc, ok = _norm_checks(s, w)
        ev[label] = e
        scores.update({f"{label}_{k}": v for k, v in sc.items()})
        parts.append((s.rows, ok))
    if policy is not None and value is not None:
        rows = np.intersect1d(policy.rows, value.rows)
        if rows.size >= 5:
            pg = run.columns["grad_norm"][rows]
            vg = run.columns["value_grad_norm"][rows]
            with np.errstate(divide="ignore", invalid="ignore"):
                lr = np.log10(vg / pg)
            good = np.isfinite(lr)
            rows, lr = rows[good], lr[good]
            if rows.size >= 5:
                med = float(np.median(lr))
                imbalanced = np.abs(block_median(lr, w) - med) > 1.0
                ev["value_to_policy_ratio"] = {
                    "median": _r(10**med), "min_block": _r(10 ** block_median(lr, w).min()),
                    "max_block": _r(10 ** block_median(lr, w).max()),
                    "imbalanced_fraction": _r(imbalanced.mean()),
                }
                scores["imbalance"] = ramp(float(imbalanced.mean()), 0.02, 0.3)
                parts.append((rows, (~imbalanced).astype(float)))
    rows, ok = _merge_ok(parts)
    return Component("gradients", True, scores, ev, rows, ok)


def _skew(x: np.ndarray) -> float | None:
    sd = float(np.std(x))
    if sd == 0:
        return 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3))


def analyze_advantages(run: Run, w: int) -> Component:
    s = series(run, "advantage_mean")
    if s is None:
        return _unavailable("advantages")
    std = series(run, "advantage_std")
    scale = float(np.median(std.values)) if std is not None else None
    unit = scale if scale and scale > 0 else 1.0
    z = s.values / unit
    bm = block_mean(z, w)
    normalised = np.abs(bm) <= BIAS_OK
    ev = {
        "bias": _r(z.mean()), "peak_block_bias": _r(np.abs(bm).max()),
        "scale": _r(scale), "skew": _r(_skew(s.values)),
        "normalised_fraction": _r(normalised.mean()),
        "units": "advantage_std" if std is not None else "raw (advantage_std not logged)",
    }
    scores = {
        "bias": ramp(float(np.abs(bm).max()), 0.08, 0.4),
        "normalisation": ramp(1.0 - float(normalised.mean()), 0.05, 0.5),
    }
    if scale is not None and scale > 0:
        scores["scale"] = ramp(abs(math.log10(scale)), 1.0, 3.0)
    return Component("advantages", True, scores, ev, s.rows, normalised.astype(float))


def analyze_reward(run: Run, w: int) -> Component:
    s = series(run, "reward_mean")
    if s is None:
        return _unavailable("reward")
    r = s.values
    q5, q95 = np.quantile(r, [0.05, 0.95])
    span = max(float(q95 - q5), 1e-12)
    level = block_mean(r, w)
    best = float(level.max())
    tail = r[-max(3, r.size // 10):]
    final = float(tail.mean())
    drawdown = max(0.0, best - final) / span
    sigma = noise_sigma(r)
    t = np.arange(r.size, dtype=float)
    slope = float(np.polyfit(t, r, 1)[0]) if r.size >= 3 else 0.0
    ev = {
        "first": _r(r[: max(3, r.size // 10)].mean()), "final": _r(final), "best_block": _r(best),
        "range_q5_q95": _r(span), "trend_over_run": _r(slope * (r.size - 1) / span),
        "volatility": _r(sigma / span), "collapse_drawdown": _r(drawdown),
    }
    scores = {"collapse": ramp(drawdown, 0.3, 0.8)}
    nb = r.size // w
    if nb >= 10:
        bstd = r[: nb * w].reshape(nb, w).std(axis=1)
        med_std = float(np.median(bstd))
        burst = float(bstd.max()) / med_std if med_std > 0 else None
        ev["volatility_burst"] = _r(burst)
        scores["volatility_burst"] = ramp(burst, 4.0, 15.0)
    tol = 1e-9 * (1.0 + max(abs(float(r.max())), abs(float(r.min()))))
    pinned = (r >= r.max() - tol) | (r <= r.min() + tol)
    ev["saturation"] = _r(pinned.mean())
    scores["saturation"] = ramp(float(pinned.mean()), 0.2, 0.8)
    zs = series(run, "frac_reward_zero_std")
    if zs is not None:
        ev["frac_reward_zero_std_mean"] = _r(zs.values.mean())
        ev["frac_reward_zero_std_final"] = _r(zs.values[-max(3, zs.n // 10):].mean())
    ok = (np.maximum.accumulate(level) - level) <= 0.3 * span
    return Component("reward", True, scores, ev, s.rows, ok.astype(float))


def analyze_length(run: Run, w: int) -> Component:
    s = series(run, "response_len_mean")
    clip = series(run, "response_clip_ratio")
    if s is None and clip is None:
        return _unavailable("length")
    ev: dict = {}
    scores: dict[str, float] = {}
    parts = []
    if s is not None:
        L = s.values
        early = float(np.median(L[: max(5, L.size // 10)]))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.abs(np.log(block_median(L, w) / early)) if early > 0 else np.full(L.size, np.inf)
        dev = np.nan_to_num(dev, nan=np.inf, posinf=np.inf)  # keep inf: no ratio from 0
        drift = float(dev.max())
        ev.update({
            "early": _r(early), "final": _r(np.median(L[-max(3, L.size // 10):])),
            "final_ratio": _r(np.median(L[-max(3, L.size // 10):]) / early) if early > 0 else None,
            "max_drift_ratio": _r(math.exp(drift)) if drift < 700 else None,  # exp overflows
        })
        scores["drift"] = ramp(drift, math.log(2.0), math.log(6.0))
        parts.append((s.rows, (dev <= math.log(2.0)).astype(float)))
    if clip is not None:
        c = block_mean(clip.values, w)
        ev["truncation_mean"] = _r(clip.values.mean())
        ev["truncation_final"] = _r(clip.values[-max(3, clip.n // 10):].mean())
        ev["truncation_peak_block"] = _r(c.max())
        scores["truncation"] = ramp(float(c.max()), 0.15, 0.6)
        parts.append((clip.rows, (c <= 0.15).astype(float)))
    rows, ok = _merge_ok(parts)
    return Component("length", True, scores, ev, rows, ok)


# ---------------------------------------------------------------- assembly


def touches(anomaly: Anomaly, component: str) -> bool:
    if anomaly.rule in COMPONENT_RULES[component]:
        return True
    return anomaly.rule == "non_finite" and anomaly.metric in COMPONENT_METRICS[component]


def component_score(healths: list[float]) -> float | None:
    """0.5 * weakest + 0.5 * mean of the available components' health."""
    if not healths:
        return None
    return round(0.5 * min(healths) + 0.5 * sum(healths) / len(healths), 4)


def _components(run: Run, kl_target: float | None) -> list[Component]:
    n = max((int(np.isfinite(c).sum()) for c in run.columns.values()), default=0)
    w = window_size(n)
    return [
        analyze_kl(run, kl_target, w),
        analyze_gradients(run, w),
        analyze_advantages(run, w),
        analyze_reward(run, w),
        analyze_length(run, w),
    ]


def _analyze(run: Run, kl_target: float | None = None, preset: str = "auto"):
    from rldk_engine import __version__
    from rldk_engine.forensics.detectors import detect, infer_algorithm
    from rldk_engine.forensics.health import health

    if kl_target is not None and not (math.isfinite(kl_target) and kl_target > 0):
        raise ValueError(f"--kl-target must be a positive number, not {kl_target!r}")
    anomalies = detect(run, preset=preset)
    comps = _components(run, kl_target)
    sections: dict[str, dict] = {}
    touching: dict[str, list] = {}
    for comp in comps:
        if not comp.available:
            sections[comp.name] = {"available": False}
            continue
        mine = [a for a in anomalies if touches(a, comp.name)]
        touching[comp.name] = mine
        feature = float(np.prod(list(comp.scores.values()))) if comp.scores else 1.0
        from_anomalies = health(mine, run)["overall"]
        sections[comp.name] = {
            "available": True,
            "health": round(feature * from_anomalies, 4),
            "feature_health": round(feature, 4),
            "anomaly_health": from_anomalies,
            "scores": {k: round(v, 4) for k, v in comp.scores.items()},
            "evidence": comp.evidence,
            "anomalies": [a.to_dict() for a in mine],
        }
    assigned = {id(a) for mine in touching.values() for a in mine}
    scan_health = health(anomalies, run)
    analysis = {
        "tool": "rldk",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": {
            "run_id": run.run_id, "source": run.source, "format": run.format,
            "n_steps": run.n_steps,
            "algorithm": infer_algorithm(run) if preset == "auto" else preset,
            "metrics": run.metrics,
        },
        "kl_target": kl_target,
        "window": window_size(max((int(np.isfinite(c).sum()) for c in run.columns.values()), default=0)),
        "overall": scan_health["overall"],
        "stability": scan_health["stability"],
        "component_score": component_score([s["health"] for s in sections.values() if s["available"]]),
        "components": sections,
        "other_anomalies": [a.to_dict() for a in anomalies if id(a) not in assigned],
        "n_anomalies": len(anomalies),
    }
    return analysis, comps, touching


def analyze_run(run: Run, kl_target: float | None = None, preset: str = "auto") -> dict:
    """The comprehensive analysis of one run (JSON-ready dict; see the module docstring)."""
    return _analyze(run, kl_target, preset)[0]


def component_bars(analysis: dict) -> list[tuple[str, float]]:
    """(component, health) of the available components, in fixed order: for bar charts."""
    sections = analysis.get("components", {})
    return [(name, float(sections[name]["health"])) for name in COMPONENTS
            if sections.get(name, {}).get("available")]


# ---------------------------------------------------------------- tables


def rolling_stats(col: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population std over the finite values of the last w rows."""
    finite = np.isfinite(col)
    x = np.where(finite, col, 0.0)

    def trailing(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(a)])
        idx = np.arange(1, a.size + 1)
        return c[idx] - c[np.maximum(idx - w, 0)]
    cnt = trailing(finite.astype(float))
    s1 = trailing(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / cnt
        # shift by one constant (the column's mean) before squaring to keep precision
        shift = float(x.sum() / finite.sum()) if finite.any() else 0.0
        centred = np.where(finite, col - shift, 0.0)
        var = trailing(centred**2) / cnt - (trailing(centred) / cnt) ** 2
    mean[cnt == 0] = np.nan
    std = np.sqrt(np.maximum(var, 0.0))
    std[cnt == 0] = np.nan
    return mean, std


def metrics_table(run: Run, w: int):
    import pandas as pd

    data = {"step": run.steps}
    for name in run.canonical_metrics:
        col = run.columns[name]
        mean, std = rolling_stats(col, w)
        data[name] = np.where(np.isfinite(col), col, np.nan)
        data[f"{name}_roll_mean"] = mean
        data[f"{name}_roll_std"] = std
    return pd.DataFrame(data)


def timeline_table(run: Run, comps: list[Component], touching: dict[str, list]):
    import pandas as pd

    from rldk_engine.forensics.health import SEVERITY_WEIGHT

    n = run.n_steps
    k = min(TIMELINE_WINDOWS, n)
    if k == 0:
        return pd.DataFrame(columns=["window", "start_step", "end_step", "n_steps"])
    bounds = np.linspace(0, n, k + 1).astype(int)
    win_of_row = np.searchsorted(bounds, np.arange(n), side="right") - 1
    start_steps = run.steps[bounds[:-1]]
    end_steps = run.steps[bounds[1:] - 1]
    data = {"window": np.arange(k), "start_step": start_steps, "end_step": end_steps,
            "n_steps": np.diff(bounds)}
    for comp in comps:
        if not comp.available:
            continue
        wins = win_of_row[comp.ok_rows]
        count = np.bincount(wins, minlength=k).astype(float)
        passed = np.bincount(wins, weights=comp.ok_values, minlength=k)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(count > 0, passed / count, np.nan)
        worst = np.zeros(k)
        for a in touching.get(comp.name, []):
            lo = np.searchsorted(end_steps, a.start_step, side="left")
            hi = np.searchsorted(start_steps, a.end_step, side="right")
            worst[lo:hi] = np.maximum(worst[lo:hi], SEVERITY_WEIGHT.get(a.severity, 0.0))
        data[comp.name] = np.round(share * (1.0 - worst), 4)
    return pd.DataFrame(data)


def summary_table(analysis: dict):
    import pandas as pd


    rows = []
    for name in COMPONENTS:
        sec = analysis["components"][name]
        row = {"component": name, "available": sec["available"]}
        if sec["available"]:
            worst = max((a["severity"] for a in sec["anomalies"]), key=SEVERITY_RANK.__getitem__, default="")
            weakest = min(sec["scores"].items(), key=lambda kv: kv[1], default=("", None))
            row.update({
                "health": sec["health"], "feature_health": sec["feature_health"],
                "anomaly_health": sec["anomaly_health"], "n_anomalies": len(sec["anomalies"]),
                "worst_severity": worst, "weakest_check": weakest[0], "weakest_score": weakest[1],
            })
        row.update({"overall": analysis["overall"], "stability": analysis["stability"],
                    "component_score": analysis["component_score"]})
        rows.append(row)
    columns = ["component", "available", "health", "feature_health", "anomaly_health", "n_anomalies",
               "worst_severity", "weakest_check", "weakest_score", "overall", "stability", "component_score"]
    return pd.DataFrame(rows, columns=columns)


ANALYSIS_JSON = "comprehensive_analysis.json"


def write_analysis(run: Run, out_dir, kl_target: float | None = None, preset: str = "auto",
                   csv_dir=None) -> dict:
    """Analyse `run`; write the JSON to out_dir and the three CSVs to csv_dir (default out_dir)."""
    import orjson

    analysis, comps, touching = _analyze(run, kl_target, preset)
    csv_dir = out_dir if csv_dir is None else csv_dir
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(csv_dir, exist_ok=True)
    with open(os.path.join(out_dir, ANALYSIS_JSON), "wb") as fh:
        fh.write(orjson.dumps(analysis, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    metrics_table(run, analysis["window"]).to_csv(
        os.path.join(csv_dir, "metrics.csv"), index=False, float_format="%.6g")
    timeline_table(run, comps, touching).to_csv(os.path.join(csv_dir, "health_timeline.csv"), index=False)
    summary_table(analysis).to_csv(os.path.join(csv_dir, "summary.csv"), index=False)
    return analysis
