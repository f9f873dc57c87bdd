"""Rule engine: persistence edges, M-of-N, NaN handling, baselines, YAML validation, replay."""

from __future__ import annotations

import math

import pytest

from rldk_engine.live.rules import (
    Condition,
    Guard,
    Rule,
    RuleEngine,
    RulesError,
    parse_rules_text,
    preset_rules,
    replay,
    with_stall_seconds,
)

SPEC_RULE_IDS = {
    "kl_spike", "kl_controller_drift", "approx_kl_high", "advantage_bias", "entropy_collapse",
    "grad_norm_spike", "grad_imbalance", "non_finite", "reward_hacking", "reward_collapse",
    "clip_frac_high", "length_explosion", "length_collapse", "zero_std_groups",
    "value_divergence", "stall",
}


def kl_rule(**kw) -> Rule:
    return Rule("kl_spike", ("kl",), Condition("threshold", ">", 0.35), severity="critical",
                action="stop", **kw)


def feed(engine: RuleEngine, values, metric="kl"):
    out = []
    for step, v in enumerate(values):
        out += engine.observe(step, {metric: v}, now=0.0)
    return out


def test_four_above_then_one_below_does_not_fire():
    alerts = feed(RuleEngine([kl_rule(for_steps=5)]), [0.5, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5])
    assert alerts == []


def test_fifth_consecutive_fires_on_that_step_once():
    alerts = feed(RuleEngine([kl_rule(for_steps=5)]), [0.1] + [0.5] * 9)
    assert [(a.event, a.step) for a in alerts] == [("fire", 5)]
    assert alerts[0].threshold == 0.35 and alerts[0].action == "stop"


def test_episode_clears_then_can_fire_again():
    values = [0.5] * 5 + [0.1] * 5 + [0.5] * 5
    alerts = feed(RuleEngine([kl_rule(for_steps=5)]), values)
    assert [(a.event, a.step) for a in alerts] == [("fire", 4), ("clear", 9), ("fire", 14)]


def test_m_of_n():
    rule = kl_rule(m_of_n=(3, 5))
    # hits at steps 0, 2, 4 -> third hit inside the last 5 at step 4
    alerts = feed(RuleEngine([rule]), [0.5, 0.1, 0.5, 0.1, 0.5, 0.1])
    assert [(a.event, a.step) for a in alerts] == [("fire", 4)]
    # hits spread wider than the window never fire
    assert feed(RuleEngine([rule]), [0.5, 0.1, 0.1, 0.5, 0.1, 0.1, 0.5, 0.1, 0.1]) == []


def test_nan_neither_extends_nor_breaks_a_threshold_streak():
    alerts = feed(RuleEngine([kl_rule(for_steps=3)]), [0.5, math.nan, 0.5, math.inf, 0.5])
    assert [(a.event, a.step) for a in alerts] == [("fire", 4)]


def test_non_finite_rule_and_missing_metric():
    rule = Rule("non_finite", ("kl", "policy_loss"), Condition("non_finite"), for_steps=2,
                severity="critical")
    engine = RuleEngine([rule])
    alerts = []
    rows = [{"kl": 0.1}, {"policy_loss": math.nan}, {"kl": 0.1}, {"policy_loss": math.inf}]
    for step, row in enumerate(rows):
        alerts += engine.observe(step, row, now=0.0)
    # policy_loss is non-finite at both of its observations (1 and 3): 2 consecutive for it
    assert [(a.event, a.step, a.metric) for a in alerts] == [("fire", 3, "policy_loss")]
    assert alerts[0].to_dict()["value"] == "Infinity"


def test_robust_baseline_ratio_with_warmup():
    cond = Condition("baseline", ">", 10.0, score="ratio", window=20, warmup=5)
    rule = Rule("grad_norm_spike", ("grad_norm",), cond, for_steps=2)
    # huge values during warm-up never fire; an isolated spike never fires; a sustained one does
    values = [900, 800, 2, 2, 2, 2, 2.1, 1.9, 2, 60, 2, 2, 2, 50, 55, 60]
    alerts = feed(RuleEngine([rule]), values, metric="grad_norm")
    assert [(a.event, a.step) for a in alerts] == [("fire", 14)]


