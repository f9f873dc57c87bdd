"""Offline forensics: every SPEC rule id as a vectorised detector over a `Run`.

How every detector works (what a doctored fixture must contain to be found):

* Each metric is taken as its finite points only (NaN = not logged at that step).
* The first `warmup_points(n)` points (3..25, ~5 % of the series) are warm-up: they never
  feed a baseline, and a finding that has no post-warm-up point is `info` at most.
* Scale comes from the run itself: a *trailing* median/MAD over the previous
  `TRAILING` points (for long series, the median over trailing blocks of the blocks'
  mean and std, so a 1,000,000-step run costs a few numpy passes). Noise is also
  estimated from first differences, which a slow trend does not inflate.
* A point "hits" when it passes the rule's test; hits separated by at most a small gap
  collapse into one window, which is then extended (hysteresis) while the metric stays
  beyond a looser threshold measured against the baseline frozen at the window start.
* Severity needs persistence: a window with fewer than `persist` post-warm-up points
  (an isolated spike that heals) is `info`; longer ones are `warning`, and `critical`
  when they are long or extreme. Rules built on co-movement require all metrics at once.

Rule tests (x = metric, base = trailing median, z = robust z-score against it). Several
tests are also judged against the run's FIRST values and absolute floors, so a collapse
inside the warm-up cannot hide in a collapsed baseline, and intermittent faults are
judged m-of-n (hits a few points apart form one window):
  kl_spike            kl: z > 6 and x > 3 base (+ 0.005 nats), spikes <= 4 points apart
                      one window, 3+ such points warning; kl beyond the live stop line
                      (|kl| > 0.35) for 5 consecutive steps is critical (one verdict with
                      the guardrail); kl_seq (per-sequence KL) only against its own
                      baseline; KL estimates below -0.05 (impossible for a true KL), 3+
                      within windows of 7-point gaps, warning.
  kl_controller_drift kl_coef was adapting, then stays flat for 10+ points while kl >
                      1.5x (+4 sigma) the KL it held; or KL stays 2x+ its earlier level
                      for 20+ points while an existing controller's coefficient moves by
                      less than a quarter of the KL rise.
  approx_kl_high      approx_kl: z > 6 and x > 3 |base| and x > 0.02, or x > 0.1 (also in
                      warm-up); 3 updates over 0.1 within 10 (as the preset), or 10 z-hits;
                      two updates over 1 nat are critical.
  advantage_bias      advantage_mean / advantage_std (1 if absent), 9-point mean
                      |m| > max(0.1, 5 sigma/3) for 10+ points.
  entropy_collapse    discrete: < 0.35x its trailing median, or < 0.12x the median of 90
                      points earlier, or below 0.01 nats and 2% of the first values;
                      continuous (negative values or a logged std): > 2.3 nats below its
                      trailing median (far faster than its trend); 5+ points.
  grad_norm_spike     grad_norm and value_grad_norm in log space: >= 3x base and z > 6,
                      or >= 1e8 (overflow, no baseline needed); 3+ such points warning.
  grad_imbalance      log10(value_grad_norm / grad_norm), 9-point rolling median, more
                      than 1.3 decades from the run's median ratio or beyond 3 decades,
                      for 20+ points.
  non_finite          logged NaN/inf/None, counted m-of-n over the metric's own logged
                      points (gaps <= 9): canonical metric warning, critical when 3 in a
                      row, 5+ in the window, or it never recovers; unknown keys info.
  reward_hacking      reward, response length and kl all above their trailing baselines
                      of max(120, n/12) points earlier at once (z > 3, length >= 1.35x,
                      kl >= 1.3x); 20+ points.
  reward_collapse     (causal) below the trailing baseline by > 6 sigma, or more than half
                      of the gains since the peak lost, or below the first values (half
                      of a positive start; > 6 noise for any start), or pinned at its
                      lowest value; every test needs the fall to exceed 30% of the range
                      achieved so far (a 5% dip of a saturated reward is not a collapse);
                      10+ points.
  clip_frac_high      clip_frac > 0.3, or z > 6 and > 2x base and > 0.15; 10+ points.
  length_explosion    truncation (3-point median of the clip ratio >= 0.9, or early level
                      + max(0.25, 3 noise)) or length >= 2.5x its early level; excused by a
                      reward gain only when completions do not hit the cap and the reward
                      does not simply track the length (corr >= 0.95); 5+ points.
  length_collapse     length < 0.4x trailing median or < 0.25x early level, after having
                      been twice as long; or < 0.25x the first values; 5+ points.
  zero_std_groups     frac_reward_zero_std >= max(0.5, early level + 0.3); or no learning
                      signal: >= 70% zero-std groups, or grad_norm exactly 0, while the
                      reward sits in the lowest third of its range (identical rewards at
                      the top are success); windows of gaps <= 3; 5+ points.
  value_divergence    value_loss >= 4x trailing median in log space (z > 6) or >= 10x the
                      lowest trailing median so far, rising against its own recent past;
                      info when explained variance stays >= 0.5 (the loss tracks a
                      growing return scale); or explained_var < -0.5 and 0.5 below its
                      trailing median, unless the value loss has vanished; 5+ points.

Severity (one meaning everywhere): info = notable but normal; warning = a human should
look; critical = the run is wasting compute now (a lasting fault, or an extreme one
that has lasted twice the persistence).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rldk_engine.constants import MAD_TO_SIGMA, NOISE_SIGMA, SEVERITY_ORDER, SEVERITY_RANK
from rldk_engine.rulebook import RULES

if TYPE_CHECKING:
    from rldk_engine.ingest.run import Run

SEVERITIES = SEVERITY_ORDER


TRAILING = 30  # points in the trailing baseline window
MAX_BLOCKS = 1024  # longer series are reduced to block statistics first
MIN_BLOCK = 16
MAX_INFO_PER_METRIC = 10  # keep the largest isolated blips only: few, precise findings
LENGTH_ALONE = 2.5  # length growth that is an explosion even without truncation data
ENTROPY_LAG = 3 * TRAILING
HACK_LAG = 4 * TRAILING  # reward_hacking compares with the level this many points back
REWARD_COLLAPSE_RANGE = 0.3  # a collapse loses at least this part of the range achieved
NEGATIVE_KL = 0.05  # nats below zero that no estimator noise explains
NEGATIVE_KL_GAP = 7  # negative estimates at most this many points apart: one window
ZERO_STD_HIGH = 0.7  # this share of zero-std groups leaves little to learn from
NO_SIGNAL_GAP = 3  # no-signal steps at most this many points apart: one window
REWARD_IS_LENGTH_CORR = 0.95
VALUE_FIT_EV = 0.5  # a critic explaining this much of the returns still fits them
DRIFT_KL_RATIO = 2.0  # KL this many times its earlier level ...
DRIFT_MIN_POINTS = 20  # ... for this many points, with ...
DRIFT_COEF_ANSWER = 0.25  # ... the coefficient moving less than this share of the KL rise
APPROX_KL_LINE = 0.1  # nats per update: well above the usual 0.01-0.03
APPROX_KL_ABSURD = 1.0  # nats per update: the policy was replaced, not updated
ABSURD_NORM = 1e8  # a gradient norm this large is an overflow, not a spike
VALUE_VANISHED = 1e-3  # value loss this far below its peak: returns are constant
EXPANDING_MAX = 5000  # longer series: whole-series noise instead of expanding
GUARD_KL = 0.35  # the live presets' stop line for per-token KL ...
GUARD_KL_STEPS = 5  # ... held this many consecutive logged steps
SPIKE_GAP = 4  # spikes at most this many points apart form one window
NONFINITE_GAP = 9  # non-finite values at most this many finite points apart: one window
NONFINITE_CRITICAL = 5  # this many in one window is critical (wasting compute)
ENTROPY_FLOOR_NATS = 0.01  # a discrete policy this close to 0 nats is (near) deterministic
ENTROPY_FLOOR_FRACTION = 0.02  # ... and 50x below where the run started
CONTINUOUS_MARKERS = ("train/std", "std", "action_std", "policy/std", "train/log_std")


@dataclass
class Anomaly:
    rule: str
    metric: str
    start_step: int
    end_step: int
    severity: str
    message: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Detector:
    rule: str
    func: Callable[[Run], list[Anomaly]]
    algorithms: frozenset[str]
    metrics: tuple[str, ...]


# ---------------------------------------------------------------- numeric helpers


def warmup_points(n: int) -> int:
    return int(min(25, max(3, n // 20)))


_LOCAL = threading.local()  # .cache: per-detect() memo, (kind, id(array), ...) -> (array, result)


def _memo(key: tuple, owner: np.ndarray, compute: Callable[[], object]):
    """Memoise on an array's identity; the cache holds the array so its id stays unique."""
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        return compute()
    hit = cache.get(key)
    if hit is None or hit[0] is not owner:
        hit = cache[key] = (owner, compute())
    return hit[1]


