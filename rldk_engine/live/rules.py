"""Streaming guardrail rules: data-only rules, a per-step engine, a Guard API and replay.

Rules are plain data loaded from YAML (never evaluated as code). Each rule watches one
metric (or a list, or "*" for every metric) and has:

* a condition: ``threshold`` (value op X), ``abs`` (|value| op X), ``non_finite``,
  ``baseline`` (a robust score of the value against a rolling or initial median/MAD
  baseline, op X) or ``stall`` (no metric line for ``seconds``; driven by ``tick``);
* a persistence: ``for: N`` consecutive observed steps, or ``m_of_n: [M, N]``;
* a severity (info|warning|critical) and an action (warn|stop).

A rule fires once per episode: when its persistence is first met. The episode ends with a
"clear" event once the condition has been false for ``clear_for`` consecutive observed
steps (default: the persistence length). Non-finite values are ignored by every condition
except ``non_finite`` (they neither extend nor break a streak, nor enter a baseline):
a NaN is reported by the ``non_finite`` rule, not mistaken for "KL is fine".

This module is on the monitor's hot path: standard library and PyYAML only.
"""

from __future__ import annotations

import math
import operator
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any, Callable, Iterable

from rldk_engine.constants import MAD_TO_SIGMA, SEVERITY_ORDER
from rldk_engine.ingest.metrics import canonical_name  # the alias table: standard library only
from rldk_engine.ingest.tail import open_regular
from rldk_engine.live.protocol import json_number  # noqa: F401  (re-exported: Alert rows use it)

if TYPE_CHECKING:
    from rldk_engine.ingest.run import Run  # numpy: never imported on the live hot path

SEVERITIES = SEVERITY_ORDER
ACTIONS = ("warn", "stop")
CONDITION_KINDS = ("threshold", "abs", "non_finite", "baseline", "stall")
OPS = (">", ">=", "<", "<=")
BASELINE_SCORES = ("ratio", "z", "delta")
BASELINE_MODES = ("rolling", "initial")
PRESETS = ("ppo", "grpo")
PRESET_DIR = Path(__file__).resolve().parent / "presets"



class RulesError(ValueError):
    """A rules file (or rule mapping) is invalid; str() is one line naming file and line."""


@dataclass(frozen=True)
class Condition:
    kind: str = "threshold"
    op: str = ">"
    value: float = 0.0
    # baseline only
    score: str = "ratio"
    baseline: str = "rolling"
    window: int = 50
    warmup: int = 10
    # stall only
    seconds: float = 600.0


@dataclass(frozen=True)
class Rule:
    id: str
    metrics: tuple[str, ...]
    condition: Condition
    for_steps: int = 1
    m_of_n: tuple[int, int] | None = None
    severity: str = "warning"
    action: str = "warn"
    message: str = ""
    clear_for: int | None = None

    @property
    def window_n(self) -> int:
        return self.m_of_n[1] if self.m_of_n else self.for_steps

    @property
    def clear_after(self) -> int:
        return self.clear_for if self.clear_for is not None else max(1, self.window_n)

    @property
    def metric(self) -> str:
        return self.metrics[0] if len(self.metrics) == 1 else ",".join(self.metrics)

    def describe(self) -> str:
        c = self.condition
        if c.kind == "non_finite":
            cond = f"{self.metric} is NaN/inf"
        elif c.kind == "stall":
            cond = f"no metrics for {c.seconds:g}s"
        elif c.kind == "abs":
            cond = f"|{self.metric}| {c.op} {c.value:g}"
        elif c.kind == "baseline":
            cond = f"{self.metric} {c.score} vs {c.baseline} median {c.op} {c.value:g}"
        else:
            cond = f"{self.metric} {c.op} {c.value:g}"
        if self.m_of_n:
            persist = f" in {self.m_of_n[0]} of {self.m_of_n[1]} steps"
        elif self.for_steps > 1:
            persist = f" for {self.for_steps} consecutive steps"
        else:
            persist = ""
        return cond + persist


