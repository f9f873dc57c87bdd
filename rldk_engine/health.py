"""Health scores of one run, computed from its anomalies.

Formula (README copy):

    penalty(a) = W[severity] * (0.5 + 0.5 * sqrt(covered(a)))
        W = {info: 0.005, warning: 0.15, critical: 0.4}
        covered(a) = (end_step - start_step + 1) / (run's step span), clipped to [0, 1]
    overall   = prod over anomalies (1 - penalty(a)), info penalties summed and capped at 0.05
    stability = the same product over the optimisation-stability rules only
                (kl_spike, kl_controller_drift, approx_kl_high, grad_norm_spike,
                grad_imbalance, non_finite, value_divergence, entropy_collapse,
                clip_frac_high)

Both lie in [0, 1]. A run with no findings scores 1.0; a handful of isolated info blips
keeps it >= 0.95; one short warning costs ~0.08, one run-long critical ~0.4, and
penalties compound multiplicatively so several problems drive the score toward 0.
"""

from __future__ import annotations

import math

SEVERITY_WEIGHT = {"info": 0.005, "warning": 0.15, "critical": 0.4}
INFO_CAP = 0.05
STABILITY_RULES = frozenset({
    "kl_spike", "kl_controller_drift", "approx_kl_high", "grad_norm_spike",
    "grad_imbalance", "non_finite", "value_divergence", "entropy_collapse", "clip_frac_high",
})


def _step_span(run) -> int:
    steps = run.steps
    if steps.size == 0:
        return 1
    return max(1, int(steps[-1]) - int(steps[0]) + 1)


def penalty(anomaly, span: int) -> float:
    covered = min(1.0, max(0.0, (anomaly.end_step - anomaly.start_step + 1) / span))
    return SEVERITY_WEIGHT.get(anomaly.severity, 0.0) * (0.5 + 0.5 * math.sqrt(covered))


def score(anomalies, span: int) -> float:
    """The health formula over any subset of anomalies and a step span (components, windows)."""
    info = min(INFO_CAP, sum(penalty(a, span) for a in anomalies if a.severity == "info"))
    score = 1.0 - info
    for a in anomalies:
        if a.severity != "info":
            score *= 1.0 - penalty(a, span)
    return round(min(1.0, max(0.0, score)), 4)


def health(anomalies, run) -> dict[str, float]:
    span = _step_span(run)
    return {
        "overall": score(anomalies, span),
        "stability": score([a for a in anomalies if a.rule in STABILITY_RULES], span),
    }
