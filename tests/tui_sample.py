"""Deterministic run directories in the monitor's format, for tests, snapshots and bench.

They stand in for what `rldk-engine monitor` writes (docs/CONTRACTS.md "Run directory"),
so `rldk-tui watch` can be shown and tested without a trainer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import orjson

T0 = 1_700_000_000.0  # fixed epoch: snapshots never depend on the wall clock


def sample_row(step: int, runaway_from: int | None = None) -> dict:
    """PPO-shaped curves; from `runaway_from` on, KL runs away."""
    kl = 0.05 + 0.02 * math.sin(step / 5.0)
    if runaway_from is not None and step >= runaway_from:
        kl = 0.1 * (step - runaway_from + 2)
    return {
        "step": step,
        "time": T0 + step * 0.5,
        "kl": round(kl, 6),
        "reward_mean": round(1.0 - math.exp(-step / 20.0), 6),
        "entropy": round(2.0 * math.exp(-step / 80.0), 6),
        "grad_norm": round(1.0 + 0.3 * math.cos(step / 3.0), 6),
        "clip_frac": round(0.1 + 0.02 * math.sin(step / 7.0), 6),
        "response_len_mean": round(120 + 10 * math.sin(step / 9.0), 3),
    }


def sample_status(run_dir: Path, state: str, steps: int, **extra) -> dict:
    status = {
        # This process stands in for the monitor: a pid that is alive while the test runs.
        "monitor_pid": os.getpid(), "child_pid": 4243, "pgid": 4243,
        "cmd": ["python", "train.py", "--lr", "3e-4"], "run_dir": str(run_dir),
        "preset": "ppo", "started": T0, "updated": T0 + steps * 0.5, "state": state,
        "stop_reason": None, "stop_rule": None, "stop_step": None, "exit_code": None,
        "auto_stop": True, "steps": steps, "last_step": steps - 1 if steps else None,
        "lines": steps * 3, "errors": [],
    }
    status.update(extra)
    return status


def write_sample_run_dir(run_dir: Path, steps: int = 60, runaway_from: int = 50,
                         stopped: bool = True) -> Path:
    """A finished PPO run that the kl guardrail stopped (or one still 'running')."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [sample_row(step, runaway_from) for step in range(steps)]
    has_nan = steps > 31
    if has_nan:
        rows[30]["grad_norm"] = "NaN"  # non-finite values are data, never a crash
    with open(run_dir / "run.jsonl", "wb") as out:
        out.writelines(orjson.dumps(row) + b"\n" for row in rows)
    alerts = []
    over = [r["step"] for r in rows if isinstance(r["kl"], float) and r["kl"] > 0.35]
    for step in over[:5]:
        row = rows[step]
        alerts.append({
            "time": row["time"], "step": step, "rule": "kl_spike", "metric": "kl",
            "value": row["kl"], "threshold": 0.35,
            "severity": "critical" if step == over[min(4, len(over) - 1)] else "warning",
            "action": "stop" if step == over[min(4, len(over) - 1)] else "warn",
            "message": f"kl {row['kl']:.3f} > 0.35", "event": "fire"})
    if has_nan:
        alerts.insert(0, {"time": rows[30]["time"], "step": 30, "rule": "non_finite",
                          "metric": "grad_norm", "value": "NaN", "threshold": None,
                          "severity": "warning", "action": "warn",
                          "message": "grad_norm is NaN", "event": "fire"})
        alerts.insert(1, {"time": rows[31]["time"], "step": 31, "rule": "non_finite",
                          "metric": "grad_norm", "value": rows[31]["grad_norm"], "threshold": None,
                          "severity": "warning", "action": "warn", "message": "recovered",
                          "event": "clear"})
    with open(run_dir / "alerts.jsonl", "wb") as out:
        out.writelines(orjson.dumps(alert) + b"\n" for alert in alerts)
    with open(run_dir / "monitor.log", "w") as out:
        for row in rows:
            out.write(f"step:{row['step']} - kl:{row['kl']} - reward:{row['reward_mean']}\n")
    last = over[min(4, len(over) - 1)] if over else steps - 1
    if stopped and over:
        status = sample_status(run_dir, "stopped", steps, stop_reason="guardrail",
                               stop_rule="kl_spike", stop_step=last, exit_code=3)
    else:
        status = sample_status(run_dir, "running", steps)
    (run_dir / "status.json").write_bytes(orjson.dumps(status))
    return run_dir
