"""`make monitor-demo`: the PPO guardrail stops a runaway torch PPO run by itself.

Runs `rldk-engine monitor --preset ppo --run-dir artifacts -- python demos/ppo_trainer.py
--runaway --output-dir artifacts/checkpoints --save-every 5`, draws
artifacts/monitor_kl_trace.png and checks the outcome: exit 0 iff the monitor returned 3 and
the stop came on the 5th consecutive step with kl > 0.35. The trainer saves every 5 steps
and on the monitor's SIGINT; the resume plan (artifacts/rldk_reports/resume_plan.txt) names
the newest checkpoint before KL ran away.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THRESHOLD = 0.35
CONSECUTIVE = 5


def expected_stop_step(run_jsonl: Path) -> int | None:
    """The step where kl > THRESHOLD for the CONSECUTIVE-th time in a row."""
    streak = 0
    for line in run_jsonl.read_text().splitlines():
        row = json.loads(line)
        kl = row.get("kl")
        if not isinstance(kl, (int, float)):
            continue
        streak = streak + 1 if kl > THRESHOLD else 0
        if streak == CONSECUTIVE:
            return int(row["step"])
    return None


def main() -> int:
    art = REPO / "artifacts"
    art.mkdir(exist_ok=True)
    for name in ("run.jsonl", "alerts.jsonl", "monitor.log", "status.json", "control.jsonl"):
        (art / name).unlink(missing_ok=True)
    shutil.rmtree(art / "checkpoints", ignore_errors=True)
    shutil.rmtree(art / "rldk_reports", ignore_errors=True)
    cmd = [sys.executable, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo",
           "--run-dir", str(art), "--",
           sys.executable, str(REPO / "demos" / "ppo_trainer.py"), "--runaway",
           "--steps", "200", "--seed", "0", "--sleep", "0.05",
           "--output-dir", str(art / "checkpoints"), "--save-every", "5"]
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=REPO)
    from rldk_engine.plots.monitor import plot_kl_trace

    png = plot_kl_trace(art, art / "monitor_kl_trace.png", THRESHOLD)
    status = json.loads((art / "status.json").read_text())
    expected = expected_stop_step(art / "run.jsonl")
    ok = (rc == 3 and status.get("stop_rule") == "kl_spike" and expected is not None
          and status.get("stop_step") == expected)
    last = status.get("last_step")
    print(f"\nmonitor exit code {rc}; stop at step {status.get('stop_step')} "
          f"(5th consecutive kl > {THRESHOLD} at step {expected}); last step logged {last}; "
          f"plot {png.relative_to(REPO)}")
    resume = status.get("resume") or {}
    print(f"resume plan: last healthy step {resume.get('last_healthy_step')}, "
          f"resume from {resume.get('checkpoint')}")
    print("monitor-demo: OK, the guardrail stopped the runaway run" if ok else
          "monitor-demo: FAILED, the guardrail did not stop the run as designed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
