"""Rules files of the original RL Debug Kit (`rldk monitor --rules rules.yaml`), read as data.

The original kit's format (its rules.yaml, rules/grpo_safe.yaml, ...):

    rules:
      - id: stop_on_high_kl
        where: name == "kl"                 # or: name in ("kl", "kl_mean")
        condition: value > 0.35             # or: mean(value) < 1.8, max(value) - min(value) < 0.003
        window: {size: 5, kind: consecutive}   # or kind: rolling
        grace_steps: 5                      # events seen before the rule may fire
        cooldown_steps: 5                   # steps after a firing during which it stays quiet
        actions:
          - warn: {msg: "KL {value:.3f} exceeded at step {step}"}
          - stop: {msg: "Stopping run due to KL {value:.3f}"}

The original evaluated `where` and `condition` as Python expressions; rldk never evaluates
anything as code. It reads the forms whose meaning is clear, with the original's semantics
(per metric name, one window of events; a `consecutive` window needs every event in it to
pass a `value` comparison, a `rolling` window compares the latest value, and aggregates
`mean|max|min|sum(value)`, `max(value) - min(value)`, `any(value OP X)`, `all(value OP X)`
are taken over the window). Everything else is refused with `file:line: reason`: tags or
meta filters, other expressions, `aggregator:` (ignored by the original for `value`
conditions, so its meaning is unclear), and `shell`/`http`/`sentinel` actions (rldk never
runs commands or requests from a rules file; use --notify).

Names match the event's own name, or the same canonical metric (`reward` and
`env/reward_mean` both watch reward_mean). Alerts are rldk's Alert rows: a `warn`-only
rule is severity warning, a rule with `stop` is critical with action stop.

Hot path: standard library and PyYAML only.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rldk_engine.ingest.metrics import canonical_name
from rldk_engine.live.rules import COMPARE, Alert, RulesError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_OP = r"(>=|<=|>|<)"
_Q = r"""(?:"([^"\\]*)"|'([^'\\]*)')"""
_WHERE_EQ = re.compile(rf"^name\s*==\s*{_Q}$")
_WHERE_IN = re.compile(r"^name\s+in\s*[(\[](.*)[)\]]$")
_WHERE_ITEM = re.compile(rf"^\s*{_Q}\s*$")
_COND_VALUE = re.compile(rf"^value\s*{_OP}\s*({_NUM})$")
_COND_AGG = re.compile(rf"^(mean|max|min|sum)\(\s*value\s*\)\s*{_OP}\s*({_NUM})$")
_COND_SPREAD = re.compile(rf"^max\(\s*value\s*\)\s*-\s*min\(\s*value\s*\)\s*{_OP}\s*({_NUM})$")
_COND_ANYALL = re.compile(rf"^(any|all)\(\s*value\s*{_OP}\s*({_NUM})\s*\)$")
_TEMPLATE_FIELD = re.compile(r"\{(\w+)(?::([^{}]*))?\}")
RULE_KEYS = ("id", "description", "where", "condition", "window", "grace_steps", "cooldown_steps", "actions")


@dataclass(frozen=True)
class KitRule:
    id: str
    names: frozenset[str] | None  # None: every metric
    canonical: frozenset[str] | None
    expr: str  # value | mean | max | min | sum | spread | any | all
    op: str
    threshold: float
    window: int = 1
    kind: str = "consecutive"
    grace: int = 0
    cooldown: int = 0
    warn_msg: str | None = None
    stop_msg: str | None = None
    has_warn: bool = False
    has_stop: bool = False

    @property
    def action(self) -> str:
        return "stop" if self.has_stop else "warn"

    @property
    def severity(self) -> str:
        return "critical" if self.has_stop else "warning"

    def matches(self, name: str) -> bool:
        if self.names is None:
            return True
        return name in self.names or (self.canonical is not None and canonical_name(name) in self.canonical)

    def met(self, values: deque[float]) -> bool:
        cmp = COMPARE[self.op]
        if self.expr == "value":
            return all(cmp(v, self.threshold) for v in values) if self.kind == "consecutive" \
                else cmp(values[-1], self.threshold)
        if self.expr == "any":
            return any(cmp(v, self.threshold) for v in values)
        if self.expr == "all":
            return all(cmp(v, self.threshold) for v in values)
        if self.expr == "mean":
            x = sum(values) / len(values)
        elif self.expr == "max":
            x = max(values)
        elif self.expr == "min":
            x = min(values)
        elif self.expr == "sum":
            x = sum(values)
        else:  # spread
            x = max(values) - min(values)
        return cmp(x, self.threshold)


def format_message(template: str, values: dict[str, Any]) -> str:
    """`{value:.3f}`, `{step}`, `{name}`, `{rule_id}` filled in; anything else kept as written
    (no attribute access, no evaluation)."""
    def fill(m: re.Match[str]) -> str:
        key, spec = m.group(1), m.group(2) or ""
        if key not in values:
            return m.group(0)
        try:
            return format(values[key], spec)
        except (ValueError, TypeError):
            return str(values[key])
    return _TEMPLATE_FIELD.sub(fill, template)