@dataclass
class Alert:
    time: float
    step: int | None
    rule: str
    metric: str
    value: float | None
    threshold: float | None
    severity: str
    action: str
    message: str
    event: str = "fire"  # "fire" | "clear"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = json_number(self.value)
        d["threshold"] = json_number(self.threshold)
        return d

    @property
    def key(self) -> tuple:
        """What replay-vs-live comparisons use (time differs by construction)."""
        return (self.event, self.step, self.rule, self.metric, self.severity, self.action)


# ----------------------------------------------------------------------------- loading


COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class _Where:
    """Formats 'file:line: reason' from a yaml node."""

    def __init__(self, source: str):
        self.source = source

    def error(self, node: Any, reason: str) -> RulesError:
        return RulesError(f"{_at(self.source, getattr(node, 'start_mark', None))}: {reason}")


def _at(source: str, mark: Any) -> str:
    """'file:line:column' (1-based) from a yaml mark; the file alone without one."""
    line = getattr(mark, "line", None)
    if line is None:
        return source
    column = getattr(mark, "column", None)
    return f"{source}:{line + 1}" + (f":{column + 1}" if column is not None else "")


MAX_RULES_BYTES = 1 << 20  # a rules file is a few KB; a larger one is refused, not read
MAX_DEPTH = 32  # rules nest 4 deep; deeper YAML is refused before it is composed
MAX_COUNT = 1_000_000  # steps/window sizes above this are typos (and would hold memory)
_SHOWN = 40  # characters of a bad value quoted in a message


