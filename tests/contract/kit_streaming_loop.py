"""A streaming trainer in the original kit's event format (our code, for acceptance tests).

Writes long-format events, one metric per line (`{"time", "step", "name", "value", "meta"}`,
the format of the original's `rldk.emit.EventWriter`), to `artifacts/run.jsonl`, flushed per
line, and mirrors them to stdout. KL climbs past 0.35 within ~20 steps, like the original's
`examples/minimal_streaming_loop.py`. SIGINT/SIGTERM end the loop cleanly (exit 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STOP = False


def _stop(signum, frame) -> None:
    global STOP
    STOP = True


def main() -> int:
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    steps = int(os.environ.get("KIT_LOOP_STEPS", "200"))
    sleep = float(os.environ.get("KIT_LOOP_SLEEP", "0.05"))
    path = Path("artifacts") / "run.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    print(f"streaming metrics from PID {os.getpid()} -> {path}", flush=True)
    with path.open("a", encoding="utf-8") as out:
        for step in range(1, steps + 1):
            if STOP:
                break
            values = {
                "kl": 0.05 + 0.02 * step + rng.uniform(-0.01, 0.01),
                "reward": 0.4 - 0.015 * step + rng.uniform(-0.02, 0.02),
                "grad_norm": 2.5 + 0.12 * step + rng.uniform(-0.2, 0.2),
            }
            for name, value in values.items():
                event = {"time": datetime.now(timezone.utc).isoformat(), "step": step,
                         "name": name, "value": value, "meta": {"source": "kit_streaming_loop"}}
                line = json.dumps(event)
                out.write(line + "\n")
                out.flush()
                print(line, flush=True)
            time.sleep(sleep)
    print(f"loop ended at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
