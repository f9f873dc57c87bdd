"""Helpers for the real-library tests: run a script under `rldk-engine monitor`, read run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_script(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the training scripts in tests/real_libs directly (no monitor)."""
    return subprocess.run([sys.executable, str(HERE / script), *args], env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def monitor(run_dir: Path, preset: str, script: str, *args: str,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """`rldk-engine monitor --preset P --run-dir D -- python tests/real_libs/SCRIPT ARGS`."""
    cmd = [sys.executable, "-m", "rldk_engine.cli", "monitor", "--preset", preset,
           "--run-dir", str(run_dir), "--", sys.executable, str(HERE / script), *args]
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rows_by_step(run_dir: Path) -> dict[int, dict]:
    """run.jsonl merged per step (the monitor may split one step over several rows)."""
    merged: dict[int, dict] = {}
    for row in read_jsonl(run_dir / "run.jsonl"):
        step = int(row["step"])
        merged.setdefault(step, {}).update({k: v for k, v in row.items() if k not in ("step", "time")})
    return merged


def explain(result: subprocess.CompletedProcess, run_dir: Path | None = None) -> str:
    """What to print when an assertion fails: the tail of the output and the run dir."""
    parts = [f"exit {result.returncode}", "stdout tail:", result.stdout[-3000:],
             "stderr tail:", result.stderr[-3000:]]
    if run_dir is not None:
        for name in ("status.json", "alerts.jsonl"):
            path = run_dir / name
            if path.exists():
                parts += [f"{name}:", path.read_text()[-2000:]]
    return "\n".join(parts)