class _Where:
    def __init__(self, source: str):
        self.source = source

    def error(self, node: Any, reason: str) -> RulesError:
        line = getattr(getattr(node, "start_mark", None), "line", None)
        return RulesError(f"{self.source}:{line + 1}: {reason}" if line is not None else f"{self.source}: {reason}")


def _map(node: Any, where: _Where, what: str) -> dict[str, tuple[Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise where.error(node, f"{what} must be a mapping")
    out: dict[str, tuple[Any, Any]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.value in out:
            raise where.error(k, f"{what}: keys must be unique plain names")
        out[k.value] = (k, v)
    return out


def _text(node: Any, where: _Where, what: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise where.error(node, f"{what} must be a single value")
    return str(node.value).strip()


def _count(node: Any, where: _Where, what: str, minimum: int) -> int:
    text = _text(node, where, what)
    if not re.fullmatch(r"\d+", text) or int(text) < minimum:
        raise where.error(node, f"{what} must be an integer >= {minimum}, got '{text}'")
    return int(text)


def _parse_where(node: Any, where: _Where, rule_id: str) -> frozenset[str]:
    text = _text(node, where, "where")
    m = _WHERE_EQ.match(text)
    if m:
        return frozenset([m.group(1) if m.group(1) is not None else m.group(2)])
    m = _WHERE_IN.match(text)
    if m:
        names = []
        for item in m.group(1).split(","):
            if not item.strip():
                continue
            im = _WHERE_ITEM.match(item)
            if not im:
                break
            names.append(im.group(1) if im.group(1) is not None else im.group(2))
        else:
            if names:
                return frozenset(names)
    raise where.error(node, f"rule '{rule_id}': where '{text}' is not supported (rldk reads "
                            "`name == \"kl\"` or `name in (\"kl\", \"kl_mean\")`; tags/meta filters "
                            "and other expressions are not evaluated)")


def _parse_condition(node: Any, where: _Where, rule_id: str) -> tuple[str, str, float]:
    text = " ".join(_text(node, where, "condition").split())
    for pattern, expr in ((_COND_VALUE, "value"), (_COND_SPREAD, "spread")):
        m = pattern.match(text)
        if m:
            return expr, m.group(1), float(m.group(2))
    m = _COND_AGG.match(text) or _COND_ANYALL.match(text)
    if m:
        return m.group(1), m.group(2), float(m.group(3))
    raise where.error(node, f"rule '{rule_id}': condition '{text}' is not supported (rldk reads "
                            "`value > X`, `mean|max|min|sum(value) < X`, `max(value) - min(value) < X`, "
                            "`any(value > X)`, `all(value > X)`; nothing is evaluated as code)")


def _parse_actions(node: Any, where: _Where, rule_id: str) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {"has_warn": False, "has_stop": False, "warn_msg": None, "stop_msg": None}
    if not isinstance(node, yaml.SequenceNode):
        raise where.error(node, f"rule '{rule_id}': actions must be a list")
    for item in node.value:
        if isinstance(item, yaml.ScalarNode):
            kind, params = item.value, None
        else:
            m = _map(item, where, "action")
            if len(m) != 1:
                raise where.error(item, f"rule '{rule_id}': each action is one `warn:` or `stop:` entry")
            kind, (_, params) = next(iter(m.items()))
        kind = str(kind).lower()
        if kind not in ("warn", "stop"):
            raise where.error(item, f"rule '{rule_id}': action '{kind}' is refused (rldk never runs "
                                    "shell commands, HTTP requests or file writes from a rules file; "
                                    "use --notify URL for messages)")
        msg = None
        if params is not None and not (isinstance(params, yaml.ScalarNode) and params.value in ("", "null", "~")):
            pm = _map(params, where, f"{kind} action")
            for key, (knode, vnode) in pm.items():
                if key in ("msg", "message"):
                    msg = _text(vnode, where, "msg")
                elif kind == "stop" and key in ("kill_timeout_sec", "pid"):
                    raise where.error(knode, f"rule '{rule_id}': stop.{key} is not read from rules "
                                             "files (give --pid and --grace on the command line)")
                else:
                    raise where.error(knode, f"rule '{rule_id}': unknown {kind} option '{key}'")
        out[f"has_{kind}"] = True
        out[f"{kind}_msg"] = msg
    return out


def _parse_rule(node: Any, where: _Where) -> KitRule:
    m = _map(node, where, "rule")
    for key, (knode, _) in m.items():
        if key not in RULE_KEYS:
            raise where.error(knode, f"rule: unknown key '{key}' (the original kit's keys: {', '.join(RULE_KEYS)})")
    if "id" not in m:
        raise where.error(node, "rule is missing 'id'")
    rule_id = _text(m["id"][1], where, "id")
    if "condition" not in m:
        raise where.error(node, f"rule '{rule_id}' is missing 'condition'")
    names = _parse_where(m["where"][1], where, rule_id) if "where" in m else None
    expr, op, threshold = _parse_condition(m["condition"][1], where, rule_id)
    size, kind = 1, "consecutive"
    if "window" in m:
        wm = _map(m["window"][1], where, "window")
        for key, (knode, vnode) in wm.items():
            if key == "size":
                size = _count(vnode, where, "window.size", 1)
            elif key == "kind":
                kind = _text(vnode, where, "window.kind").lower()
                if kind not in ("consecutive", "rolling"):
                    raise where.error(vnode, f"rule '{rule_id}': window.kind must be consecutive or rolling")
            elif key == "aggregator":
                raise where.error(knode, f"rule '{rule_id}': window.aggregator is ambiguous (the original "
                                         "kit ignored it and compared the latest value); write the "
                                         "aggregate in the condition instead, e.g. `mean(value) < 0.12`")
            else:
                raise where.error(knode, f"rule '{rule_id}': unknown window key '{key}'")
    grace = _count(m["grace_steps"][1], where, "grace_steps", 0) if "grace_steps" in m else 0
    cooldown = _count(m["cooldown_steps"][1], where, "cooldown_steps", 0) if "cooldown_steps" in m else 0
    actions = _parse_actions(m["actions"][1], where, rule_id) if "actions" in m else {
        "has_warn": True, "has_stop": False, "warn_msg": None, "stop_msg": None}
    canonical = frozenset(canonical_name(n) for n in names) if names is not None else None
    return KitRule(rule_id, names, canonical, expr, op, threshold, size, kind, grace, cooldown, **actions)


def is_kit_rules_text(text: str) -> bool:
    """True when a rules file is in the original kit's format (string `condition`, `where`,
    `actions`) rather than rldk's (a `metric` and a condition mapping)."""
    return bool(re.search(r"^[ \t]*-?[ \t]*(where[ \t]*:|actions[ \t]*:|condition[ \t]*:[ \t]*[^{\s#])", text, re.MULTILINE))


def parse_kit_rules(text: str, source: str = "<rules>") -> list[KitRule]:
    import yaml

    where = _Where(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{source}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if root is None:
        raise RulesError(f"{source}: empty rules file")
    top = _map(root, where, "rules file")
    if "rules" not in top:
        raise where.error(root, "missing 'rules:' list")
    seq = top["rules"][1]
    if not isinstance(seq, yaml.SequenceNode) or not seq.value:
        raise where.error(seq, "'rules' must be a non-empty list of rule mappings")
    rules: list[KitRule] = []
    seen: dict[str, int] = {}
    for node in seq.value:
        rule = _parse_rule(node, where)
        if rule.id in seen:
            raise where.error(node, f"duplicate rule id '{rule.id}' (first at line {seen[rule.id]})")
        seen[rule.id] = node.start_mark.line + 1
        rules.append(rule)
    return rules


def load_kit_rules(path: str | Path) -> list[KitRule]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{p}: cannot read rules file ({exc.__class__.__name__}: {exc})") from None
    return parse_kit_rules(text, str(p))


@dataclass
class _Track:
    values: deque[float]
    count: int = 0
    last_fire: int | None = None


class KitEngine:
    """The original kit's per-event evaluation, producing rldk Alert rows."""

    def __init__(self, rules: list[KitRule], clock: Callable[[], float] = time.time):
        self.rules = rules
        self.clock = clock
        self._tracks: dict[tuple[str, str], _Track] = {}
        self.activations: dict[str, list[dict[str, Any]]] = {r.id: [] for r in rules}

    def observe(self, step: int, metrics: dict[str, float], now: float | None = None) -> list[Alert]:
        now = self.clock() if now is None else now
        alerts = []
        for name, value in metrics.items():
            for rule in self.rules:
                if rule.matches(name):
                    alert = self._event(rule, name, step, float(value), now)
                    if alert is not None:
                        alerts.append(alert)
        return alerts

    def _event(self, rule: KitRule, name: str, step: int, value: float, now: float) -> Alert | None:
        if not math.isfinite(value):
            return None  # a NaN neither passes nor fails a comparison (non_finite is rldk's rule)
        key = (rule.id, name)
        track = self._tracks.get(key)
        if track is None or (track.last_fire is not None and step < track.last_fire):
            track = self._tracks[key] = _Track(deque(maxlen=rule.window))  # the stream restarted
        track.values.append(value)
        track.count += 1
        if len(track.values) < rule.window or track.count < rule.grace:
            return None
        if track.last_fire is not None and step <= track.last_fire + rule.cooldown:
            return None
        if not rule.met(track.values):
            return None
        track.last_fire = step
        fields = {"value": value, "step": step, "name": name, "rule_id": rule.id}
        template = (rule.stop_msg if rule.has_stop else None) or rule.warn_msg
        message = format_message(template, fields) if template else \
            f"{rule.id}: {name}={value:.4g} at step {step} ({rule.expr} {rule.op} {rule.threshold:g})"
        self.activations[rule.id].append({"step": step, "name": name, "value": value, "message": message})
        return Alert(now, step, rule.id, name, value, rule.threshold, rule.severity, rule.action, message)
