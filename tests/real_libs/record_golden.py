"""Re-record the golden console inputs in tests/data/golden/ from the real libraries.

    PYTHONPATH=. python tests/real_libs/record_golden.py [--only sb3_ppo,trl_grpo,...]

Each capture is the child's stdout and stderr merged, as `rldk-engine monitor` sees them.
CleanRL is recorded separately (its script is not vendored): see tests/data/golden/PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "data" / "golden"
PY = sys.executable


def capture(cmd: list[str], out: Path) -> None:
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)
    out.write_bytes(result.stdout)
    print(f"wrote {out} ({len(result.stdout)} bytes)")


def sb3(name: str, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        capture([PY, str(HERE / "sb3_cartpole.py"), "--log-dir", tmp, *extra],
                GOLDEN / f"{name}_stdout.txt")
        shutil.copy(Path(tmp) / "progress.csv", GOLDEN / f"{name}_progress.csv")


def trl_grpo() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        capture([PY, str(HERE / "trl_grpo_tiny.py"), "--out", tmp, "--steps", "8"],
                GOLDEN / "trl_grpo_stdout.txt")


RECORDERS = {
    "sb3_ppo_cartpole": lambda: sb3("sb3_ppo_cartpole", ["--steps", "6144", "--n-steps", "1024"]),
    "sb3_a2c_cartpole": lambda: sb3("sb3_a2c_cartpole", ["--algo", "a2c", "--steps", "2000"]),
    "sb3_ppo_pendulum": lambda: sb3("sb3_ppo_pendulum", ["--env", "Pendulum-v1", "--steps", "3072",
                                                         "--n-steps", "1024"]),
    "trl_grpo": trl_grpo,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated names: " + ",".join(RECORDERS))
    args = parser.parse_args()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, record in RECORDERS.items():
        if args.only is None or name in args.only.split(","):
            record()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