def _node_map(node: Any, where: _Where, what: str) -> dict[str, tuple[Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise where.error(node, f"{what} must be a mapping")
    out: dict[str, tuple[Any, Any]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise where.error(k, f"{what}: keys must be plain names")
        if k.value in out:
            raise where.error(k, f"{what}: duplicate key '{k.value}'")
        out[k.value] = (k, v)
    return out


def _scalar(node: Any, where: _Where, what: str) -> Any:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise where.error(node, f"{what} must be a single value")
    try:
        return yaml.safe_load(yaml.serialize(node))  # typed scalar, never code
    except (ValueError, OverflowError, TypeError, AttributeError, yaml.YAMLError) as exc:
        # a bad !!int/!!float/!!timestamp, an integer of thousands of digits, an unknown tag
        shown = node.value if len(node.value) <= _SHOWN else node.value[:_SHOWN] + "…"
        tag = node.tag.rsplit(":", 1)[-1]
        why = "too many digits" if "digits" in str(exc) else f"not a valid {tag}"
        raise where.error(node, f"{what}: cannot read {shown!r} ({why})") from None


def _number(node: Any, where: _Where, what: str) -> float:
    v = _scalar(node, where, what)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(str(v))
        except ValueError:
            raise where.error(node, f"{what} must be a number, got '{node.value}'") from None
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if math.isnan(x):
        raise where.error(node, f"{what} must not be NaN")
    if math.isinf(x):
        raise where.error(node, f"{what} is out of range (must be a finite number)")
    return x


def _int(node: Any, where: _Where, what: str, minimum: int = 1) -> int:
    v = _scalar(node, where, what)
    shown = node.value if len(node.value) <= _SHOWN else node.value[:_SHOWN] + "…"
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise where.error(node, f"{what} must be an integer >= {minimum}, got '{shown}'")
    if v > MAX_COUNT:
        raise where.error(node, f"{what} is out of range (at most {MAX_COUNT}), got '{shown}'")
    return v


def _choice(node: Any, where: _Where, what: str, choices: tuple[str, ...]) -> str:
    v = str(_scalar(node, where, what))
    if v not in choices:
        raise where.error(node, f"{what} must be one of {'|'.join(choices)}, got '{v}'")
    return v


RULE_KEYS = ("id", "metric", "condition", "for", "m_of_n", "severity", "action", "message",
             "clear_for")
CONDITION_KEYS = ("kind", "op", "value", "score", "baseline", "window", "warmup", "seconds")


def _parse_condition(node: Any, where: _Where) -> Condition:
    m = _node_map(node, where, "condition")
    for key, (knode, _) in m.items():
        if key not in CONDITION_KEYS:
            raise where.error(knode, f"condition: unknown key '{key}' (allowed: {', '.join(CONDITION_KEYS)})")
    kind = _choice(m["kind"][1], where, "condition.kind", CONDITION_KINDS) if "kind" in m else "threshold"
    kw: dict[str, Any] = {"kind": kind}
    needs_value = kind in ("threshold", "abs", "baseline")
    if needs_value:
        if "value" not in m:
            raise where.error(node, f"condition of kind '{kind}' needs 'value'")
        kw["value"] = _number(m["value"][1], where, "condition.value")
        if "op" in m:
            kw["op"] = _choice(m["op"][1], where, "condition.op", OPS)
    if kind == "baseline":
        if "score" in m:
            kw["score"] = _choice(m["score"][1], where, "condition.score", BASELINE_SCORES)
        if "baseline" in m:
            kw["baseline"] = _choice(m["baseline"][1], where, "condition.baseline", BASELINE_MODES)
        if "window" in m:
            kw["window"] = _int(m["window"][1], where, "condition.window", 3)
        if "warmup" in m:
            kw["warmup"] = _int(m["warmup"][1], where, "condition.warmup", 1)
    if kind == "stall":
        if "seconds" not in m:
            raise where.error(node, "condition of kind 'stall' needs 'seconds'")
        secs = _number(m["seconds"][1], where, "condition.seconds")
        if secs <= 0:
            raise where.error(m["seconds"][1], "condition.seconds must be > 0")
        kw["seconds"] = secs
    for key in m:
        allowed = {"kind"} | ({"op", "value"} if needs_value else set())
        allowed |= {"score", "baseline", "window", "warmup"} if kind == "baseline" else set()
        allowed |= {"seconds"} if kind == "stall" else set()
        if key not in allowed:
            raise where.error(m[key][0], f"condition: '{key}' does not apply to kind '{kind}'")
    return Condition(**kw)


def _parse_rule(node: Any, where: _Where) -> Rule:
    import yaml

    m = _node_map(node, where, "rule")
    for key, (knode, _) in m.items():
        if key not in RULE_KEYS:
            raise where.error(knode, f"rule: unknown key '{key}' (allowed: {', '.join(RULE_KEYS)})")
    if "id" not in m:
        raise where.error(node, "rule is missing 'id'")
    rule_id = str(_scalar(m["id"][1], where, "id")).strip()
    if not rule_id:
        raise where.error(m["id"][1], "id must not be empty")
    if "condition" not in m:
        raise where.error(node, f"rule '{rule_id}' is missing 'condition'")
    cond = _parse_condition(m["condition"][1], where)
    if "metric" in m:
        mnode = m["metric"][1]
        if isinstance(mnode, yaml.SequenceNode):
            metrics = tuple(str(_scalar(n, where, "metric")) for n in mnode.value)
        else:
            metrics = (str(_scalar(mnode, where, "metric")),)
        if not metrics or any(not x for x in metrics):
            raise where.error(mnode, f"rule '{rule_id}': metric must be a name or a list of names")
        # the engine sees canonical names (the monitor and Guard map every logged key), so a
        # rule written with a trainer key (objective/kl) must watch its canonical name (kl)
        metrics = tuple(dict.fromkeys(x if x == "*" else canonical_name(x) for x in metrics))
    elif cond.kind == "stall":
        metrics = ("*",)
    else:
        raise where.error(node, f"rule '{rule_id}' is missing 'metric'")
    if "for" in m and "m_of_n" in m:
        raise where.error(m["m_of_n"][0], f"rule '{rule_id}': use either 'for' or 'm_of_n', not both")
    for_steps = _int(m["for"][1], where, "for") if "for" in m else 1
    m_of_n = None
    if "m_of_n" in m:
        mn = m["m_of_n"][1]
        if not isinstance(mn, yaml.SequenceNode) or len(mn.value) != 2:
            raise where.error(mn, f"rule '{rule_id}': m_of_n must be a list [M, N]")
        mm = _int(mn.value[0], where, "m_of_n M")
        nn = _int(mn.value[1], where, "m_of_n N")
        if mm > nn:
            raise where.error(mn, f"rule '{rule_id}': m_of_n needs M <= N, got [{mm}, {nn}]")
        m_of_n = (mm, nn)
    severity = _choice(m["severity"][1], where, "severity", SEVERITIES) if "severity" in m else "warning"
    action = _choice(m["action"][1], where, "action", ACTIONS) if "action" in m else "warn"
    message = str(_scalar(m["message"][1], where, "message")) if "message" in m else ""
    clear_for = _int(m["clear_for"][1], where, "clear_for") if "clear_for" in m else None
    return Rule(rule_id, metrics, cond, for_steps, m_of_n, severity, action, message, clear_for)


def parse_rules_text(text: str, source: str = "<rules>") -> list[Rule]:
    """Parse YAML text: either a list of rules or a mapping with a 'rules' list."""
    import yaml

    where = _Where(source)
    try:
        _check_depth(text, source)  # the composer recurses: refuse deep nesting first
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RulesError(f"{_at(source, mark)}: not valid YAML ({reason})") from None
    except RecursionError:
        raise RulesError(f"{source}: not valid rules (nested too deeply)") from None
    if root is None:
        raise RulesError(f"{source}: empty rules file")
    if isinstance(root, yaml.MappingNode):
        top = _node_map(root, where, "rules file")
        for key, (knode, _) in top.items():
            if key not in ("rules", "name", "description"):
                raise where.error(knode, f"unknown top-level key '{key}' (expected 'rules')")
        if "rules" not in top:
            raise where.error(root, "missing 'rules:' list")
        root = top["rules"][1]
    if not isinstance(root, yaml.SequenceNode):
        raise where.error(root, "'rules' must be a list of rule mappings")
    rules = [_parse_rule(n, where) for n in root.value]
    seen: dict[str, int] = {}
    for node, rule in zip(root.value, rules):
        if rule.id in seen:
            raise where.error(node, f"duplicate rule id '{rule.id}' (first at line {seen[rule.id]})")
        seen[rule.id] = node.start_mark.line + 1
    return rules


def _check_depth(text: str, source: str) -> None:
    """Walk the YAML events (the parser is a loop, not a recursion) and refuse nesting
    deeper than MAX_DEPTH at the line and column where it happens."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise RulesError(f"{_at(source, event.start_mark)}: not valid rules "
                                 f"(nested more than {MAX_DEPTH} levels deep)")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_rules(path: str | os.PathLike) -> list[Rule]:
    """A rules YAML file; every problem is a RulesError with a one-line message. Only a
    regular file is read (a FIFO would block), at most MAX_RULES_BYTES of it."""
    p = Path(path)
    try:
        fd = open_regular(p)
        with open(fd, "rb") as fh:
            data = fh.read(MAX_RULES_BYTES + 1)
    except OSError as exc:
        reason = getattr(exc, "reason", None) or (exc.strerror or str(exc)).lower()
        raise RulesError(f"{p}: cannot read rules file ({reason})") from None
    if len(data) > MAX_RULES_BYTES:
        raise RulesError(f"{p}: rules file larger than {MAX_RULES_BYTES // 1024} KB; refused")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    return parse_rules_text(text, str(p))


def preset_rules(name: str) -> list[Rule]:
    if name not in PRESETS:
        raise RulesError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return load_rules(PRESET_DIR / f"{name}.yaml")


def with_stall_seconds(rules: list[Rule], seconds: float | None) -> list[Rule]:
    """Set the stall timeout (replacing any stall rule); None keeps rules as they are,
    0 or less removes stall rules."""
    if seconds is None:
        return rules
    kept = [r for r in rules if r.condition.kind != "stall"]
    if seconds <= 0:
        return kept
    stall = Rule("stall", ("*",), Condition(kind="stall", seconds=float(seconds)),
                 severity="warning", action="warn",
                 message=f"no metric line for {seconds:g}s (trainer hung or logging stopped?)")
    return kept + [stall]


# ----------------------------------------------------------------------------- engine


class _State:
    """Per (rule, metric) streaming state."""

    __slots__ = ("streak", "hits", "hit_count", "active", "false_streak", "history", "frozen",
                 "last_step", "n_warm")

    def __init__(self, rule: Rule):
        self.last_step: int | None = None  # persistence counts steps, not log lines
        self.streak = 0
        self.hits: deque[bool] | None = deque(maxlen=rule.m_of_n[1]) if rule.m_of_n else None
        self.hit_count = 0
        self.active = False
        self.false_streak = 0
        c = rule.condition
        self.history: deque[float] | None = (
            deque(maxlen=c.window if c.baseline == "rolling" else c.warmup)
            if c.kind == "baseline" else None
        )
        self.frozen: tuple[float, float] | None = None  # initial baseline (median, sigma)
        self.n_warm = 0  # values seen during a rolling warm-up (it may be longer than the window)


def _baseline_score(cond: Condition, st: _State, x: float) -> tuple[float | None, float | None]:
    """(score, baseline median) of x against past values; None during warm-up."""
    hist = st.history
    assert hist is not None
    if cond.baseline == "initial":
        if st.frozen is None:
            if len(hist) < cond.warmup:
                hist.append(x)
                return None, None
            med = median(hist)
            st.frozen = (med, MAD_TO_SIGMA * median(abs(v - med) for v in hist))
        med, sigma = st.frozen
    else:
        if st.n_warm < cond.warmup:
            st.n_warm += 1
            hist.append(x)
            return None, None
        med = median(hist)
        sigma = MAD_TO_SIGMA * median([abs(v - med) for v in hist]) if cond.score == "z" else 0.0
        hist.append(x)
    if cond.score == "ratio":
        if med == 0:
            return (math.inf if x > 0 else (-math.inf if x < 0 else 1.0)), med
        if x != 0 and (x > 0) != (med > 0):
            # a ratio across zero says nothing (a Gaussian policy's differential entropy
            # legitimately turns negative): NaN compares false, so the step is a miss
            return math.nan, med
        return x / med, med
    if cond.score == "delta":
        return x - med, med
    # z: floor the scale so a constant history does not make every wiggle infinite
    scale = max(sigma, 0.05 * abs(med), 1e-12)
    return (x - med) / scale, med


class RuleEngine:
    """Apply rules to a stream of (step, metrics) observations."""

    def __init__(self, rules: Iterable[Rule], clock=time.time):
        self.rules = list(rules)
        self.clock = clock
        self.metric_rules = [r for r in self.rules if r.condition.kind != "stall"]
        self.stall_rules = [r for r in self.rules if r.condition.kind == "stall"]
        self._states: dict[tuple[str, str], _State] = {}
        self._stall_active: dict[str, bool] = {r.id: False for r in self.stall_rules}
        self.started = clock()
        self.last_observation: float | None = None
        self.last_step: int | None = None
        self._step_metrics: set[str] = set()  # metrics already observed at last_step
        self.n_observed = 0
        self.n_fired = 0  # a count, not a list: the engine runs for millions of steps

    def _state(self, rule: Rule, metric: str) -> _State:
        key = (rule.id, metric)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State(rule)
        return st

    def observe(self, step: int, metrics: dict[str, float], now: float | None = None) -> list[Alert]:
        now = self.clock() if now is None else now
        if step == self.last_step:
            # the same step printed again (a second line, unprefixed ranks): only metrics
            # not seen at this step yet count, whatever state the rules are in
            metrics = {k: v for k, v in metrics.items() if k not in self._step_metrics}
            self._step_metrics.update(metrics)
        else:
            self._step_metrics = set(metrics)
        self.last_observation = now
        self.last_step = step
        self.n_observed += 1
        alerts: list[Alert] = []
        for rule in self.metric_rules:
            names = rule.metrics
            if names == ("*",):
                names = tuple(metrics)
            for name in names:
                x = metrics.get(name)
                if x is None:
                    continue
                alert = self._apply(rule, name, float(x), step, now)
                if alert is not None:
                    alerts.append(alert)
        if self.stall_rules:
            for rule in self.stall_rules:
                if self._stall_active[rule.id]:
                    self._stall_active[rule.id] = False
                    alerts.append(self._alert(rule, "*", step, None, now, "clear",
                                              f"{rule.id} cleared: metrics arrived again"))
        self.n_fired += sum(a.event == "fire" for a in alerts)
        return alerts

    def _apply(self, rule: Rule, name: str, x: float, step: int, now: float) -> Alert | None:
        key = (rule.id, name)
        st = self._states.get(key)
        if st is not None and st.last_step == step:
            # the same step printed again (a second line, unprefixed ranks): the first value
            # counts, so `for: 5` means 5 steps, never 5 lines
            return None
        cond = rule.condition
        kind = cond.kind
        if kind == "non_finite":
            hit = not math.isfinite(x)
        elif not math.isfinite(x):
            return None  # non-finite values are the non_finite rule's business
        elif kind == "threshold":
            hit = COMPARE[cond.op](x, cond.value)
        elif kind == "abs":
            hit = COMPARE[cond.op](abs(x), cond.value)
        else:  # baseline
            if st is None:
                st = self._states[key] = _State(rule)
            score, _ = _baseline_score(cond, st, x)
            if score is None:
                return None
            hit = COMPARE[cond.op](score, cond.value)
        if st is None:
            if not hit:
                return None  # fast path: a fresh state with a miss stays all-zero
            st = self._states[key] = _State(rule)
        shown_x = x
        st.last_step = step
        if rule.m_of_n:
            hits = st.hits
            assert hits is not None
            if len(hits) == hits.maxlen and hits[0]:
                st.hit_count -= 1
            hits.append(hit)
            st.hit_count += hit
            met = st.hit_count >= rule.m_of_n[0]
        else:
            st.streak = st.streak + 1 if hit else 0
            met = st.streak >= rule.for_steps
        if hit:
            st.false_streak = 0
        else:
            st.false_streak += 1
        if met and not st.active:
            st.active = True
            return self._alert(rule, name, step, shown_x, now, "fire", self._fire_message(rule, name, shown_x, step))
        if st.active and not hit and st.false_streak >= rule.clear_after and not met:
            st.active = False
            return self._alert(rule, name, step, shown_x, now, "clear",
                               f"{rule.id} cleared at step {step}: {name}={shown_x:.4g}")
        return None

    def _fire_message(self, rule: Rule, name: str, x: float, step: int) -> str:
        head = rule.message or rule.describe()
        return f"{head} ({name}={x:.4g} at step {step})"

    def _alert(self, rule: Rule, name: str, step: int | None, x: float | None, now: float,
               event: str, message: str) -> Alert:
        c = rule.condition
        threshold = c.seconds if c.kind == "stall" else (None if c.kind == "non_finite" else c.value)
        return Alert(now, step, rule.id, name, x, threshold, rule.severity, rule.action, message, event)

    def tick(self, now: float | None = None) -> list[Alert]:
        """Check stall rules; call periodically (the monitor does ~10/s)."""
        now = self.clock() if now is None else now
        since = self.last_observation if self.last_observation is not None else self.started
        alerts = []
        for rule in self.stall_rules:
            idle = now - since
            if not self._stall_active[rule.id] and idle >= rule.condition.seconds:
                self._stall_active[rule.id] = True
                msg = rule.message or rule.describe()
                alerts.append(self._alert(rule, "*", self.last_step, idle, now, "fire",
                                          f"{msg} (idle {idle:.0f}s after step {self.last_step})"))
        self.n_fired += len(alerts)
        return alerts

    def active(self) -> list[tuple[str, str]]:
        out = [k for k, st in self._states.items() if st.active]
        out += [(rid, "*") for rid, a in self._stall_active.items() if a]
        return out


# ----------------------------------------------------------------------------- Guard / replay


@dataclass
class GuardResult:
    alerts: list[Alert] = field(default_factory=list)
    should_stop: bool = False

    def __bool__(self) -> bool:  # `if guard.observe(...)` reads as "something happened"
        return bool(self.alerts)


class Guard:
    """The rules inside a training loop: ``Guard(preset="ppo").observe(step, metrics)``.

    ``metrics`` may use trainer keys (``objective/kl``) or canonical names; they are
    mapped through rldk_engine.ingest.metrics. should_stop stays True once a stop rule fired.
    """

    def __init__(self, preset: str | None = "ppo", rules: list[Rule] | str | os.PathLike | None = None):
        if rules is None:
            rule_list = preset_rules(preset or "ppo")
        elif isinstance(rules, (str, os.PathLike)):
            rule_list = load_rules(rules)
        else:
            rule_list = list(rules)
        self.engine = RuleEngine(rule_list)
        self.stopped = False
        self.alerts: list[Alert] = []

    def observe(self, step: int, metrics: dict[str, Any]) -> GuardResult:
        from rldk_engine.ingest.parse import canonical_metrics

        canon = canonical_metrics(metrics)
        alerts = self.engine.observe(int(step), canon)
        self.alerts.extend(alerts)
        if any(a.event == "fire" and a.action == "stop" for a in alerts):
            self.stopped = True
        return GuardResult(alerts, self.stopped)


def iter_observations(run_or_records: Run | Iterable[Any]) -> Iterable[tuple[int, dict[str, float]]]:
    """(step, metrics) pairs from a Run (columns + nonfinite) or an iterable of Records
    or (step, dict) pairs."""
    if hasattr(run_or_records, "columns") and hasattr(run_or_records, "steps"):
        run = run_or_records
        cols = {k: v.tolist() for k, v in run.columns.items() if k != "step"}
        bad = {k: set(int(s) for s in v) for k, v in getattr(run, "nonfinite", {}).items()}
        for i, step in enumerate(run.steps.tolist()):
            row: dict[str, float] = {}
            for k, col in cols.items():
                x = col[i]
                if x == x or step in bad.get(k, ()):  # NaN means missing unless logged so
                    row[k] = x
            yield int(step), row
        return
    for item in run_or_records:
        if hasattr(item, "step") and hasattr(item, "metrics"):
            yield int(item.step), dict(item.metrics)
        else:
            step, metrics = item
            yield int(step), dict(metrics)


def replay(run_or_records: Run | Iterable[Any], rules: list[Rule] | str | None = "ppo") -> list[Alert]:
    """Feed a stored run through the engine step by step; same alerts as live."""
    if isinstance(rules, str):
        rules = preset_rules(rules)
    engine = RuleEngine(rules or [], clock=lambda: 0.0)
    alerts: list[Alert] = []
    for step, metrics in iter_observations(run_or_records):
        alerts.extend(engine.observe(step, metrics, now=0.0))
    return alerts
