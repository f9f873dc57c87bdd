"""A real trainer under the monitor: wall time of a Stable-Baselines3 PPO CartPole run
(verbose=1, its ASCII tables on stdout) run plainly and under `rldk-engine monitor`.

Baseline measured in the same run: the same command without the monitor, output discarded.
The runs alternate (plain, monitored, plain, monitored) and the fastest of each is kept, so
load from other processes on the machine hurts both sides alike. Goal: within 3% of the
plain run on a ~60 s run (issue 14); --quick uses a ~10 s run, where the monitor's fixed
start-up cost weighs more. Wall time on a loaded machine is noisy, so the CPU time of the
whole process tree (trainer + monitor, from RUSAGE_CHILDREN) is reported beside it: the
monitor's own cost, which load from other processes barely moves. A third figure replays
the console the plain run printed through `rldk-engine monitor -` and counts that CPU time
against the plain run's: the monitor's work (start-up, parsing, rules, run-dir writes) alone.
A fourth watches a child that sleeps and prints nothing: the CPU the monitor spends per
second of waiting (polling, status writes), which a long run pays for its whole length.
Skipped (reported, not failed) without stable-baselines3.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "real_libs" / "sb3_cartpole.py"
PY = sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], stdin=None, stdout=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole waited-for process tree)."""
    cpu, start = _cpu_children(), time.perf_counter()
    subprocess.run(cmd, stdin=stdin, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                   check=True, env=_env(), cwd=ROOT)
    return time.perf_counter() - start, _cpu_children() - cpu


def _rows(run_dir: Path) -> int:
    path = run_dir / "run.jsonl"
    return sum(1 for _ in path.open()) if path.exists() else 0


def run(quick: bool = False) -> list[dict]:
    if importlib.util.find_spec("stable_baselines3") is None:
        return [result("SB3 PPO under the monitor: skipped (stable-baselines3 not installed)",
                       None, "", None, "", "within 3%", True)]
    steps = "8192" if quick else "65536"
    train = [PY, str(SCRIPT), "--steps", steps]
    plain, monitored, rows = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        console = Path(tmp) / "console.txt"
        for attempt in range(2):
            with console.open("wb") as out:
                plain.append(_timed(train, stdout=out))
            run_dir = Path(tmp) / f"run{attempt}"
            monitored.append(_timed([PY, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo",
                                     "--quiet", "--run-dir", str(run_dir), "--", *train]))
            rows = _rows(run_dir)
        with console.open("rb") as recorded:
            _, replay_cpu = _timed([PY, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo", "--quiet",
                                    "--run-dir", str(Path(tmp) / "replay"), "-"], stdin=recorded)
        idle_s = 5.0 if quick else 20.0
        idle_wall, idle_cpu = _timed([PY, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo", "--quiet",
                                      "--run-dir", str(Path(tmp) / "idle"), "--", PY, "-c",
                                      f"import time; time.sleep({idle_s})"])
        _, startup_cpu = _timed([PY, "-m", "rldk_engine.cli", "monitor", "--preset", "ppo", "--quiet",
                                 "--run-dir", str(Path(tmp) / "startup"), "--", PY, "-c", "pass"])
    idle_rate = max(0.0, idle_cpu - startup_cpu) / idle_wall
    label = f"SB3 PPO CartPole {steps} steps under the monitor ({rows} rows parsed)"
    base, watched = min(t[0] for t in plain), min(t[0] for t in monitored)
    base_cpu, watched_cpu = min(t[1] for t in plain), min(t[1] for t in monitored)
    return [
        result(f"{label}: wall time", watched, "s", base, "same run without the monitor",
               "ratio <= 1.03", watched / base <= 1.03),
        result(f"{label}: CPU time, trainer + monitor", watched_cpu, "s", base_cpu,
               "same run without the monitor", "ratio <= 1.03", watched_cpu / base_cpu <= 1.03),
        result(f"{label}: the monitor's own CPU (its console replayed through `monitor -`)",
               replay_cpu, "s", base_cpu, "CPU of the run without the monitor", "ratio <= 1.03",
               (base_cpu + replay_cpu) / base_cpu <= 1.03, ratio=(base_cpu + replay_cpu) / base_cpu),
        result(f"monitor CPU while a child prints nothing for {idle_s:.0f} s (start-up excluded)",
               idle_rate, "CPU-s/s", None, "", "<= 0.03 (3% of one core)", idle_rate <= 0.03),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