def _series(run: Run, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    col = run.columns.get(name)
    if col is None:
        return None
    return _memo(("series", id(col)), col, lambda: _finite_series(run, col))


def _finite_series(run: Run, col: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    ok = np.isfinite(col)
    if ok.all():  # the usual case: no copies, the run's own arrays (memory on long runs)
        return (run.steps, col) if col.size >= 5 else None
    if int(ok.sum()) < 5:
        return None
    return run.steps[ok], col[ok]


def _aligned(run: Run, names: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    found = [_series(run, name) for name in names]
    series = [s for s in found if s is not None]
    if len(series) < len(found):
        return None
    first = series[0][0]
    if all(s[0].size == first.size and (s[0] is first or np.array_equal(s[0], first)) for s in series):
        return first, [s[1] for s in series]  # same logged steps: reuse the memoised arrays
    cols = [c for c in (run.columns.get(name) for name in names) if c is not None]
    if len(cols) < len(names):
        return None
    ok = np.logical_and.reduce([np.isfinite(c) for c in cols])
    if int(ok.sum()) < 5:
        return None
    return run.steps[ok], [c[ok] for c in cols]


def diff_sigma(x: np.ndarray) -> float:
    """Point noise from first differences: a slow trend barely moves it."""
    return _memo(("diff_sigma", id(x)), x, lambda: _diff_sigma(x))


def _diff_sigma(x: np.ndarray) -> float:
    if x.size < 3:
        return 0.0
    d = np.diff(x)
    if d.size > 8_000:  # a strided sample estimates a median just as well
        d = d[:: d.size // 8_000]
    return float(NOISE_SIGMA * np.median(np.abs(d - np.median(d))))


def _rolling_trailing(v: np.ndarray, window: int, warm: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of v[i-window:i] for each i; early points use the first clean window.

    The first clean window (the `window` points after warm-up) is the only look-ahead: a
    ramp at the start of training (KL rising from 0) would otherwise read as a spike
    against the few points before it. Once a run is longer than warm-up + window, the
    baseline of a step range no longer changes as the run grows.
    """
    m = v.size
    start = min(warm, max(m - 3, 0))
    ref = v[start:]
    w = min(window, ref.size)
    wins = sliding_window_view(ref, w)
    med = np.median(wins, axis=1)
    mad = np.median(np.abs(wins - med[:, None]), axis=1)
    idx = np.clip(np.arange(m) - start - w, 0, med.size - 1)
    return med[idx], mad[idx]


_BASELINES_KEPT = 4  # full-length baselines held at once: bounds memory on 10M-step runs


def trailing_baseline(x: np.ndarray, warm: int, window: int = TRAILING) -> tuple[np.ndarray, np.ndarray]:
    key = ("baseline", id(x), warm, window)
    cache = getattr(_LOCAL, "cache", None)
    if cache is not None and key not in cache:
        held = [k for k in cache if k[0] == "baseline"]
        for old in held[: max(0, len(held) - _BASELINES_KEPT + 1)]:  # oldest first
            del cache[old]
    return _memo(key, x, lambda: _trailing_baseline(x, warm, window))


def _trailing_baseline(x: np.ndarray, warm: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point (median, sigma) of the trailing window, warm-up excluded.

    Long series are reduced to blocks (median and within-block MAD) so the cost stays
    a few passes over the data. Sigma is floored by the diff-based noise of the whole
    series and by a tiny fraction of the level, so a flat stretch cannot make z explode.
    """
    n = x.size
    # blocks of >= MIN_BLOCK points only: the std of a tiny block underestimates noise
    block = 1 if n <= MIN_BLOCK * MAX_BLOCKS else -(-n // MAX_BLOCKS)
    if block == 1:
        med, mad = _rolling_trailing(x, window, warm)
    else:
        nb = n // block
        blocks = x[: nb * block].reshape(nb, block)
        # mean/std per block are cheap ufunc passes; the trailing median over blocks
        # below is what makes the baseline robust to a spike inside one block
        bmed = blocks.mean(axis=1)
        bmad = blocks.std(axis=1, ddof=1) / MAD_TO_SIGMA
        warm_b = -(-warm // block)
        win_b = max(8, window // block)
        med_b, _ = _rolling_trailing(bmed, win_b, warm_b)
        mad_b, _ = _rolling_trailing(bmad, win_b, warm_b)
        # expanded per point in float32: ample precision for a baseline, half the memory
        idx = np.minimum(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64) // block, nb - 1)
        med, mad = med_b.astype(np.float32)[idx], mad_b.astype(np.float32)[idx]
    floor = max(0.5 * diff_sigma(x), 1e-12)
    sigma = np.maximum(MAD_TO_SIGMA * mad, floor)
    sigma = np.maximum(sigma, 1e-3 * np.abs(med))
    return med, sigma


def hit_windows(mask: np.ndarray, max_gap: int = 1) -> list[tuple[int, int]]:
    """Index windows (inclusive) of True runs; gaps of up to max_gap points are bridged."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = idx[np.r_[0, breaks + 1]]
    ends = idx[np.r_[breaks, idx.size - 1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def extend_windows(
    windows: list[tuple[int, int]], stay: Callable[[int, np.ndarray], np.ndarray], n: int
) -> list[tuple[int, int]]:
    """Hysteresis: grow each window's end while `stay(start, indices)` holds."""
    out: list[tuple[int, int]] = []
    for k, (i0, i1) in enumerate(windows):
        if out and i0 <= out[-1][1] + 1:  # reached by the previous extension: merge
            i0 = out.pop()[0]
        limit = windows[k + 1][0] if k + 1 < len(windows) else n
        tail = np.arange(i1 + 1, limit)
        if tail.size:
            ok = stay(i0, tail)
            i1 = int(tail[-1]) if ok.all() else i1 + int(np.argmin(ok))
        out.append((i0, i1))
    return out


def grade(
    n_post_warmup: int, persist: int, long: int, extreme: bool
) -> str:
    """Severity with meaning: info = notable but normal (fewer than `persist` points: a
    blip that heals); warning = a human should look; critical = the run is wasting compute
    now (stop-worthy): the fault lasts `long` points, or is extreme and has lasted twice
    the persistence (an extreme value that heals at once is still only worth a look)."""
    if n_post_warmup < persist:
        return "info"
    if n_post_warmup >= long or (extreme and n_post_warmup >= 2 * persist):
        return "critical"
    return "warning"


def _cap_info(anomalies: list[Anomaly], key: str = "peak") -> list[Anomaly]:
    info = [a for a in anomalies if a.severity == "info"]
    if len(info) <= MAX_INFO_PER_METRIC:
        return anomalies
    keep = sorted(info, key=lambda a: -abs(float(a.evidence.get(key, 0.0))))[:MAX_INFO_PER_METRIC]
    keep_ids = {id(a) for a in keep}
    return [a for a in anomalies if a.severity != "info" or id(a) in keep_ids]


def _r(value: float) -> float:
    return float(f"{float(value):.6g}")


def _windows_to_anomalies(
    rule: str,
    metric: str,
    steps: np.ndarray,
    x: np.ndarray,
    base: np.ndarray,
    windows: list[tuple[int, int]],
    warm: int,
    persist: int,
    long: int,
    is_extreme: Callable[[float, float], bool],
    describe: Callable[[float, float, int], str],
    higher_is_worse: bool = True,
    strong: np.ndarray | None = None,
) -> list[Anomaly]:
    """`strong` (optional): points passing the entry test; only they count as persistence,
    so hysteresis-extended neighbours of a one-step blip never make it a warning."""
    out = []
    for i0, i1 in windows:
        seg = x[i0 : i1 + 1]
        j = int(np.argmax(seg) if higher_is_worse else np.argmin(seg))
        peak, baseline = float(seg[j]), float(base[i0])
        if strong is None:
            n_post = i1 + 1 - max(i0, warm)
        else:
            n_post = int(strong[max(i0, warm) : i1 + 1].sum())
        severity = grade(max(n_post, 0), persist, long, is_extreme(peak, baseline))
        if n_post <= 0:
            severity = "info"
        out.append(
            Anomaly(
                rule=rule,
                metric=metric,
                start_step=int(steps[i0]),
                end_step=int(steps[i1]),
                severity=severity,
                message=describe(peak, baseline, i1 - i0 + 1),
                evidence={
                    "peak": _r(peak),
                    "peak_step": int(steps[i0 + j]),
                    "baseline": _r(baseline),
                    "points": i1 - i0 + 1,
                },
            )
        )
    return _cap_info(out)


def _early_level(x: np.ndarray, warm: int) -> float:
    """Median of the first clean stretch after warm-up (the run's starting level)."""
    span = max(5, min(TRAILING, (x.size - warm) // 5))
    ref = x[warm : warm + span] if x.size - warm >= 3 else x
    return float(np.median(ref))


def _centered_mean(x: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, x.size))
    pad = np.pad(x, (k // 2, k - 1 - k // 2), mode="edge")
    c = np.cumsum(np.r_[0.0, pad])
    return (c[k:] - c[:-k]) / k


def _centered_median(x: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, x.size))
    if x.size > MIN_BLOCK * MAX_BLOCKS:  # long series: a centered mean is a fine stand-in
        return _centered_mean(x, k)
    pad = np.pad(x, (k // 2, k - 1 - k // 2), mode="edge")
    return np.median(sliding_window_view(pad, k), axis=1)


# ---------------------------------------------------------------- detectors


def _spike_rule(run: Run, rule: str, metric: str, log_space: bool, min_ratio: float,
                abs_margin: float) -> list[Anomaly]:
    ser = _series(run, metric)
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    v = np.log(np.maximum(x, 1e-12)) if log_space else x
    med, sigma = trailing_baseline(v, warm)
    z = (v - med) / sigma
    if log_space:
        hit = (z > 6) & (v - med > np.log(min_ratio))
        # overflow territory: no baseline is needed (and when half the points are 1e18 the
        # baseline itself is poisoned)
        hit |= x >= ABSURD_NORM
        base = np.exp(med)
    else:
        hit = (z > 6) & (x > min_ratio * med + abs_margin)
        base = med

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return (v[idx] > med[i0] + 3 * sigma[i0]) | (x[idx] >= ABSURD_NORM if log_space else False)

    # m-of-n: spikes a few points apart are one intermittent fault (1e19, inf, 1e5, ...),
    # each still counted as a point of evidence; a lone spike that heals stays info
    windows = extend_windows(hit_windows(hit, max_gap=SPIKE_GAP), stay, x.size)
    return _windows_to_anomalies(
        rule, metric, steps, x, base, windows, warm, persist=3, long=20, strong=hit,
        is_extreme=lambda p, b: p > 10 * max(b, 1e-12) if log_space else p > 5 * max(b, 1e-12),
        describe=lambda p, b, n: f"{metric} spiked to {p:.4g} (baseline {b:.4g}) for {n} logged step(s)",
    )


def detect_kl_spike(run: Run) -> list[Anomaly]:
    """KL far above its own baseline; per-sequence KL (kl_seq, TRL PPO's objective/kl) is
    judged against its own baseline only, never against a per-token level; and KL
    estimates below zero (impossible for a true KL) counted m-of-n."""
    out = [_guardrail_grade(run, a) for a in
           _spike_rule(run, "kl_spike", "kl", log_space=False, min_ratio=3.0, abs_margin=0.005)]
    out += _over_stop_line(run, [a for a in out if a.metric == "kl"])
    if "kl" not in run.columns or _series(run, "kl") is None:
        out += _spike_rule(run, "kl_spike", "kl_seq", log_space=False, min_ratio=3.0, abs_margin=0.1)
    for metric in ("kl", "kl_seq"):
        out += _negative_kl(run, metric)
    return out


# The live presets' grad-norm rule (one verdict): above 10x the trailing median of 50
# points in 3 of the last 10, after 10 points of warm-up.
BLOWUP_RATIO, BLOWUP_WINDOW, BLOWUP_WARMUP, BLOWUP_M, BLOWUP_N = 10.0, 50, 10, 3, 10


def _recurring_blowups(run: Run, metric: str, found: list[Anomaly]) -> list[Anomaly]:
    """Intermittent blow-ups that a baseline of noisy norms absorbs: m-of-n against the
    trailing median, as the live preset judges them."""
    ser = _series(run, metric)
    if ser is None or ser[1].size <= BLOWUP_WARMUP + BLOWUP_M:
        return []
    steps, x = ser
    import pandas as pd  # rolling median in O(n log w): runs can be millions of steps

    med = pd.Series(x).rolling(BLOWUP_WINDOW, min_periods=1).median().shift(1).to_numpy()
    hit = (med > 0) & (x > BLOWUP_RATIO * med)
    hit[:BLOWUP_WARMUP] = False
    counts = np.convolve(hit.astype(np.int32), np.ones(BLOWUP_N, dtype=np.int32))[: x.size]
    flagged = counts >= BLOWUP_M
    out = []
    for i0, i1 in hit_windows(flagged, max_gap=BLOWUP_N):
        i0 = max(0, i0 - BLOWUP_N + 1)
        if any(a.start_step <= steps[i1] and steps[i0] <= a.end_step for a in found):
            continue
        n_hits = int(hit[i0 : i1 + 1].sum())
        peak = float(x[i0 : i1 + 1].max())
        out.append(Anomaly(
            rule="grad_norm_spike", metric=metric, start_step=int(steps[i0]),
            end_step=int(steps[i1]), severity="warning",
            message=(f"{metric} above {BLOWUP_RATIO:g}x its trailing median at {n_hits} of "
                     f"{i1 - i0 + 1} logged steps (recurring blow-ups, peak {peak:.4g})"),
            evidence={"peak": _r(peak), "blowups": n_hits, "points": i1 - i0 + 1},
        ))
    return out


def _over_stop_line(run: Run, found: list[Anomaly]) -> list[Anomaly]:
    """Per-token KL beyond the live stop line for GUARD_KL_STEPS consecutive logged steps
    is critical even when no baseline saw it rise (a KL that runs away during warm-up):
    the scan never calls healthy what the guardrail would have stopped."""
    ser = _series(run, "kl")
    if ser is None:
        return []
    steps, x = ser
    over = np.abs(x) > GUARD_KL
    out = []
    for i0, i1 in hit_windows(over, max_gap=0):
        if i1 - i0 + 1 < GUARD_KL_STEPS or any(
                a.start_step <= steps[i1] and steps[i0] <= a.end_step for a in found):
            continue
        peak = float(np.abs(x[i0 : i1 + 1]).max())
        out.append(Anomaly(
            rule="kl_spike", metric="kl", start_step=int(steps[i0]), end_step=int(steps[i1]),
            severity="critical",
            message=(f"kl above the guardrail's stop line {GUARD_KL} for {i1 - i0 + 1} logged "
                     f"steps (peak {peak:.4g}): the policy is running away from the reference"),
            evidence={"peak": _r(peak), "threshold": GUARD_KL, "over_stop_line_steps": i1 - i0 + 1},
        ))
    return out


def _guardrail_grade(run: Run, a: Anomaly) -> Anomaly:
    """One verdict with the live guardrail: per-token KL beyond the stop line for
    GUARD_KL_STEPS consecutive logged steps inside the window is critical (stop-worthy)."""
    if a.severity == "critical":
        return a
    steps, x = _series(run, "kl") or (np.empty(0), np.empty(0))
    inside = (steps >= a.start_step) & (steps <= a.end_step)
    held = _longest_run(inside & (np.abs(x) > GUARD_KL))
    if held >= GUARD_KL_STEPS:
        a.severity = "critical"
        a.evidence["over_stop_line_steps"] = held
    return a


def _negative_kl(run: Run, metric: str) -> list[Anomaly]:
    """A KL estimate below zero beyond its noise: the k1 estimator is dominated by a large
    mismatch between the sampling and the trained policy. Several within a short span
    (m-of-n) are a finding; one is info."""
    ser = _series(run, metric)
    if ser is None:
        return []
    steps, x = ser
    noise = diff_sigma(x[x >= 0]) if (x >= 0).sum() >= 3 else 0.0
    neg = x < -max(NEGATIVE_KL, 3 * noise)
    out = []
    for i0, i1 in hit_windows(neg, max_gap=NEGATIVE_KL_GAP):
        n_neg = int(neg[i0 : i1 + 1].sum())
        low = float(x[i0 : i1 + 1].min())
        severity = grade(n_neg, 3, 10, low < -1.0)
        out.append(Anomaly(
            rule="kl_spike", metric=metric, start_step=int(steps[i0]), end_step=int(steps[i1]),
            severity=severity,
            message=(f"{metric} estimate negative (down to {low:.4g}; a true KL never is) at "
                     f"{n_neg} of {i1 - i0 + 1} logged steps: sampling and trained policy "
                     "have drifted far apart"),
            evidence={"peak": _r(low), "negative_points": n_neg, "points": i1 - i0 + 1},
        ))
    return _cap_info(out)


def detect_grad_norm_spike(run: Run) -> list[Anomaly]:
    out = []
    for metric in ("grad_norm", "value_grad_norm"):
        found = _spike_rule(run, "grad_norm_spike", metric, log_space=True, min_ratio=3.0,
                            abs_margin=0.0)
        out += found + _recurring_blowups(run, metric, found)
    return out


def detect_approx_kl_high(run: Run) -> list[Anomaly]:
    ser = _series(run, "approx_kl")
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    med, sigma = trailing_baseline(x, warm)
    z = (x - med) / sigma
    hit = ((z > 6) & (x > 3 * np.abs(med)) & (x > 0.02)) | (x > 0.1)
    hit[:warm] &= x[:warm] > 0.1

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return (x[idx] > med[i0] + 3 * sigma[i0]) & (x[idx] > max(1.5 * abs(med[i0]), 0.01))

    # m-of-n like the live preset: 3 updates over the line within any 10 are one window
    windows = extend_windows(hit_windows(hit, max_gap=7), stay, x.size)
    # warm-up points are hits only on the absolute test: they count as evidence
    found = _windows_to_anomalies(
        "approx_kl_high", "approx_kl", steps, x, med, windows, 0, persist=3, long=30,
        strong=hit,
        is_extreme=lambda p, b: p > 0.2,
        describe=lambda p, b, n: f"approx_kl high ({p:.4g} vs baseline {b:.4g}) for {n} logged steps",
    )
    # an update that moves the policy by more than a nat replaced it: two such updates are
    # stop-worthy however early they come (no warm-up hides them)
    absurd = x > APPROX_KL_ABSURD
    for a in found:
        inside = (steps >= a.start_step) & (steps <= a.end_step)
        # m-of-n as the live preset: 3 updates over 0.1; otherwise (z-only hits over a
        # low baseline) the old 10-point persistence. One huge update that heals is info.
        if int((inside & (x > APPROX_KL_LINE)).sum()) < 3 and int((inside & hit).sum()) < 10:
            a.severity = "info"
        n_absurd = int((absurd & inside).sum())
        if n_absurd >= 2:
            a.severity = "critical"
            a.evidence["updates_over_1_nat"] = n_absurd
    return found


def detect_kl_controller_drift(run: Run) -> list[Anomaly]:
    al = _aligned(run, ("kl", "kl_coef"))
    if al is None:
        return []
    steps, (kl, coef) = al
    n = kl.size
    warm = warmup_points(n)
    moved = np.r_[False, np.abs(np.diff(coef)) > 1e-12 + 1e-6 * np.abs(coef[1:])]
    flat = ~moved
    n_moves_before = np.cumsum(moved)
    sig = max(diff_sigma(kl), 1e-9)
    out: list[Anomaly] = []
    for i0, i1 in hit_windows(flat, max_gap=0):
        if i1 - i0 + 1 < 10 or n_moves_before[i0] < 5:
            continue  # a fixed coefficient is a choice, not a controller that stopped
        adapting = moved[:i0].copy()
        adapting[:warm] = False
        target = float(np.median(kl[:i0][adapting[:i0]])) if adapting.any() else float(np.median(kl[:i0]))
        seg = kl[i0 : i1 + 1]
        high = (seg > 1.5 * target + 1e-6) & (seg > target + 4 * sig)
        for j0, j1 in hit_windows(high, max_gap=3):
            npts = j1 - j0 + 1
            if npts < 3:
                continue
            part = seg[j0 : j1 + 1]
            mean_kl = float(np.mean(part))
            severity = grade(npts, 10, 50, mean_kl > 3 * target)
            out.append(Anomaly(
                rule="kl_controller_drift",
                metric="kl_coef",
                start_step=int(steps[i0 + j0]),
                end_step=int(steps[i0 + j1]),
                severity=severity,
                message=(f"kl_coef stopped adapting at {coef[i0]:.4g} while kl stayed above "
                         f"target (mean {mean_kl:.4g} vs {target:.4g}) for {npts} logged steps"),
                evidence={"kl_coef": _r(coef[i0]), "target_kl": _r(target),
                          "mean_kl": _r(mean_kl), "peak": _r(part.max()), "points": npts},
            ))
    if moved.any():  # a controller exists (the coefficient moved at least once)
        out += [a for a in _unanswered_kl_surge(steps, kl, coef, warm, sig)
                if not any(b.start_step <= a.end_step and a.start_step <= b.end_step for b in out)]
    return out


def _unanswered_kl_surge(steps, kl, coef, warm: int, sig: float) -> list[Anomaly]:
    """KL many times its earlier level for a long stretch while the coefficient barely
    moves: an adaptive controller would have raised it in proportion (the original kit's
    doctored run: KL 6x for 200 steps, kl_coef +10%)."""
    med, sigma = trailing_baseline(kl, warm)
    high = (kl > DRIFT_KL_RATIO * med + 1e-6) & ((kl - med) / sigma > 4) & (kl > med + 4 * sig)
    high[:warm] = False

    level = _trailing_median(kl, 5)  # one low draw of a noisy KL does not end the surge

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return level[idx] > 1.5 * med[i0] + 1e-6

    out = []
    for i0, i1 in extend_windows(hit_windows(high, max_gap=3), stay, kl.size):
        npts = i1 - i0 + 1
        if npts < DRIFT_MIN_POINTS:
            continue  # a short surge is a kl_spike; the controller had no time to answer
        before = float(coef[max(0, i0 - 1)])
        answer = float(np.max(np.abs(coef[i0 : i1 + 1] / before - 1.0))) if before else np.inf
        kl_ratio = float(np.median(kl[i0 : i1 + 1]) / max(med[i0], 1e-12))
        if answer >= DRIFT_COEF_ANSWER * (kl_ratio - 1.0) or answer >= 1.0:
            continue  # the coefficient rose in proportion: the controller is working
        mean_kl = float(np.mean(kl[i0 : i1 + 1]))
        out.append(Anomaly(
            rule="kl_controller_drift", metric="kl_coef",
            start_step=int(steps[i0]), end_step=int(steps[i1]),
            severity=grade(npts, 10, 50, kl_ratio > 3),
            message=(f"kl stayed {kl_ratio:.3g}x its earlier level ({med[i0]:.4g}) for {npts} logged "
                     f"steps while kl_coef moved only {answer:.0%} (from {before:.4g}): the KL "
                     "controller is not answering"),
            evidence={"kl_coef": _r(before), "coef_change": _r(answer), "target_kl": _r(med[i0]),
                      "mean_kl": _r(mean_kl), "kl_ratio": _r(kl_ratio),
                      "peak": _r(float(kl[i0 : i1 + 1].max())), "points": npts},
        ))
    return out


def detect_advantage_bias(run: Run) -> list[Anomaly]:
    ser = _series(run, "advantage_mean")
    if ser is None:
        return []
    steps, x = ser
    std_col = run.columns.get("advantage_std")
    scale = 1.0
    if std_col is not None and np.isfinite(std_col).any():
        s = float(np.nanmedian(std_col))
        scale = s if s > 0 else 1.0
    r = x / scale
    warm = warmup_points(r.size)
    k = 9
    rm = _centered_mean(r, k)
    thr = max(0.1, 5 * diff_sigma(r) / np.sqrt(k))
    hit = np.abs(rm) > thr
    hit[:warm] = False
    out = []
    for i0, i1 in hit_windows(hit, max_gap=3):
        npts = i1 - i0 + 1
        mean = float(np.mean(r[i0 : i1 + 1]))
        out.append(Anomaly(
            rule="advantage_bias",
            metric="advantage_mean",
            start_step=int(steps[i0]),
            end_step=int(steps[i1]),
            severity=grade(npts, 10, 100, abs(mean) > 0.5),
            message=f"whitened advantage mean stayed at {mean:+.3g} (should be ~0) for {npts} logged steps",
            evidence={"mean": _r(mean), "peak": _r(rm[i0 : i1 + 1][np.argmax(np.abs(rm[i0 : i1 + 1]))]),
                      "threshold": _r(thr), "points": npts},
        ))
    return _cap_info(out)


def _initial_level(x: np.ndarray, k: int = 3) -> float:
    """The run's first logged values (before any training effect can hide them)."""
    return float(np.median(x[: max(1, min(k, x.size))]))


def _is_continuous_entropy(run: Run, x: np.ndarray) -> bool:
    """Differential entropy of a continuous (Gaussian) policy: it can be negative, and a
    logged action std says the policy is continuous."""
    return bool((x < 0).any()) or any(name in run.columns for name in CONTINUOUS_MARKERS)


def detect_entropy_collapse(run: Run) -> list[Anomaly]:
    ser = _series(run, "entropy")
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    med, _ = trailing_baseline(x, warm)
    if _is_continuous_entropy(run, x):
        # differential entropy: no ratio to the initial value means anything (it crosses
        # 0); a collapse is a fall far faster than the run's own trend: > 2.3 nats (the
        # action std 10x smaller) below the trailing median
        sig = diff_sigma(x)
        hit = x < med - max(2.3, 8 * sig)
        hit[:warm] = False

        def stay_c(i0: int, idx: np.ndarray) -> np.ndarray:
            return x[idx] < med[i0] - max(1.15, 4 * sig)

        windows = extend_windows(hit_windows(hit, max_gap=2), stay_c, x.size)
        return _windows_to_anomalies(
            "entropy_collapse", "entropy", steps, x, med, windows, warm, persist=5, long=50,
            is_extreme=lambda p, b: b - p > 4.6,
            describe=lambda p, b, n: (f"differential entropy fell to {p:.4g} from {b:.4g} (far "
                                      f"faster than its trend) for {n} logged steps"),
            higher_is_worse=False,
        )
    # discrete policy. sudden: far below the trailing median; fast: 8x down within
    # ENTROPY_LAG points (healthy LLM runs lose entropy 10x over hundreds of steps, ~4x
    # per 90 at most); floor: near 0 compared with the run's first values, which no
    # warm-up can hide (a collapse inside the first rollouts builds a collapsed baseline)
    ref = np.maximum(med, med[np.clip(np.arange(x.size) - ENTROPY_LAG, 0, None)])
    pos = med > 0
    hit = pos & ((x < 0.35 * med) | (x < 0.12 * ref))
    hit[:warm] = False
    initial = _initial_level(x)
    floor = (x < ENTROPY_FLOOR_NATS) & (x < ENTROPY_FLOOR_FRACTION * initial)
    floor[0] = False  # the first value defines the initial level
    hit |= floor
    base = np.where(floor, initial, med)

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return (x[idx] < 0.6 * med[i0]) | ((x[idx] < ENTROPY_FLOOR_NATS)
                                          & (x[idx] < ENTROPY_FLOOR_FRACTION * initial))

    windows = extend_windows(hit_windows(hit, max_gap=2), stay, x.size)
    # the floor test needs no baseline: its points count as evidence even in warm-up
    return _windows_to_anomalies(
        "entropy_collapse", "entropy", steps, x, base, windows, 0 if floor.any() else warm,
        persist=5, long=50, strong=hit,
        is_extreme=lambda p, b: p < 0.1 * b,
        describe=lambda p, b, n: f"entropy collapsed to {p:.4g} from {b:.4g} for {n} logged steps",
        higher_is_worse=False,
    )


def detect_grad_imbalance(run: Run) -> list[Anomaly]:
    al = _aligned(run, ("grad_norm", "value_grad_norm"))
    if al is None:
        return []
    steps, (gn, vgn) = al
    ok = (gn > 0) & (vgn > 0)
    steps, gn, vgn = steps[ok], gn[ok], vgn[ok]
    if gn.size < 20:
        return []
    lr = np.log10(vgn / gn)
    warm = warmup_points(lr.size)
    ref = float(np.median(lr[warm:]))
    sm = _centered_median(lr, 9)
    hit = (np.abs(sm - ref) > 1.3) | (np.abs(sm) > 3.0)
    hit[:warm] = False
    out = []
    for i0, i1 in hit_windows(hit, max_gap=3):
        npts = i1 - i0 + 1
        level = float(np.median(lr[i0 : i1 + 1]))
        out.append(Anomaly(
            rule="grad_imbalance",
            metric="value_grad_norm",
            start_step=int(steps[i0]),
            end_step=int(steps[i1]),
            severity=grade(npts, 20, 100, abs(level - ref) > 2.5),
            message=(f"value/policy grad-norm ratio {10**level:.3g}x vs the run's usual "
                     f"{10**ref:.3g}x for {npts} logged steps"),
            evidence={"ratio": _r(10**level), "baseline_ratio": _r(10**ref),
                      "peak": _r(10 ** sm[i0 : i1 + 1].max()), "points": npts},
        ))
    return _cap_info(out)


def detect_non_finite(run: Run) -> list[Anomaly]:
    """NaN/inf/None where a number was logged, judged m-of-n: non-finite values anywhere
    in a window count together, so faults interleaved with finite values (Infinity, NaN,
    1e19, Infinity, ...) are one finding, not a string of one-step blips."""
    from rldk_engine.ingest.metrics import is_canonical

    out = []
    for metric, bad_steps in run.nonfinite.items():
        if bad_steps.size == 0:
            continue
        col = run.columns.get(metric)
        pos = np.searchsorted(run.steps, bad_steps)
        bad = np.zeros(run.steps.size, dtype=bool)
        bad[pos] = True
        logged_mask = bad | (np.isfinite(col) if col is not None else bad)
        logged = np.flatnonzero(logged_mask)
        # judge over the metric's own logged points: a sparse metric is not diluted by rows
        # where it was not logged at all
        bad_logged = bad[logged]
        last = logged.size - 1
        canonical = is_canonical(metric)
        found = []
        for j0, j1 in hit_windows(bad_logged, max_gap=NONFINITE_GAP):
            n_bad = int(bad_logged[j0 : j1 + 1].sum())
            span = j1 - j0 + 1
            never_recovers = j1 == last
            burst = _longest_run(bad_logged[j0 : j1 + 1])
            if not canonical:
                severity = "info"
            elif burst >= 3 or never_recovers or n_bad >= NONFINITE_CRITICAL:
                severity = "critical"
            else:
                severity = "warning"
            i0, i1 = int(logged[j0]), int(logged[j1])
            found.append(Anomaly(
                rule="non_finite",
                metric=metric,
                start_step=int(run.steps[i0]),
                end_step=int(run.steps[i1]),
                severity=severity,
                message=(f"{metric} was NaN/inf at {n_bad} of {span} logged step(s)"
                         + (" and never recovered" if never_recovers else "")),
                evidence={"points": n_bad, "span_points": span, "longest_run": burst,
                          "total_nonfinite": int(bad_steps.size), "recovered": not never_recovers},
            ))
        if len(found) > MAX_INFO_PER_METRIC:  # keep the first ones and the worst ones
            found.sort(key=lambda a: (-SEVERITY_RANK[a.severity], a.start_step))
            found = found[:MAX_INFO_PER_METRIC]
        out += found
    return out


def _longest_run(mask: np.ndarray) -> int:
    best = cur = 0
    for v in mask.tolist():
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def detect_reward_hacking(run: Run) -> list[Anomaly]:
    al = _aligned(run, ("reward_mean", "response_len_mean", "kl"))
    if al is None:
        return []
    steps, (rew, length, kl) = al
    warm = warmup_points(rew.size)
    up = np.ones(rew.size, dtype=bool)
    bases = {}
    # reference: the trailing baseline as it was HACK_LAG points earlier, so a steady
    # multi-hundred-step climb is still seen as a climb
    lag = np.clip(np.arange(rew.size) - max(HACK_LAG, rew.size // 12), 0, None)
    for name, v in (("reward_mean", rew), ("response_len_mean", length), ("kl", kl)):
        med, sigma = trailing_baseline(v, warm)
        bases[name] = med[lag]
        up &= (v - med[lag]) / sigma[lag] > 3
    up &= length >= 1.35 * bases["response_len_mean"]
    up &= kl >= 1.3 * bases["kl"] + 1e-3
    up[:warm] = False
    out = []
    for i0, i1 in hit_windows(up, max_gap=5):
        npts = i1 - i0 + 1
        ev = {
            "reward_from": _r(bases["reward_mean"][i0]), "reward_to": _r(rew[i1]),
            "length_from": _r(bases["response_len_mean"][i0]), "length_to": _r(length[i1]),
            "kl_from": _r(bases["kl"][i0]), "kl_to": _r(kl[i1]),
            "peak": _r(kl[i0 : i1 + 1].max()), "points": npts,
        }
        out.append(Anomaly(
            rule="reward_hacking",
            metric="reward_mean",
            start_step=int(steps[i0]),
            end_step=int(steps[i1]),
            severity=grade(npts, 20, 60, False),
            message=(f"reward rose with response length and KL together for {npts} logged steps "
                     f"(reward {ev['reward_from']:.4g}->{ev['reward_to']:.4g}, length "
                     f"{ev['length_from']:.4g}->{ev['length_to']:.4g}, kl "
                     f"{ev['kl_from']:.4g}->{ev['kl_to']:.4g})"),
            evidence=ev,
        ))
    return _cap_info(out)


def _trailing_median(x: np.ndarray, k: int) -> np.ndarray:
    """Median of the last k points up to and including each point (causal: a point's value
    never depends on later points, so a verdict does not change as the run grows)."""
    k = max(1, min(k, x.size))
    pad = np.concatenate([np.full(k - 1, x[0]), x])
    if x.size > MIN_BLOCK * MAX_BLOCKS:  # long series: a trailing mean is a fine stand-in
        c = np.cumsum(np.r_[0.0, pad])
        return (c[k:] - c[:-k]) / k
    return np.median(sliding_window_view(pad, k), axis=1)


def detect_reward_collapse(run: Run) -> list[Anomaly]:
    """Reward far below what the run had reached, by a large part of the range it achieved.

    Three tests, all causal (a point is judged only against earlier points):
    * against the trailing baseline (now or TRAILING points earlier), beyond 6 sigma;
    * against the best level reached so far: more than half of the gains since the
      lowest level before that peak are lost (a rise-then-fall whose rising phase has a
      huge MAD is still a fall);
    * against the run's first values: below half of a positive starting level (a collapse
      inside the first rollouts, where no baseline exists yet).
    Effect size: every test also needs the fall to exceed REWARD_COLLAPSE_RANGE of the
    range the run has achieved so far, so a 5% dip of a saturated reward is not a collapse.
    """
    ser = _series(run, "reward_mean")
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    med, sigma = trailing_baseline(x, warm)
    smooth = _trailing_median(x, 3)
    # levels held for a while, not single noisy points, define the peak and the gains
    level = _trailing_median(x, 9)
    peak = np.maximum.accumulate(level)
    peak_at = _running_argmax(level)
    low_before_peak = np.minimum.accumulate(level)[peak_at]
    # the range reached so far (causal), noise included: early in a noisy run a wobble
    # must not look like a large part of the range
    achieved = np.maximum.accumulate(smooth) - np.minimum.accumulate(smooth)
    noise = diff_sigma(x)
    initial = _initial_level(x)
    lag = np.clip(np.arange(x.size) - TRAILING, 0, None)
    drop, drop_lag = med - x, med[lag] - x
    big = np.maximum(drop, drop_lag) > REWARD_COLLAPSE_RANGE * achieved
    z_fall = ((drop > 6 * sigma) | (drop_lag > 6 * sigma[lag])) & big
    z_fall[:warm] = False
    gains = peak - low_before_peak
    # the trailing noise around the peak catches slow wobble that diffs miss, but on a
    # rising phase it is the rise itself: capped at twice the diff-based noise
    spread = np.minimum(sigma[peak_at], 2 * noise)
    lost_gains = (gains > 6 * np.maximum(noise, spread)) & (level < peak - 0.5 * gains) & (
        peak - level > np.maximum(REWARD_COLLAPSE_RANGE * achieved, 4 * spread))
    # below where the run started (its first values; the early trailing baseline looks
    # ahead and, on a short run, swallows the fall): for a positive start, below half of
    # it; for any start, by more than noise and a part of the range achieved
    start = _initial_level(x, 5)
    start_level = _trailing_median(x, 5)
    fall = start - start_level
    from_start = (fall > 6 * noise) & (fall > REWARD_COLLAPSE_RANGE * achieved) & (
        (start <= 0) | (start_level < 0.5 * start))
    from_start[:5] = False
    # ... and the first 3 values alone, for a collapse within the first rollouts
    early_fall = (initial > 0) & (smooth < 0.5 * initial) & (initial - smooth > 6 * noise)
    early_fall[0] = False
    from_start |= early_fall
    # pinned at the floor: exactly the same lowest value for 5+ points after the run had
    # been clearly higher (a policy stuck at the environment's minimum reward)
    last5 = sliding_window_view(np.r_[np.full(4, np.nan), x], 5)
    run_min = np.minimum.accumulate(x)
    pinned = (np.nanmax(last5, axis=1) == np.nanmin(last5, axis=1)) & (x == run_min) & (
        np.maximum.accumulate(x) - x > np.maximum(6 * noise, 0.1 * np.abs(x)))
    pinned[:4] = False
    from_start |= pinned
    hit = z_fall | lost_gains | from_start
    base = np.where(lost_gains, peak, np.where(from_start, max(start, initial), med))

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        held = med[i0] - x[idx] > max(3 * sigma[i0], 0.1 * achieved[i0])
        return held | lost_gains[idx] | from_start[idx]

    windows = extend_windows(hit_windows(hit, max_gap=2), stay, x.size)
    return _windows_to_anomalies(
        "reward_collapse", "reward_mean", steps, x, base, windows,
        0 if (lost_gains | from_start).any() else warm, persist=10, long=30, strong=hit,
        is_extreme=lambda p, b: b - p > 0.5 * max(float(achieved[-1]), abs(b), 1e-12),
        describe=lambda p, b, n: f"reward fell to {p:.4g} from {b:.4g} for {n} logged steps",
        higher_is_worse=False,
    )


def _running_argmax(x: np.ndarray) -> np.ndarray:
    """Index of the running maximum (first index reaching it) at each point."""
    idx = np.arange(x.size)
    is_new = np.r_[True, x[1:] > np.maximum.accumulate(x)[:-1]]
    return np.maximum.accumulate(np.where(is_new, idx, 0))


def detect_clip_frac_high(run: Run) -> list[Anomaly]:
    ser = _series(run, "clip_frac")
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    med, sigma = trailing_baseline(x, warm)
    z = (x - med) / sigma
    hit = (x > 0.3) | ((z > 6) & (x > 2 * med) & (x > 0.15))
    hit[:warm] = False

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return x[idx] > max(0.2, med[i0] + 3 * sigma[i0])

    windows = extend_windows(hit_windows(hit, max_gap=2), stay, x.size)
    return _windows_to_anomalies(
        "clip_frac_high", "clip_frac", steps, x, med, windows, warm, persist=10, long=50,
        strong=hit,
        is_extreme=lambda p, b: p > 0.5,
        describe=lambda p, b, n: f"clip fraction high ({p:.3g} vs baseline {b:.3g}) for {n} logged steps",
    )


def detect_length_explosion(run: Run) -> list[Anomaly]:
    ser = _series(run, "response_len_mean")
    clip = _series(run, "response_clip_ratio")
    if ser is None and clip is None:
        return []
    steps = run.steps
    n = steps.size
    hit = np.zeros(n, dtype=bool)
    evidence: dict[str, float] = {}
    length = run.columns.get("response_len_mean")
    ratio = run.columns.get("response_clip_ratio")
    # a metric's column is there whenever its series is; the second test narrows the type
    if ser is not None and length is not None:
        w = warmup_points(ser[1].size)
        early_len = _early_level(ser[1], w)
        evidence["early_length"] = _r(early_len)
        with np.errstate(invalid="ignore"):
            hit |= length >= LENGTH_ALONE * early_len
        hit &= ~_first_points(length, w)
    if clip is not None and ratio is not None:
        w = warmup_points(clip[1].size)
        early_clip = _early_level(clip[1], w)
        evidence["early_clip_ratio"] = _r(early_clip)
        # judged on a 3-point trailing median, and a rise beyond the ratio's own noise: with
        # groups of 4 the ratio moves in quarters, and single draws of 0.75 are not a trend
        level = np.full(ratio.size, np.nan)
        okr = np.isfinite(ratio)
        level[okr] = _trailing_median(ratio[okr], 3)
        rise = max(0.25, 3 * diff_sigma(clip[1]))
        evidence["clip_ratio_noise"] = _r(diff_sigma(clip[1]))
        with np.errstate(invalid="ignore"):
            trunc = (level >= 0.9) | (level >= early_clip + rise)
        trunc &= ~_first_points(ratio, w)
        hit |= trunc
    reward = run.columns.get("reward_mean")
    rew_sigma = diff_sigma(reward[np.isfinite(reward)]) if reward is not None else 0.0
    out = []
    for i0, i1 in hit_windows(hit, max_gap=2):
        rows = np.arange(i0, i1 + 1)
        gain = _reward_gain(reward, i0, i1, rew_sigma)
        truncated = ratio is not None and bool(np.any(ratio[rows] >= 0.9))
        if gain is not None and gain > 0 and not truncated and not _reward_is_length(reward, length, i1):
            # length grows while reward improves: learning, not an explosion -- unless the
            # completions hit the cap (wasted tokens whatever the reward says) or the reward
            # simply tracks the length (then the rise is exactly the hack)
            continue
        logged = np.zeros(rows.size, dtype=bool)
        for col in (length, ratio):
            if col is not None:
                logged |= np.isfinite(col[rows])
        npts = int(logged.sum())
        ev = dict(evidence)
        peak_len = float(np.nanmax(length[rows])) if length is not None and np.isfinite(length[rows]).any() else None
        peak_clip = float(np.nanmax(ratio[rows])) if ratio is not None and np.isfinite(ratio[rows]).any() else None
        if peak_len is not None:
            ev["peak_length"] = _r(peak_len)
        if peak_clip is not None:
            ev["peak_clip_ratio"] = _r(peak_clip)
        ev["peak"] = ev.get("peak_clip_ratio", ev.get("peak_length", 0.0))
        ev["points"] = npts
        extreme = (peak_clip is not None and peak_clip >= 0.95) or (
            peak_len is not None and "early_length" in ev and peak_len >= 2 * ev["early_length"])
        parts = []
        if peak_clip is not None:
            parts.append(f"truncated fraction up to {peak_clip:.3g} (from {ev['early_clip_ratio']:.3g})")
        if peak_len is not None:
            parts.append(f"length up to {peak_len:.4g} (from {ev.get('early_length', float('nan')):.4g})")
        out.append(Anomaly(
            rule="length_explosion",
            metric="response_clip_ratio" if peak_clip is not None else "response_len_mean",
            start_step=int(steps[i0]),
            end_step=int(steps[i1]),
            severity=grade(npts, 5, 50, extreme),
            message=", ".join(parts) + f" with reward flat, for {npts} logged steps",
            evidence=ev,
        ))
    return _cap_info(out)


def _reward_is_length(reward: np.ndarray | None, length: np.ndarray | None, i1: int) -> bool:
    """True when the reward follows the response length almost exactly up to row i1
    (correlation >= REWARD_IS_LENGTH_CORR over the logged points): the reward pays for length."""
    if reward is None or length is None:
        return False
    r, n = reward[: i1 + 1], length[: i1 + 1]
    ok = np.isfinite(r) & np.isfinite(n)
    if int(ok.sum()) < 10 or np.ptp(r[ok]) == 0 or np.ptp(n[ok]) == 0:
        return False
    return bool(np.corrcoef(r[ok], n[ok])[0, 1] >= REWARD_IS_LENGTH_CORR)


def _reward_gain(reward: np.ndarray | None, i0: int, i1: int, sigma: float) -> float | None:
    """How far reward inside rows i0..i1 rose above the stretch just before, beyond noise."""
    if reward is None:
        return None
    before = reward[max(0, i0 - TRAILING) : i0]
    during = reward[i0 : i1 + 1]
    before, during = before[np.isfinite(before)], during[np.isfinite(during)]
    if before.size == 0 or during.size == 0:
        return None
    rise = float(np.median(during) - np.median(before))
    return rise - max(4 * sigma, 0.1 * abs(float(np.median(before))), 1e-9)


def _first_points(col: np.ndarray, k: int) -> np.ndarray:
    """Mask of the rows holding the first k finite values of col (its warm-up)."""
    mask = np.zeros(col.size, dtype=bool)
    mask[np.flatnonzero(np.isfinite(col))[:k]] = True
    if k and mask.any():
        mask[: np.flatnonzero(mask)[-1] + 1] = True
    return mask


def detect_length_collapse(run: Run) -> list[Anomaly]:
    ser = _series(run, "response_len_mean")
    if ser is None:
        return []
    steps, x = ser
    warm = warmup_points(x.size)
    med, _ = trailing_baseline(x, warm)
    early = _early_level(x, warm)
    hit = (x < 0.4 * med) | (x < 0.25 * early)
    # a collapse falls from a length the run actually reached before (the early baseline
    # looks ahead, so a run whose lengths then grow must not read as collapsed before)
    reached = np.maximum.accumulate(np.r_[x[0], x[:-1]])
    hit &= x < 0.5 * reached
    hit[:warm] = False
    # against the run's first values too: a collapse inside warm-up (1759 -> 1014 -> 1
    # token) makes the early level itself collapsed
    initial = _initial_level(x)
    from_start = x < 0.25 * initial
    from_start[0] = False
    hit |= from_start

    def stay(i0: int, idx: np.ndarray) -> np.ndarray:
        return (x[idx] < 0.6 * med[i0]) | (x[idx] < 0.25 * early) | (x[idx] < 0.25 * initial)

    windows = extend_windows(hit_windows(hit, max_gap=2), stay, x.size)
    return _windows_to_anomalies(
        "length_collapse", "response_len_mean", steps, x, np.where(from_start, initial, med),
        windows, 0 if from_start.any() else warm, persist=5, long=50, strong=hit,
        is_extreme=lambda p, b: p < 0.1 * b,
        describe=lambda p, b, n: f"response length collapsed to {p:.4g} from {b:.4g} for {n} logged steps",
        higher_is_worse=False,
    )


def detect_zero_std_groups(run: Run) -> list[Anomaly]:
    """No learning signal: most prompt groups got identical rewards (their advantages are
    zero), or the gradient norm is exactly 0, while the reward sits low and does not rise.

    Identical rewards at the top of the reward range are success (every answer right), so
    only steps where the reward is in the lower part of the range the run has seen count;
    a high zero-std fraction from the very start counts too (the early-level test alone
    never flags a run that never learned)."""
    out = []
    ser = _series(run, "frac_reward_zero_std")
    if ser is not None:
        steps, x = ser
        warm = warmup_points(x.size)
        early = _early_level(x, warm)
        thr = max(0.5, early + 0.3)
        rising = x >= thr
        rising[:warm] = False
        windows = hit_windows(rising, max_gap=2)
        base = np.full(x.size, early)
        out += _windows_to_anomalies(
            "zero_std_groups", "frac_reward_zero_std", steps, x, base, windows, warm, persist=5,
            long=50, is_extreme=lambda p, b: p >= 0.9,
            describe=lambda p, b, n: (f"{p:.0%} of prompt groups had identical rewards (no learning "
                                      f"signal; early level {b:.0%}) for {n} logged steps"),
        )
        out += _not_covered(out, _no_signal(
            run, steps, x >= ZERO_STD_HIGH, "frac_reward_zero_std",
            f">= {ZERO_STD_HIGH:.0%} of prompt groups had identical rewards"))
    col = run.columns.get("grad_norm")
    if col is not None:
        logged = np.isfinite(col)
        if int(logged.sum()) >= 10:
            out += _not_covered(out, _no_signal(run, run.steps[logged], col[logged] == 0.0,
                                                "grad_norm", "grad_norm exactly 0"))
    return out


def _not_covered(found: list[Anomaly], new: list[Anomaly]) -> list[Anomaly]:
    """The new findings whose steps no warning+ finding in `found` covers already."""
    return [a for a in new if not any(
        b.severity != "info" and b.start_step <= a.end_step and a.start_step <= b.end_step
        for b in found)]


def _no_signal(run: Run, steps: np.ndarray, mask: np.ndarray, metric: str, what: str) -> list[Anomaly]:
    """Windows (m-of-n) where `mask` holds while the reward is low for this run and not
    rising: no learning signal, not a phase of learning."""
    if mask.size < 10 or not mask.any():
        return []
    low = _reward_low(run, steps)
    hit = mask & low
    out = []
    # gaps of at most NO_SIGNAL_GAP points keep every window at least 1/4 no-signal steps,
    # and a window only grows as the run does (its verdict never flips)
    for i0, i1 in hit_windows(hit, max_gap=NO_SIGNAL_GAP):
        share = float(hit[i0 : i1 + 1].mean())
        n = int(hit[i0 : i1 + 1].sum())
        out.append(Anomaly(
            rule="zero_std_groups", metric=metric, start_step=int(steps[i0]), end_step=int(steps[i1]),
            severity=grade(n, 5, 50, share >= 0.9 and n >= 10),
            message=(f"no learning signal: {what} on {n} of {i1 - i0 + 1} logged steps while the "
                     "reward stayed low"),
            evidence={"share": _r(share), "points": n, "peak": _r(share)},
        ))
    return out


def _expanding_noise(x: np.ndarray) -> np.ndarray:
    """Per point, the diff-based noise of the points up to it (causal). Long series use
    the whole series' noise (a verdict there is far from the growing end anyway)."""
    if x.size > EXPANDING_MAX:
        return np.full(x.size, diff_sigma(x))
    d = np.abs(np.diff(x))
    out = np.zeros(x.size)
    for i in range(3, x.size):
        di = np.diff(x[: i + 1])
        out[i] = NOISE_SIGMA * float(np.median(np.abs(di - np.median(di))))
    out[:3] = out[3] if x.size > 3 else (float(d.max()) if d.size else 0.0)
    return out


def _reward_low(run: Run, steps: np.ndarray) -> np.ndarray:
    """Per step in `steps`: reward (3-point trailing median) in the lowest third of the
    range seen so far, or flat (a range within noise); True when no reward is logged."""
    rew = run.columns.get("reward_mean")
    if rew is None:
        return np.ones(steps.size, dtype=bool)
    ok = np.isfinite(rew)
    if int(ok.sum()) < 5:
        return np.ones(steps.size, dtype=bool)
    r_steps, r = run.steps[ok], rew[ok]
    level = _trailing_median(r, 3)
    lo, hi = np.minimum.accumulate(level), np.maximum.accumulate(level)
    flat = hi - lo <= 6 * _expanding_noise(r)
    low = flat | (level <= lo + (hi - lo) / 3.0)
    pos = np.clip(np.searchsorted(r_steps, steps, side="right") - 1, 0, r.size - 1)
    return low[pos]


def _value_loss_vanished(run: Run, steps: np.ndarray) -> np.ndarray:
    """Per step: the value loss (logged at or before it) is below VALUE_VANISHED of the
    largest value loss seen so far: the critic's error is gone, not growing."""
    vl = run.columns.get("value_loss")
    out = np.zeros(steps.size, dtype=bool)
    if vl is None:
        return out
    ok = np.isfinite(vl)
    if int(ok.sum()) < 3:
        return out
    v_steps, v = run.steps[ok], vl[ok]
    vanished = v <= VALUE_VANISHED * np.maximum.accumulate(np.abs(v))
    pos = np.searchsorted(v_steps, steps, side="right") - 1
    have = pos >= 0
    out[have] = vanished[pos[have]]
    return out


def _value_loss_in_context(run: Run, a: Anomaly) -> Anomaly:
    """Scale-aware: a value loss that grows with the return scale while the critic still
    explains the returns (explained variance high over the window) is not divergence.
    The raw loss is in the units of the squared returns, so it tracks their growth."""
    if a.severity == "info":
        return a
    ev = run.columns.get("explained_var")
    if ev is None:
        return a
    inside = (run.steps >= a.start_step) & (run.steps <= a.end_step) & np.isfinite(ev)
    if int(inside.sum()) < 3:
        return a
    level = float(np.median(ev[inside]))
    a.evidence["explained_var"] = _r(level)
    if level < VALUE_FIT_EV:
        return a
    a.severity = "info"
    a.message += f" while explained variance stayed {level:.2f} (the critic tracks a growing return scale)"
    return a


def detect_value_divergence(run: Run) -> list[Anomaly]:
    out = []
    ser = _series(run, "value_loss")
    if ser is not None:
        steps, x = ser
        warm = warmup_points(x.size)
        v = np.log(np.maximum(x, 1e-12))
        med, sigma = trailing_baseline(v, warm)
        low = np.minimum.accumulate(med)  # early points already use the first clean window
        hit = (((v - med) / sigma > 6) & (v - med > np.log(4.0))) | (v - low > np.log(10.0))
        # trend: the loss must also be rising against its own recent past (a point of a
        # falling warm-up curve is not divergence, whatever a later baseline says)
        recent = _trailing_median(np.r_[v[0], v[:-1]], 5)
        hit &= v > recent
        hit[:warm] = False

        def stay(i0: int, idx: np.ndarray) -> np.ndarray:
            return (v[idx] - med[i0] > np.log(2.0)) | (v[idx] - low[idx] > np.log(5.0))

        windows = extend_windows(hit_windows(hit, max_gap=2), stay, x.size)
        found = _windows_to_anomalies(
            "value_divergence", "value_loss", steps, x, np.exp(med), windows, warm, persist=5,
            long=20, is_extreme=lambda p, b: p > 20 * b,
            describe=lambda p, b, n: f"value loss diverged to {p:.4g} from {b:.4g} for {n} logged steps",
        )
        out += [_value_loss_in_context(run, a) for a in found]
    ser = _series(run, "explained_var")
    if ser is not None:
        steps, x = ser
        warm = warmup_points(x.size)
        med, _ = trailing_baseline(x, warm)
        hit = (x < -0.5) & (med - x > 0.5)
        hit[:warm] = False
        # explained variance is 1 - Var(error)/Var(returns): once every return is the same
        # (a solved task) it is noise divided by ~0, and a vanishing value loss says so
        hit &= ~_value_loss_vanished(run, steps)

        def stay_ev(i0: int, idx: np.ndarray) -> np.ndarray:
            return x[idx] < min(0.0, med[i0] - 0.25)

        windows = extend_windows(hit_windows(hit, max_gap=2), stay_ev, x.size)
        out += _windows_to_anomalies(
            "value_divergence", "explained_var", steps, x, med, windows, warm, persist=5,
            long=20, is_extreme=lambda p, b: p < -2.0,
            describe=lambda p, b, n: f"explained variance fell to {p:.3g} from {b:.3g} for {n} logged steps",
            higher_is_worse=False,
        )
    return out


# ---------------------------------------------------------------- registry

_PPO = frozenset({"ppo"})
_BOTH = frozenset({"ppo", "grpo"})
_GRPO = frozenset({"grpo"})

DETECTORS: dict[str, Detector] = {}


def register(detector: Detector) -> Detector:
    """Register a detector against its rulebook id (one detector per id)."""
    if detector.rule not in RULES:
        raise ValueError(f"detector for unknown rule id {detector.rule!r} (add it to rulebook.py)")
    if RULES[detector.rule].live_only:
        raise ValueError(f"rule {detector.rule!r} is live-only in the rulebook")
    if detector.rule in DETECTORS:
        raise ValueError(f"two detectors for rule {detector.rule!r}")
    DETECTORS[detector.rule] = detector
    return detector


for _det in (
    Detector("kl_spike", detect_kl_spike, _BOTH, ("kl",)),
    Detector("kl_controller_drift", detect_kl_controller_drift, _PPO, ("kl", "kl_coef")),
    Detector("approx_kl_high", detect_approx_kl_high, _BOTH, ("approx_kl",)),
    Detector("advantage_bias", detect_advantage_bias, _PPO, ("advantage_mean",)),
    Detector("entropy_collapse", detect_entropy_collapse, _BOTH, ("entropy",)),
    Detector("grad_norm_spike", detect_grad_norm_spike, _BOTH, ("grad_norm",)),
    Detector("grad_imbalance", detect_grad_imbalance, _PPO, ("grad_norm", "value_grad_norm")),
    Detector("non_finite", detect_non_finite, _BOTH, ()),
    Detector("reward_hacking", detect_reward_hacking, _BOTH,
             ("reward_mean", "response_len_mean", "kl")),
    Detector("reward_collapse", detect_reward_collapse, _BOTH, ("reward_mean",)),
    Detector("clip_frac_high", detect_clip_frac_high, _BOTH, ("clip_frac",)),
    Detector("length_explosion", detect_length_explosion, _BOTH, ("response_len_mean",)),
    Detector("length_collapse", detect_length_collapse, _BOTH, ("response_len_mean",)),
    Detector("zero_std_groups", detect_zero_std_groups, _GRPO, ("frac_reward_zero_std",)),
    Detector("value_divergence", detect_value_divergence, _PPO, ("value_loss",)),
):
    register(_det)

_GRPO_MARKERS = ("frac_reward_zero_std",)
_GRPO_KEY_PREFIXES = ("completions/", "num_tokens", "rewards/", "clip_ratio/")
_PPO_MARKERS = ("value_loss", "value_grad_norm", "explained_var")


def infer_algorithm(run: Run) -> str:
    """'grpo' when the run carries GRPO-only signals (TRL GRPOTrainer keys), else 'ppo'."""
    names = set(run.columns)
    if any(m in names for m in _GRPO_MARKERS):
        return "grpo"
    if any(m in names for m in _PPO_MARKERS):
        return "ppo"
    if any(name.startswith(_GRPO_KEY_PREFIXES) for name in names):
        return "grpo"
    if "response_clip_ratio" in names and "kl_coef" not in names:
        return "grpo"
    return "ppo"


def detect(run: Run, preset: str = "auto") -> list[Anomaly]:
    """All findings for one run, ordered by start step then severity (worst first)."""
    if preset not in ("auto", "ppo", "grpo"):
        raise ValueError(f"unknown preset {preset!r} (use auto, ppo or grpo)")
    algorithm = infer_algorithm(run) if preset == "auto" else preset
    found: list[Anomaly] = []
    if run.steps.size == 0:
        return found
    _LOCAL.cache = {}
    try:
        for det in DETECTORS.values():
            if algorithm in det.algorithms:
                found += det.func(run)
    finally:
        _LOCAL.cache = None
    found = _surge_onset_only(_drop_explained(found), run.steps)
    found.sort(key=lambda a: (a.start_step, -SEVERITY_RANK[a.severity], a.rule, a.metric))
    return found


# A finding inside a window of a broader finding on the same metric is the same event:
# a critic grad norm that stays 50x up is gradient imbalance, not a string of spikes.
EXPLAINED_BY = {("grad_norm_spike", "value_grad_norm"): ("grad_imbalance", "value_divergence")}


SURGE_STEPS = 5  # logged steps that make a KL surge's onset (the original kit's window)


def _surge_onset_only(found: list[Anomaly], steps) -> list[Anomaly]:
    """KL that jumps and then stays up while the controller does not react is two findings
    with one cause: the surge (its first steps, kl_spike) and the stuck controller
    (kl_controller_drift, which covers the sustained part). The spike keeps its evidence."""
    drifts = [d for d in found if d.rule == "kl_controller_drift" and d.severity != "info"]
    if not drifts:
        return found
    out = []
    for a in found:
        if a.rule == "kl_spike" and a.metric == "kl" and any(
                d.start_step <= a.end_step and a.start_step <= d.end_step for d in drifts):
            first = int(np.searchsorted(steps, a.start_step))
            onset_end = int(steps[min(first + SURGE_STEPS - 1, len(steps) - 1)])
            if onset_end < a.end_step:
                a = Anomaly(a.rule, a.metric, a.start_step, onset_end, a.severity,
                            f"{a.message}; the sustained part is the stuck KL controller "
                            "(kl_controller_drift)", dict(a.evidence))
        out.append(a)
    return out


def _drop_explained(found: list[Anomaly]) -> list[Anomaly]:
    out = []
    for a in found:
        broader = EXPLAINED_BY.get((a.rule, a.metric), ())
        if any(b.rule in broader and b.severity != "info" and b.start_step <= a.end_step
               and a.start_step <= b.end_step for b in found):
            continue
        out.append(a)
    return out