def test_initial_baseline_entropy_collapse():
    cond = Condition("baseline", "<", 0.1, score="ratio", baseline="initial", warmup=3)
    rule = Rule("entropy_collapse", ("entropy",), cond, for_steps=2)
    values = [2.0, 2.1, 1.9] + [1.5 - 0.2 * i for i in range(7)] + [0.05, 0.04, 0.03]
    alerts = feed(RuleEngine([rule]), values, metric="entropy")
    assert [(a.event, a.step) for a in alerts] == [("fire", 11)]


def test_stall_fires_once_and_clears():
    rule = with_stall_seconds([], 5.0)[0]
    engine = RuleEngine([rule], clock=lambda: 100.0)
    assert engine.tick(103.0) == []
    fired = engine.tick(106.0)
    assert [(a.rule, a.event) for a in fired] == [("stall", "fire")]
    assert engine.tick(200.0) == []  # once per episode
    cleared = engine.observe(1, {"kl": 0.1}, now=201.0)
    assert [(a.rule, a.event) for a in cleared] == [("stall", "clear")]


def test_guard_api_maps_trainer_keys():
    guard = Guard(preset="ppo")
    results = [guard.observe(s, {"train/kl": 0.5, "env/reward_mean": "1.0"}) for s in range(6)]
    assert [r.should_stop for r in results] == [False] * 4 + [True, True]
    assert results[4].alerts[0].rule == "kl_spike" and results[4].alerts[0].metric == "kl"


def test_presets_use_spec_ids_and_kl_guardrail():
    for name in ("ppo", "grpo"):
        rules = preset_rules(name)
        assert {r.id for r in rules} <= SPEC_RULE_IDS
        kl = next(r for r in rules if r.id == "kl_spike")
        assert (kl.metrics, kl.condition.op, kl.condition.value, kl.for_steps, kl.action) == (
            ("kl",), ">", 0.35, 5, "stop")
    assert not any(r.id == "clip_frac_high" for r in preset_rules("grpo"))
    assert any(r.id == "zero_std_groups" and r.m_of_n for r in preset_rules("grpo"))


GOOD = """\
rules:
  - id: my_kl
    metric: kl
    condition: {kind: threshold, op: ">=", value: 0.2}
    m_of_n: [2, 3]
    severity: warning
    action: warn
  - id: nan
    metric: [kl, reward_mean]
    condition: {kind: non_finite}
"""


