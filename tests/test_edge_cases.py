"""Hostile-but-plausible inputs found by a bug hunt: each test pins one fixed bug."""

from __future__ import annotations

import json
import math

import numpy as np

from rldk_engine.determinism import compare_metric, series_from_records
from rldk_engine.forensics.analyze import analyze_run
from rldk_engine.ingest.parse import Record
from rldk_engine.ingest.run import Run
from rldk_engine.live.rules import Guard, RuleEngine, parse_rules_text


def _events(alerts):
    return [(a.event, a.step) for a in alerts]


# ----------------------------------------------------------------------------- rules


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


# ----------------------------------------------------------------------------- analyze


def _length_run(lengths):
    rows = [{"step": i, "kl": 0.05, "reward_mean": 1.0 + 0.001 * i, "response_len_mean": v}
            for i, v in enumerate(lengths)]
    return Run.from_records(rows)


def test_analyze_survives_a_response_length_that_starts_at_zero():
    # zero early length (nothing generated yet / placeholder) used to overflow math.exp
    result = analyze_run(_length_run([0.0] * 40 + [100.0] * 160))
    length = result["components"]["length"]
    assert length["available"]
    assert length["evidence"]["max_drift_ratio"] is None  # no finite ratio from 0
    assert 0.0 <= length["health"] <= 1.0
    json.dumps(result, allow_nan=False)


def test_analyze_survives_an_all_zero_response_length():
    result = analyze_run(_length_run([0.0] * 200))
    assert 0.0 <= result["components"]["length"]["health"] <= 1.0


# ----------------------------------------------------------------------------- determinism


def test_odd_replica_diverging_to_inf_is_named():
    base = [Record(i, {"kl": 0.01 * i}) for i in range(10)]
    odd = base[:5] + [Record(i, {"kl": math.inf}) for i in range(5, 10)]
    series = [series_from_records(r) for r in (base, base, base, odd)]
    comparison = compare_metric("kl", series, [0, 1, 2, 3], atol=1e-6, rtol=0.0)
    assert comparison.n_mismatches == 5
    assert comparison.deviating_replicas == {3}


def test_odd_replica_diverging_to_nan_is_named():
    base = [Record(i, {"kl": 0.01 * i}) for i in range(10)]
    odd = base[:5] + [Record(i, {"kl": np.nan}) for i in range(5, 10)]
    series = [series_from_records(r) for r in (base, base, odd)]
    comparison = compare_metric("kl", series, [0, 1, 2], atol=1e-6, rtol=0.0)
    assert comparison.deviating_replicas == {2}


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


def test_control_auto_stop_written_as_a_string_false_turns_it_off(tmp_path):
    from rldk_engine.live.monitor import Monitor, MonitorConfig

    monitor = Monitor(MonitorConfig(rules=[], run_dir=tmp_path, stdin=True, quiet=True,
                                    passthrough=False))
    control = tmp_path / "control.jsonl"
    with open(control, "a") as fh:
        fh.write('{"action": "auto_stop", "enabled": "false"}\n')
    monitor.poll_control()
    assert monitor.auto_stop is False
    with open(control, "a") as fh:
        fh.write('{"action": "auto_stop", "enabled": true}\n')
    monitor.poll_control()
    assert monitor.auto_stop is True


def test_determinism_does_not_wait_for_a_background_process_holding_stdout(tmp_path):
    # `sleep 60 &` keeps the replica's stdout pipe open after the replica exits: reading
    # used to block until that process ended (forever for a daemon)
    import time

    from rldk_engine.determinism import check_command

    script = tmp_path / "train.sh"
    script.write_text('#!/bin/sh\nsleep 60 &\necho \'{"step": 1, "kl": 0.1}\'\n'
                      'echo \'{"step": 2, "kl": 0.2}\'\n')
    script.chmod(0o755)
    started = time.monotonic()
    result = check_command(str(script), replicas=2, out_dir=tmp_path / "out", make_figure=False)
    assert time.monotonic() - started < 20
    assert result.exit_code == 0
    assert result.card["replica_steps"] == [2, 2]
