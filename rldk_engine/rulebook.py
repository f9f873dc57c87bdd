"""The rule registry: every SPEC rule id, what it means and what to try, in one place.

Forensics (detectors, health, analyze, doctor, detector quality), the live guardrails,
the resume plan and the TUI all read rule metadata from here. Standard library only: the
monitor's hot path imports it.

Each detector in `forensics.detectors` registers against one of these ids; a test checks
that every rule that is not live-only has a detector.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# analyze.py's components: the parts of an RL pipeline a finding points at
COMPONENTS = ("kl", "gradients", "advantages", "reward", "length")


@dataclass(frozen=True)
class RuleInfo:
    id: str
    title: str
    meaning: str  # what the finding usually means
    fixes: tuple[str, ...]  # what to try, most likely first
    component: str | None  # analyze component (None: no component card)
    counts_for_stability: bool  # part of the "stability" health score
    live_only: bool = False  # no offline detector (e.g. stall needs wall-clock time)
    also_components: tuple[str, ...] = ()  # further components the finding concerns


_RULES = (
    RuleInfo(
        "kl_spike", "KL spike",
        "the policy moved far from the reference in a few updates: a step too large, "
        "a bad batch, or a KL penalty too weak to hold it",
        ("lower the learning rate or the PPO epochs per batch",
         "raise the KL coefficient (or the KL target)",
         "inspect the batch that produced the spike"),
        "kl", True),
    RuleInfo(
        "kl_controller_drift", "KL controller stuck",
        "the adaptive KL controller stopped moving its coefficient while KL stayed far "
        "above the level it was holding",
        ("check the adaptive KL controller is enabled and updated every step",
         "check the kl_coef bounds and the controller horizon",
         "raise the KL target's coefficient range or use a fixed, larger KL coefficient"),
        "kl", True),
    RuleInfo(
        "approx_kl_high", "PPO updates too large",
        "each PPO update moves the policy much more than the usual 0.01-0.03 nats: "
        "the trust region is not holding",
        ("lower the learning rate",
         "use fewer PPO epochs or fewer minibatches per update",
         "set a target_kl for early stopping of the update epochs"),
        "kl", True),
    RuleInfo(
        "advantage_bias", "biased advantages",
        "advantages stay away from zero mean: the value baseline is off or advantages are "
        "not normalised",
        ("re-enable advantage normalisation (whiten per batch)",
         "check GAE and value bootstrapping at episode ends (truncation vs termination)"),
        "advantages", False),
    RuleInfo(
        "entropy_collapse", "entropy collapse",
        "the policy became (nearly) deterministic: exploration is gone, learning stalls "
        "or locks in a bad mode",
        ("add or raise the entropy bonus",
         "lower the learning rate",
         "raise the sampling temperature"),
        None, True),
    RuleInfo(
        "grad_norm_spike", "gradient norm spike",
        "gradients blew up: an outlier batch, a loss term out of scale, or numerical trouble",
        ("clip gradients (max_grad_norm around 1.0)",
         "lower the learning rate",
         "inspect the batch at the spike"),
        "gradients", True),
    RuleInfo(
        "grad_imbalance", "policy/value gradient imbalance",
        "one head's gradients dwarf the other's: a shared optimiser is dominated by the "
        "value loss (or the policy loss)",
        ("rescale the value-loss coefficient (vf_coef)",
         "use separate optimisers or gradient clipping for the policy and value heads"),
        "gradients", True),
    RuleInfo(
        "non_finite", "NaN/inf values",
        "a metric became NaN or infinite: the run diverged or overflowed, and every "
        "update after it may be garbage",
        ("roll back to the last good checkpoint",
         "lower the learning rate",
         "use bf16 or a loss scaler; guard divisions and logs in the reward and loss",
         "enable anomaly detection to find the first bad operation"),
        None, True),
    RuleInfo(
        "reward_hacking", "reward hacking",
        "reward rises together with response length and KL: the policy is exploiting the "
        "reward function rather than getting better",
        ("check the reward function for hacking: read samples from the flagged steps",
         "raise the KL coefficient (or the KL target)",
         "add a length penalty or fix the reward model"),
        "reward", False, also_components=("length",)),
    RuleInfo(
        "reward_collapse", "reward collapse",
        "reward fell by a large part of the range the run had reached and stayed down: "
        "the policy un-learned",
        ("roll back to the last good checkpoint",
         "lower the learning rate",
         "check the reward function and the data pipeline"),
        "reward", False),
    RuleInfo(
        "clip_frac_high", "clip fraction high",
        "most samples hit the PPO clip: updates are too large for the clip range",
        ("lower the learning rate or the PPO epochs",
         "use a smaller clip range together with smaller steps"),
        None, True),
    RuleInfo(
        "length_explosion", "length explosion",
        "responses grow into the length cap without a matching reward gain (or the reward "
        "is the length): truncated answers, wasted tokens",
        ("add a length penalty or overlong-reward shaping",
         "check the reward function for hacking: does it pay for length?",
         "raise max_new_tokens only if long answers are wanted"),
        "length", False),
    RuleInfo(
        "length_collapse", "length collapse",
        "responses became trivially short: a short-answer bias in the reward or broken EOS "
        "handling",
        ("check the reward for short-answer bias",
         "check EOS and padding handling in generation"),
        "length", False),
    RuleInfo(
        "zero_std_groups", "no learning signal",
        "most prompt groups got identical rewards (or gradients are zero) while the reward "
        "stays flat: the advantages are zero and nothing is learned",
        ("make the prompts harder or easier so rewards differ within a group",
         "raise the group size (num_generations) or use a denser reward",
         "check the reward function returns varied values"),
        "reward", False),
    RuleInfo(
        "value_divergence", "value function divergence",
        "the critic stopped fitting the returns: value loss grows far beyond its trend or "
        "explained variance turns negative",
        ("lower the value learning rate or vf_coef",
         "clip the value loss and normalise returns",
         "re-enable advantage normalisation"),
        "gradients", True),
    RuleInfo(
        "stall", "trainer stalled",
        "the trainer stopped logging: a hang, an OOM kill or a dead data loader",
        ("check the trainer process (hang, OOM kill, dead data loader)",),
        None, False, live_only=True),
)

RULES: dict[str, RuleInfo] = {info.id: info for info in _RULES}
UNKNOWN_FIX = "inspect the metric around the flagged window"


def rule_info(rule_id: str) -> RuleInfo | None:
    """The registry entry of a rule id (None for an id the registry does not know)."""
    return RULES.get(rule_id)


def fixes_for(rule_ids: Iterable[str]) -> list[str]:
    """What to try for these rules: their fixes in rule order, each once."""
    out: dict[str, None] = {}
    for rule_id in rule_ids:
        info = RULES.get(rule_id)
        for fix in info.fixes if info else (UNKNOWN_FIX,):
            out.setdefault(fix, None)
    return list(out)


def offline_rule_ids() -> tuple[str, ...]:
    """Rule ids a stored log can show (every id but the live-only ones), registry order."""
    return tuple(rule_id for rule_id, info in RULES.items() if not info.live_only)


def stability_rule_ids() -> frozenset[str]:
    return frozenset(rule_id for rule_id, info in RULES.items() if info.counts_for_stability)


def component_rules(component: str) -> frozenset[str]:
    return frozenset(rule_id for rule_id, info in RULES.items()
                     if info.component == component or component in info.also_components)