def test_parse_good_rules_file():
    rules = parse_rules_text(GOOD, "r.yaml")
    assert rules[0].m_of_n == (2, 3) and rules[0].condition.op == ">="
    assert rules[1].metrics == ("kl", "reward_mean")


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace('op: ">="', 'op: "=="'), "r.yaml:4:38: condition.op must be one of"),
    (GOOD.replace("severity: warning", "severity: loud"), "r.yaml:6:15: severity must be one of"),
    (GOOD.replace("m_of_n: [2, 3]", "m_of_n: [4, 3]"), "r.yaml:5:13: rule 'my_kl': m_of_n needs M <= N"),
    (GOOD.replace("metric: kl\n", "metrc: kl\n"), "r.yaml:3:5: rule: unknown key 'metrc'"),
    (GOOD.replace("value: 0.2", "value: __import__('os')"), "r.yaml:4:51: condition.value must be a number"),
    (GOOD.replace("id: nan", "id: my_kl"), "r.yaml:8:5: duplicate rule id 'my_kl' (first at line 2)"),
    ("rules:\n  - id: x\n    metric: [kl\n", "r.yaml:4:1: not valid YAML"),
    (GOOD + "    for: 0\n", "r.yaml:11:10: for must be an integer >= 1"),
])
def test_rules_validation_errors_name_file_line_and_column(text, expected):
    with pytest.raises(RulesError) as exc:
        parse_rules_text(text, "r.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)
    assert "\n" not in str(exc.value)


def test_presets_stay_quiet_on_healthy_real_logs(real_logs):
    from rldk_engine.ingest.readers import read_run

    healthy = ["verl_ppo_qwen05b_gsm8k.log", "verl_ppo_qwen05b_gsm8k_resp256.log",
               "verl_ppo_gemma2b_gsm8k.log", "ppo_pytorch_tb1.tfevents", "sb3_cartpole_progress.csv"]
    for name in healthy:
        run = read_run(real_logs / name)
        assert run.n_steps > 10
        for preset in ("ppo", "grpo"):
            loud = [a for a in replay(run, preset) if a.severity != "info"]
            assert loud == [], (name, preset, [a.message for a in loud])


def test_grpo_preset_flags_degenerate_length_cap(real_logs):
    from rldk_engine.ingest.readers import read_run

    run = read_run(real_logs / "trl_grpo_chaos_training_logs.json")
    alerts = replay(run, "grpo")
    assert [a.rule for a in alerts if a.event == "fire"] == ["length_explosion"]
    assert not any(a.action == "stop" for a in alerts)


# ----------------------------------------------------------------------------- repeated steps, long warm-ups, trainer keys


def _events(alerts):
    return [(a.event, a.step) for a in alerts]


def test_rolling_baseline_with_warmup_longer_than_window_still_fires():
    # warmup 10 > window 5: the history (maxlen = window) could never reach the warm-up
    # length, so the rule silently never scored anything
    rules = parse_rules_text("""
- id: spike
  metric: x
  condition: {kind: baseline, baseline: rolling, window: 5, warmup: 10, score: ratio, op: ">", value: 3}
""")
    engine = RuleEngine(rules, clock=lambda: 0.0)
    alerts = []
    for step in range(30):
        alerts += engine.observe(step, {"x": 1.0})
    alerts += engine.observe(30, {"x": 100.0})
    assert _events(alerts) == [("fire", 30)]


def test_same_step_printed_twice_counts_its_first_value_only():
    # the first line of step 1 is a miss; a second copy of step 1 (an unprefixed rank)
    # must not turn it into a hit, whether or not the rule has seen a hit before
    rules = parse_rules_text("""
- id: high
  metric: x
  condition: {kind: threshold, op: ">", value: 1}
  for: 2
""")
    engine = RuleEngine(rules, clock=lambda: 0.0)
    alerts = []
    alerts += engine.observe(1, {"x": 0.0})
    alerts += engine.observe(1, {"x": 5.0})
    alerts += engine.observe(2, {"x": 5.0})
    assert alerts == []  # only one hit step so far
    alerts += engine.observe(3, {"x": 5.0})
    assert _events(alerts) == [("fire", 3)]


def test_same_step_twice_does_not_enter_the_baseline_twice():
    rules = parse_rules_text("""
- id: spike
  metric: x
  condition: {kind: baseline, baseline: initial, warmup: 2, score: ratio, op: ">", value: 3}
""")
    engine = RuleEngine(rules, clock=lambda: 0.0)
    alerts = []
    for step, value in [(0, 1.0), (1, 1.0), (1, 100.0), (2, 1.0), (3, 1.0)]:
        alerts += engine.observe(step, {"x": value})
    # the second copy of step 1 is neither scored nor part of the baseline
    assert alerts == []
    alerts += engine.observe(4, {"x": 10.0})
    assert _events(alerts) == [("fire", 4)]


def test_rule_written_with_a_trainer_key_watches_the_canonical_metric():
    # the monitor and Guard hand the engine canonical names (train/kl -> kl): a rule
    # naming the trainer key used to be silently dead
    rules = parse_rules_text("""
- id: kl_high
  metric: [train/kl, kl]
  condition: {kind: threshold, op: ">", value: 0.3}
""")
    assert rules[0].metrics == ("kl",)
    guard = Guard(rules=rules)
    result = guard.observe(1, {"train/kl": 1.0})
    assert [(a.rule, a.metric) for a in result.alerts] == [("kl_high", "kl")]
