"""Determinism: 4 replicas of determinism_sim.py side by side vs one replica alone.

The value is the whole `rldk-engine determinism` command as a user runs it (start-up,
4 replicas, comparison, environment audit, card and figure); the baseline is one
replica of the same simulator run directly, measured in the same run. Goal <= 1.3x.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import best_of, result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "demos" / "determinism_sim.py"
# The original kit's format: metrics to RLDK_METRICS_PATH at exit, a summary on stdout.
KIT_SIM = ROOT / "tests" / "contract" / "kit_determinism_sim.py"
REPLICAS = 4


def _sim_argv(mode: str, steps: int, sleep: float, sim: Path = SIM) -> list[str]:
    return [sys.executable, str(sim), "--mode", mode, "--steps", str(steps), "--sleep", str(sleep)]


def _one_replica(steps: int, sleep: float) -> None:
    subprocess.run(_sim_argv("deterministic", steps, sleep), check=True, stdout=subprocess.DEVNULL)


def _check(mode: str, steps: int, sleep: float, out: Path, expect: int, sim: Path = SIM) -> None:
    cmd = " ".join(_sim_argv(mode, steps, sleep, sim))
    proc = subprocess.run(
        [sys.executable, "-m", "rldk_engine.cli", "determinism", "--cmd", cmd,
         "--compare", "kl,policy_loss,reward_mean", "--replicas", str(REPLICAS),
         "--output-dir", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != expect:
        raise RuntimeError(f"determinism {mode}: exit {proc.returncode}, expected {expect}: "
                           f"{proc.stdout[-300:]} {proc.stderr[-300:]}")


def run(quick: bool = False) -> list[dict]:
    steps, sleep = (50, 0.02) if quick else (200, 0.02)
    repeat = 1 if quick else 2
    baseline = best_of(lambda: _one_replica(steps, sleep), repeat)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, expect in (("deterministic", 0), ("nondet", 1)):
            out = Path(tmp) / mode
            ours = best_of(lambda out=out, mode=mode, expect=expect: _check(mode, steps, sleep, out, expect), repeat)
            rows.append(result(
                f"determinism {REPLICAS} replicas, sim --mode {mode} --steps {steps} --sleep {sleep}",
                ours, "s", baseline, "one replica alone", "<= 1.3x", ours <= 1.3 * baseline,
            ))
        out = Path(tmp) / "kit"
        ours = best_of(lambda: _check("nondet", steps, sleep, out, 1, KIT_SIM), repeat)
        rows.append(result(
            f"determinism {REPLICAS} replicas, original-format sim (RLDK_METRICS_PATH) "
            f"--mode nondet --steps {steps}", ours, "s", baseline, "one replica alone",
            "<= 1.3x", ours <= 1.3 * baseline,
        ))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
