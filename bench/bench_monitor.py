"""Live monitor: CLI start-up, start-up to first parsed line, parse+rules throughput, and
deciding-line-to-group-gone latency.

Baselines measured in the same run: `python -c pass` (start-up), a bare orjson.loads loop
(throughput). Latency has an absolute goal (p99 <= 100 ms over 20 runs, child obeys SIGINT).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import best_of, result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _lines(n: int) -> list[str]:
    return [json.dumps({"step": s, "objective/kl": 0.05 + 0.001 * (s % 7), "ppo/policy/entropy": 2.0,
                        "ppo/policy/clipfrac": 0.1, "ppo/policy/approxkl": 0.01, "grad_norm": 1.0 + (s % 5) * 0.1,
                        "env/reward_mean": 0.5, "ppo/loss/policy": -0.01, "ppo/loss/value": 0.2,
                        "tokens/responses_len_mean": 40.0})
            for s in range(n)]


def bench_throughput(n: int) -> list[dict]:
    import orjson

    from rldk_engine.ingest.parse import LineParser
    from rldk_engine.live.rules import RuleEngine, preset_rules

    lines = _lines(n)

    def bare():
        for line in lines:
            orjson.loads(line)

    def full():
        parser, engine = LineParser(), RuleEngine(preset_rules("ppo"))
        for line in lines:
            rec = parser.feed(line)
            if rec is not None:
                engine.observe(rec.step, rec.metrics, 0.0)

    t_bare, t_full = best_of(bare), best_of(full)
    rate, base = n / t_full, n / t_bare
    return [result("monitor parse+rules (ppo preset)", rate, "lines/s", base, "bare orjson.loads loop",
                   ">= 100,000 lines/s", rate >= 100_000, ratio=rate / base)]


def bench_startup() -> list[dict]:
    t_pass = best_of(lambda: subprocess.run([PY, "-c", "pass"], check=True), 5)
    t_help = best_of(lambda: subprocess.run([PY, "-m", "rldk_engine.cli", "--help"], check=True,
                                            stdout=subprocess.DEVNULL, cwd=ROOT), 5)
    with tempfile.TemporaryDirectory() as tmp:
        def first_line():
            subprocess.run([PY, "-m", "rldk_engine.cli", "monitor", "--quiet", "--run-dir", tmp, "-"],
                           input=b'{"step": 0, "kl": 0.1}\n', check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        t_first = best_of(first_line, 5)
    return [
        result("rldk-engine --help", t_help, "s", t_pass, "python -c pass", "<= 0.3 s", t_help <= 0.3),
        result("monitor start-up to first parsed line (stdin, to exit)", t_first, "s", t_pass,
               "python -c pass", "<= 0.3 s", t_first <= 0.3),
    ]


CHILD = """
import json, os, signal, sys, time
stamp = sys.argv[1]
for s in range(4):
    print(json.dumps({"step": s, "kl": 0.9}), flush=True)
time.sleep(0.05)
with open(stamp, "w") as fh:
    fh.write(repr(time.time()))
print(json.dumps({"step": 4, "kl": 0.9}), flush=True)
time.sleep(60)
"""


def bench_latency(runs: int) -> list[dict]:
    lat = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            stamp = os.path.join(tmp, f"stamp{i}")
            mon = subprocess.Popen([PY, "-m", "rldk_engine.cli", "monitor", "--quiet", "--run-dir",
                                    os.path.join(tmp, f"run{i}"), "--", PY, "-c", CHILD, stamp],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            status_path = Path(tmp, f"run{i}", "status.json")
            mon.wait(timeout=30)
            status = json.loads(status_path.read_text())
            pgid = status["pgid"]
            # the monitor exits only after the group is gone; its status "updated" is that moment
            gone = status["updated"]
            try:
                os.killpg(pgid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            written = float(Path(stamp).read_text())
            if mon.returncode != 3 or alive:
                raise RuntimeError(f"run {i}: exit {mon.returncode}, group alive {alive}")
            lat.append(gone - written)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return [result(f"deciding line -> group gone, p99 of {runs}", p99 * 1000, "ms", None, "absolute goal",
                   "<= 100 ms", p99 <= 0.1)]


def run(quick: bool = False) -> list[dict]:
    return (bench_startup() + bench_throughput(20_000 if quick else 200_000)
            + bench_latency(5 if quick else 20))


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']:<58} {row['value']:>12.4g} {row['unit']:<8} goal {row['goal']:<20} "
              f"{'ok' if row['ok'] else 'MISSED'} (baseline {row['baseline_name']}: {row['baseline']})")
