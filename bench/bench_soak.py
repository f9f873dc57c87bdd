"""Soak (issue 9, item 5): 10,000,000 metric lines through the headless monitor
(`rldk-engine monitor -`, fed on stdin by a fast generator process) with flat memory.

Peak RSS (VmHWM from /proc/<pid>/status) is read when the monitor has handled the first
checkpoint (1M lines) and again at the end (10M), while the generator holds the pipe
open so the monitor is still alive to be measured. Goal: the end peak within 1.2x of the
1M peak. Every 10,000 steps grad_norm spikes for 3 steps, so alerts fire and clear all
along (unbounded alert lists would show). Quick mode: 200k / 1M lines.

Throughput baseline: the bare LineParser on the same lines in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]

from _util import result  # noqa: E402

GENERATOR = r"""
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
buf = []
for s in range(n):
    g = 250.0 if s % 10000 in (5000, 5001, 5002) else 1.0 + (s % 7) * 0.01
    buf.append(b'{"step": %d, "objective/kl": 0.05%d, "reward_mean": 0.%d, "entropy": 1.2, '
               b'"grad_norm": %.2f, "clip_frac": 0.1, "policy_loss": -0.01}\n' % (s, s % 10, s % 97, g))
    if len(buf) == 4096:
        out.write(b"".join(buf)); buf.clear()
out.write(b"".join(buf)); out.flush()
sys.stdin.read()  # hold the pipe open until the bench has measured the monitor
"""


def line(step: int) -> str:
    return ('{"step": %d, "objective/kl": 0.05, "reward_mean": 0.5, "entropy": 1.2, '
            '"grad_norm": 1.0, "clip_frac": 0.1, "policy_loss": -0.01}' % step)


def parser_lines_per_s(n: int = 200_000) -> float:
    from rldk_engine.ingest.parse import LineParser

    lines = [line(s) for s in range(n)]
    parser = LineParser()
    start = time.perf_counter()
    for text in lines:
        parser.feed(text)
    return n / (time.perf_counter() - start)


def proc_status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for row in fh:
            if row.startswith(field + ":"):
                return int(row.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def lines_done(status_path: Path) -> int:
    try:
        return json.loads(status_path.read_text())["lines"]
    except (OSError, ValueError, KeyError):
        return 0


def soak(checkpoint: int, total: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        gen = subprocess.Popen([sys.executable, "-c", GENERATOR, str(total)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        mon = subprocess.Popen([sys.executable, "-m", "rldk_engine.cli", "monitor", "--quiet",
                                "--preset", "ppo", "--stall-seconds", "0", "--run-dir", str(run_dir), "-"],
                               stdin=gen.stdout, stdout=subprocess.DEVNULL, cwd=REPO)
        gen.stdout.close()  # the monitor holds the only reading end
        start = time.perf_counter()
        peak_at_checkpoint = rss_now = None
        t_checkpoint = None
        samples = []
        while True:
            done = lines_done(run_dir / "status.json")
            rss_now = proc_status_kb(mon.pid, "VmRSS")
            samples.append((done, rss_now))
            if peak_at_checkpoint is None and done >= checkpoint:
                peak_at_checkpoint = proc_status_kb(mon.pid, "VmHWM")
                t_checkpoint = time.perf_counter() - start
            if done >= total:
                break
            if mon.poll() is not None:
                raise RuntimeError(f"monitor exited early with {mon.returncode}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        peak_at_end = proc_status_kb(mon.pid, "VmHWM")
        gen.stdin.close()
        gen.wait(timeout=60)
        rc = mon.wait(timeout=60)
        status = json.loads((run_dir / "status.json").read_text())
        n_alerts = sum(1 for _ in open(run_dir / "alerts.jsonl"))
        n_rows = sum(1 for _ in open(run_dir / "run.jsonl"))
    return {"rc": rc, "peak_checkpoint_kb": peak_at_checkpoint, "peak_end_kb": peak_at_end,
            "elapsed": elapsed, "t_checkpoint": t_checkpoint, "steps": status["steps"],
            "rows": n_rows, "alerts": n_alerts, "rss_samples": len(samples)}


def run(quick: bool = False) -> list[dict]:
    checkpoint, total = (200_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    base_rate = parser_lines_per_s()
    r = soak(checkpoint, total)
    complete = r["rc"] == 0 and r["steps"] == total and r["rows"] == total
    rate = total / r["elapsed"]
    p1, p2 = r["peak_checkpoint_kb"] / 1024, r["peak_end_kb"] / 1024
    cp, tt = f"{checkpoint / 1e6:g}M", f"{total / 1e6:g}M"
    return [
        result(f"monitor soak: peak RSS at {cp} lines", round(p1, 1), "MB", None, "", "informational", True),
        result(f"monitor soak: peak RSS at {tt} lines ({r['alerts']} alert events)", round(p2, 1), "MB",
               round(p1, 1), f"peak RSS at {cp}", "<= 1.2x", p2 <= 1.2 * p1 and complete,
               ratio=round(p2 / p1, 3)),
        result(f"monitor soak: throughput over {tt} lines (stdin, ppo preset)", round(rate), "lines/s",
               round(base_rate), "bare LineParser.feed", "informational", complete,
               ratio=round(rate / base_rate, 3)),
    ]


if __name__ == "__main__":
    rows = run(quick="--quick" in sys.argv)
    for row in rows:
        print(row)
    sys.exit(0 if all(row["ok"] for row in rows) else 1)
