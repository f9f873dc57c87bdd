"""`doctor`: the forensic scan plus the environment audit, each finding with its fix.

Writes `<out>/ppo_scan.json` (the SPEC scan report, each anomaly given a `fix`) and
`<out>/determinism_card.json` (the environment audit and its findings, in the one card
schema of `rldk_engine.determinism.card`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCAN_NAME = "ppo_scan.json"

# What an RL engineer does next when a rule fires.
FIXES: dict[str, str] = {
    "kl_spike": "lower the learning rate or PPO epochs, raise the KL coefficient (or target), "
                "and check the batch that produced the spike",
    "kl_controller_drift": "the KL controller stopped adapting: check kl_coef bounds/horizon "
                           "and that the adaptive controller is enabled and updated every step",
    "approx_kl_high": "reduce the learning rate, the PPO epochs or the minibatch count per update",
    "advantage_bias": "whiten advantages per batch (and check GAE/value bootstrapping at "
                      "episode ends): their mean should stay near zero",
    "entropy_collapse": "add or raise the entropy bonus, lower the learning rate, "
                        "or raise the sampling temperature",
    "grad_norm_spike": "clip gradients (max_grad_norm ~1.0), lower the learning rate "
                       "and inspect the batch at the spike",
    "grad_imbalance": "rescale the value loss coefficient (vf_coef) or use separate "
                      "optimisers/clipping for policy and value heads",
    "non_finite": "enable anomaly detection, lower the learning rate, use bf16 or a "
                  "loss scaler, and guard divisions/logs in the reward and loss",
    "reward_hacking": "inspect samples: the policy games the reward model; raise the KL "
                      "penalty, add length penalties or fix the reward model",
    "reward_collapse": "roll back to the last good checkpoint; lower the learning rate "
                       "and check the reward function and data pipeline",
    "clip_frac_high": "updates are too large: lower the learning rate or PPO epochs, "
                      "or use a smaller clip range with smaller steps",
    "length_explosion": "responses run into the length cap: add a length penalty or "
                        "overlong-reward shaping, or raise max_new_tokens",
    "length_collapse": "responses became trivially short: check the reward for "
                       "short-answer bias and EOS handling",
    "zero_std_groups": "most groups have identical rewards: make prompts harder/easier, "
                       "raise the group size or use a denser reward",
    "value_divergence": "lower the value learning rate or vf_coef, clip the value loss, "
                        "and normalise returns",
    "stall": "the trainer stopped logging: check for hangs, OOM kills or a dead dataloader",
}
DEFAULT_FIX = "inspect the metric around the flagged window"


@dataclass
class DoctorResult:
    report: dict
    card: dict
    scan_path: Path
    card_path: Path


def with_fixes(report: dict) -> dict:
    """The scan report with a `fix` on every anomaly (a new dict, input untouched)."""
    runs = []
    for run in report.get("runs", []):
        anomalies = [{**a, "fix": FIXES.get(a.get("rule", ""), DEFAULT_FIX)}
                     for a in run.get("anomalies", [])]
        runs.append({**run, "anomalies": anomalies})
    return {**report, "runs": runs}


def run_doctor(paths: list[str], out_dir: Path = Path("rldk_reports"), preset: str = "auto",
               jobs: int = 1) -> DoctorResult:
    """Scan `paths` and audit the environment; write both JSON files into out_dir.
    Raises ValueError when nothing is readable (the CLI turns it into exit 2)."""
    from rldk_engine.forensics.scan import scan_paths

    report = with_fixes(scan_paths(list(paths), preset, jobs))
    if not report["runs"]:
        first = report["errors"][0] if report.get("errors") else f"{paths[0]}: no logs found"
        raise ValueError(f"nothing readable ({first})")
    from rldk_engine.determinism.card import CARD_NAME, build_card
    from rldk_engine.forensics.envaudit import audit_environment

    card = build_card(env=audit_environment())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_path, card_path = out_dir / SCAN_NAME, out_dir / CARD_NAME
    scan_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return DoctorResult(report, card, scan_path, card_path)
