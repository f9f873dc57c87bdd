"""Start-up: `rldk-engine --help`, `rldk --help` and `rldk-engine scan` of a one-line file.

Each value is the fastest wall time of a fresh interpreter running the command (as the
console script does: `python -m rldk_engine.cli`), the baseline is `python -c pass`
measured in the same run, so the ratio shows what rldk adds to bare Python start-up.
Goals (issue 13, idle machine): --help <= 0.25 s, scan of a one-line file <= 0.5 s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import best_of, result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [sys.executable, "-m", "rldk_engine.cli"]
COMPAT = [sys.executable, "-m", "rldk_engine.cli.compat"]


def _timed(argv: list[str], repeat: int) -> float:
    def once() -> None:
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[2:])}: exit {done.returncode}: {done.stderr[-300:]}")

    once()  # warm the OS file cache: the figure is the steady state, not a cold disk
    return best_of(once, repeat)


def run(quick: bool = False) -> list[dict]:
    repeat = 3 if quick else 7
    baseline = _timed([sys.executable, "-c", "pass"], repeat)
    rows = []
    for name, argv, goal in (
        ("rldk-engine --help", [*ENGINE, "--help"], 0.25),
        ("rldk --help", [*COMPAT, "--help"], 0.25),
    ):
        value = _timed(argv, repeat)
        rows.append(result(name, value, "s", baseline, "python -c pass", f"<= {goal} s",
                           value <= goal))
    with tempfile.TemporaryDirectory() as tmp:
        one_line = Path(tmp) / "one.jsonl"
        one_line.write_text('{"step": 1, "kl": 0.05, "reward": 0.5}\n')
        value = _timed([*ENGINE, "scan", str(one_line)], repeat)
        rows.append(result("rldk-engine scan (one-line file)", value, "s", baseline,
                           "python -c pass", "<= 0.5 s", value <= 0.5))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
