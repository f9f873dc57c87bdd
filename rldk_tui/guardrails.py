"""The rules in force for a run, as chart thresholds and alert windows (no Textual).

A run directory's status.json names its preset; `rldk-tui run --rules FILE` names a
rules file. Threshold and |abs| conditions become lines on their metric's chart; every
rule's persistence (`for` or `m_of_n`) tells how many steps an alert's window covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from rldk_engine.live.rules import Rule, RulesError, load_rules, preset_rules
from rldk_tui.chart import Threshold

SEVERITY_LINE = {"critical": "red", "warning": "yellow", "info": "cyan"}


@dataclass(frozen=True)
class RulesInForce:
    rules: tuple[Rule, ...]
    source: str  # "preset ppo", "rules.yaml", or "" when none could be read

    def thresholds(self, metric: str, data_low: float = 0.0) -> list[Threshold]:
        """Lines for `metric`. An |abs| rule's negative line only once the data has gone
        below zero: a KL that never did would otherwise spend half its chart on it."""
        lines = []
        for rule in self.rules:
            if metric not in rule.metrics or rule.condition.kind not in ("threshold", "abs"):
                continue
            value = rule.condition.value
            colour = SEVERITY_LINE.get(rule.severity, "red")
            lines.append(Threshold(value, rule.id, colour))
            if rule.condition.kind == "abs" and data_low < 0:
                lines.append(Threshold(-value, rule.id, colour))
        return lines

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def window(self, alert: dict) -> tuple[int, int] | None:
        """The steps an alert looked at: its rule's persistence window ending at its step."""
        step = alert.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return None
        rule = self.rule(str(alert.get("rule", "")))
        span = rule.window_n if rule is not None else 1
        return step - max(1, span) + 1, step


def rules_in_force(preset: object = None, rules_path: str | None = None) -> RulesInForce:
    """Never raises: a run whose rules cannot be read is drawn without thresholds."""
    try:
        if rules_path:
            return RulesInForce(tuple(load_rules(rules_path)), str(rules_path))
        if isinstance(preset, str) and preset:
            return RulesInForce(tuple(preset_rules(preset)), f"preset {preset}")
    except (RulesError, OSError, ValueError):
        pass
    return RulesInForce((), "")
