"""Notifications never cost the stop anything (issue 18).

Three arms, each N monitor runs in this process of a trainer that prints a deciding line
(the 5th consecutive kl > 0.35) and records when it gets the monitor's SIGINT:
* baseline: no notifier;
* notifier: --notify json:// to a local webhook that answers;
* dead: --notify json:// to a listening socket that never answers.
Figures: p99 stop latency (deciding line -> SIGINT received) with a notifier vs without
(difference <= 5 ms), and p99 time until the trainer's group is gone (the escalation saw it
gone) with a dead endpoint vs without (difference <= 5 ms). Arms are interleaved run by run;
ratios are against the baseline arm of the same run.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import result  # noqa: E402

CHILD = """
import json, os, signal, sys, time
stamp, got = sys.argv[1], sys.argv[2]
def on_int(signum, frame):
    with open(got, "w") as fh:
        fh.write(repr(time.time()))
    os._exit(130)  # gone at once: the figure is the monitor's part, not interpreter shut-down
signal.signal(signal.SIGINT, on_int)
for s in range(4):
    print(json.dumps({"step": s, "kl": 0.9}), flush=True)
time.sleep(0.05)
with open(stamp, "w") as fh:
    fh.write(repr(time.time()))
print(json.dumps({"step": 4, "kl": 0.9}), flush=True)
time.sleep(60)
"""


class _Webhook:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]


def _one(notify: list[str], tmp: str, tag: str) -> tuple[float, float]:
    """One monitor run: (deciding line -> SIGINT received, deciding line -> group gone), s."""
    from rldk_engine.live.monitor import Monitor, MonitorConfig
    from rldk_engine.live.rules import preset_rules

    class TimedMonitor(Monitor):
        gone_at = 0.0

        def stop_trainer(self) -> None:  # returns once the whole group is gone
            super().stop_trainer()
            self.gone_at = time.time()

    stamp, got = os.path.join(tmp, f"{tag}.stamp"), os.path.join(tmp, f"{tag}.got")
    cfg = MonitorConfig(rules=preset_rules("ppo"), run_dir=Path(tmp, tag), quiet=True, passthrough=False,
                        cmd=[sys.executable, "-c", CHILD, stamp, got], notify=list(notify), notify_wait=0.2)
    monitor = TimedMonitor(cfg)
    res = monitor.run()
    if res.exit_code != 3 or not monitor.gone_at:
        raise RuntimeError(f"{tag}: exit {res.exit_code}")
    decided = float(Path(stamp).read_text())
    return float(Path(got).read_text()) - decided, monitor.gone_at - decided


def run(quick: bool = False) -> list[dict]:
    runs = 5 if quick else 20
    webhook = _Webhook()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    try:
        arms = {"base": [], "notify": [webhook.url], "dead": [f"json://127.0.0.1:{dead.getsockname()[1]}/hook"]}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(runs):  # interleaved: load drift on a busy machine hits every arm alike
                for name, urls in arms.items():
                    times[name].append(_one(urls, tmp, f"{name}{i}"))
        base_stop = [t[0] for t in times["base"]]
        base_gone = [t[1] for t in times["base"]]
        live_stop = [t[0] for t in times["notify"]]
        dead_gone = [t[1] for t in times["dead"]]
    finally:
        webhook.close()
        dead.close()
    b_stop, n_stop = _p99(base_stop) * 1000, _p99(live_stop) * 1000
    b_gone, d_gone = _p99(base_gone) * 1000, _p99(dead_gone) * 1000
    return [
        result(f"stop latency with a notifier, p99 of {runs}", n_stop, "ms", b_stop, "no notifier",
               "p99 difference <= 5 ms", n_stop - b_stop <= 5.0),
        result(f"deciding line -> group gone, never-answering notifier, p99 of {runs}", d_gone, "ms",
               b_gone, "no notifier", "p99 difference <= 5 ms", d_gone - b_gone <= 5.0),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']:<70} {row['value']:>8.2f} {row['unit']} vs {row['baseline_name']} "
              f"{row['baseline']:.2f} (ratio {row['ratio']:.3f}) goal {row['goal']}: "
              f"{'ok' if row['ok'] else 'MISSED'}")
