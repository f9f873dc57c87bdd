"""The rule registry: one place for rule metadata; everything else derives from it."""

from __future__ import annotations

import subprocess
import sys

from rldk_engine import constants, rulebook
from rldk_engine.devtools import quality
from rldk_engine.forensics import analyze, doctor, health
from rldk_engine.forensics.detectors import DETECTORS, Detector, register

SPEC_RULE_IDS = {
    "kl_spike", "kl_controller_drift", "approx_kl_high", "advantage_bias", "entropy_collapse",
    "grad_norm_spike", "grad_imbalance", "non_finite", "reward_hacking", "reward_collapse",
    "clip_frac_high", "length_explosion", "length_collapse", "zero_std_groups",
    "value_divergence", "stall",
}


def test_registry_holds_exactly_the_spec_rule_ids():
    assert set(rulebook.RULES) == SPEC_RULE_IDS
    for rule_id, info in rulebook.RULES.items():
        assert info.id == rule_id
        assert info.title and info.meaning and info.fixes
        assert all(isinstance(f, str) and f for f in info.fixes)
        assert info.component is None or info.component in rulebook.COMPONENTS


def test_every_offline_rule_has_a_detector_and_no_detector_lacks_a_rule():
    offline = {r for r, info in rulebook.RULES.items() if not info.live_only}
    assert set(DETECTORS) == offline
    assert {r for r, info in rulebook.RULES.items() if info.live_only} == {"stall"}


def test_register_refuses_unknown_live_only_and_duplicate_ids():
    import pytest

    for rule in ("no_such_rule", "stall", "kl_spike"):
        with pytest.raises(ValueError):
            register(Detector(rule, lambda run: [], frozenset({"ppo"}), ()))


def test_lookups():
    assert rulebook.rule_info("kl_spike").title == "KL spike"
    assert rulebook.rule_info("nope") is None
    fixes = rulebook.fixes_for(["kl_spike", "approx_kl_high", "kl_spike"])
    assert fixes[0] == rulebook.RULES["kl_spike"].fixes[0]
    assert len(fixes) == len(set(fixes))
    assert "lower the learning rate" in fixes
    assert rulebook.fixes_for(["unknown"]) == [rulebook.UNKNOWN_FIX]


def test_consumers_derive_from_the_registry():
    assert set(quality.RULE_IDS) == SPEC_RULE_IDS - {"stall"}
    assert set(doctor.FIXES) == SPEC_RULE_IDS
    assert doctor.FIXES["kl_spike"] == "; ".join(rulebook.RULES["kl_spike"].fixes)
    assert health.STABILITY_RULES == {r for r, i in rulebook.RULES.items() if i.counts_for_stability}
    for component, rules in analyze.COMPONENT_RULES.items():
        assert rules == {r for r, i in rulebook.RULES.items()
                         if i.component == component or component in i.also_components}
    assert "reward_hacking" in analyze.COMPONENT_RULES["length"]


def test_constants():
    assert constants.SEVERITY_ORDER == ("info", "warning", "critical")
    assert [constants.SEVERITY_RANK[s] for s in constants.SEVERITY_ORDER] == [0, 1, 2]
    assert abs(constants.NOISE_SIGMA - 1.4826 / 2 ** 0.5) < 1e-12
    assert constants.worse("info", "critical") == "critical"
    assert constants.worse(None, "info") == "info"


def test_rulebook_and_constants_import_only_the_standard_library():
    code = ("import sys; import rldk_engine.rulebook, rldk_engine.constants; "
            "bad = [m for m in ('numpy', 'yaml', 'rich', 'typer', 'torch') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
