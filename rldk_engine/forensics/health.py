"""Health scores of one run, computed from its anomalies.

Formula (README copy):

    penalty(a) = W[severity] * (0.5 + 0.5 * sqrt(covered(a)))
        W = {info: 0.005, warning: 0.15, critical: 0.4}
        covered(a) = (end_step - start_step + 1) / (run's step span), clipped to [0, 1]
    overall   = (1 - info penalties, summed and capped at 0.05)
                * prod over rules (1 - penalty of the rule's warning/critical windows taken
                  together: worst severity, covered = union of its windows)
    stability = the same product over the optimisation-stability rules only
                (rulebook: counts_for_stability; kl_spike, kl_controller_drift,
                approx_kl_high, grad_norm_spike, grad_imbalance, non_finite,
                value_divergence, entropy_collapse, clip_frac_high)

Severity has one meaning everywhere (scan, live presets, TUI): critical = the run is
wasting compute now (stop-worthy); warning = a human should look; info = notable but
normal. The weights follow: info barely moves the score, a critical costs the most.

Both lie in [0, 1]. A run with no findings scores 1.0; a handful of isolated info blips
keeps it >= 0.95; one short warning costs ~0.08, one run-long critical ~0.4, and
penalties compound multiplicatively so several problems drive the score toward 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rldk_engine.rulebook import stability_rule_ids

if TYPE_CHECKING:
    from rldk_engine.forensics.detectors import Anomaly
    from rldk_engine.ingest.run import Run

SEVERITY_WEIGHT = {"info": 0.005, "warning": 0.15, "critical": 0.4}
INFO_CAP = 0.05
STABILITY_RULES = stability_rule_ids()  # the registry says which rules count


def _step_span(run: Run) -> int:
    steps = run.steps
    if steps.size == 0:
        return 1
    return max(1, int(steps[-1]) - int(steps[0]) + 1)


def penalty(anomaly: Anomaly, span: int) -> float:
    covered = min(1.0, max(0.0, (anomaly.end_step - anomaly.start_step + 1) / span))
    return SEVERITY_WEIGHT.get(anomaly.severity, 0.0) * (0.5 + 0.5 * math.sqrt(covered))


def _union_length(windows: list[tuple[int, int]]) -> int:
    covered, reach = 0, None
    for lo, hi in sorted(windows):
        if reach is None or lo > reach:
            covered += hi - lo + 1
            reach = hi
        elif hi > reach:
            covered += hi - reach
            reach = hi
    return covered


def rule_penalties(anomalies: Sequence[Anomaly], span: int) -> list[float]:
    """One penalty per rule over its warning/critical windows: worst severity, union coverage.

    A detector may split one long fault into several windows; scored apart they would
    compound, and a larger fault (one merged window) could score better than a smaller one.
    """
    by_rule: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        if a.severity != "info":
            by_rule.setdefault(a.rule, []).append(a)
    penalties = []
    for group in by_rule.values():
        covered = min(1.0, _union_length([(a.start_step, a.end_step) for a in group]) / span)
        weight = max(SEVERITY_WEIGHT.get(a.severity, 0.0) for a in group)
        penalties.append(weight * (0.5 + 0.5 * math.sqrt(covered)))
    return penalties


def score(anomalies: Sequence[Anomaly], span: int) -> float:
    """The health formula over any subset of anomalies and a step span (components, windows)."""
    info = min(INFO_CAP, sum(penalty(a, span) for a in anomalies if a.severity == "info"))
    score = 1.0 - info
    for rule_penalty in rule_penalties(anomalies, span):
        score *= 1.0 - rule_penalty
    return round(min(1.0, max(0.0, score)), 4)


def health(anomalies: Sequence[Anomaly], run: Run) -> dict[str, float]:
    span = _step_span(run)
    return {
        "overall": score(anomalies, span),
        "stability": score([a for a in anomalies if a.rule in STABILITY_RULES], span),
    }
