"""Shared by the test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Real third-party logs, read in place from ../shared (never copied into the repo).
REAL_LOGS = REPO.parent / "shared" / "fixtures" / "real"
# The real runs that are healthy: no warning, no stop, health >= 0.9.
HEALTHY_REAL = (
    "verl_ppo_qwen05b_gsm8k.log",
    "verl_ppo_qwen05b_gsm8k_resp256.log",
    "verl_ppo_gemma2b_gsm8k.log",
    "ppo_pytorch_tb1.tfevents",
    "sb3_cartpole_progress.csv",
)


async def wait_for(pilot, condition, timeout: float = 15.0) -> None:
    """Let a Textual app run until `condition()` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")
