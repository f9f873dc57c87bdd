"""Notifications (rldk_engine.live.notify) against a local HTTP server with a json:// URL."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("apprise")

from rldk_engine.live.notify import Notifier, NotifyError, build_apprise, redact  # noqa: E402


class _Receiver:
    """A JSON webhook on 127.0.0.1 that records every POST body."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.close()


@pytest.fixture
def dead_endpoint():
    """A listening socket that never answers: connect succeeds, the reply never comes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


KL_ALERT = {"time": 1.0, "step": 24, "rule": "kl_spike", "metric": "kl", "value": 0.41,
            "threshold": 0.35, "severity": "critical", "action": "stop",
            "message": "KL to the reference above 0.35 for 5 consecutive steps", "event": "fire"}
PLAN = {"last_healthy_step": 19, "first_bad_step": 20, "checkpoint": "/out/checkpoint-15",
        "rules": ["kl_spike"], "fixes": ["lower the learning rate"], "scan_command": "rldk-engine scan run.jsonl"}


def test_stop_message_arrives_once_with_run_rule_step_evidence_and_plan(receiver, tmp_path):
    n = Notifier([f"json://127.0.0.1:{receiver.port}/hook"], run="runs/ppo-7", log_path=tmp_path / "monitor.log")
    assert n.alert(KL_ALERT | {"action": "warn", "rule": "grad_norm_spike"})  # a critical alert
    assert n.stop("guardrail", 24, KL_ALERT, plan=lambda: PLAN)
    assert not n.stop("guardrail", 25, KL_ALERT, plan=PLAN)  # the stop is sent once
    assert not n.alert(KL_ALERT)  # its rule's episode is the stop message
    assert n.close(wait=10)
    assert len(receiver.bodies) == 2, receiver.bodies
    stop = receiver.bodies[1]
    text = stop["title"] + "\n" + stop["message"]
    for needle in ("runs/ppo-7", "kl_spike", "step: 24", "kl=0.41", "threshold 0.35",
                   "last healthy step: 19", "/out/checkpoint-15", "try: lower the learning rate"):
        assert needle in text, needle
    assert stop["type"] == "failure"
    assert not (tmp_path / "monitor.log").exists()  # nothing went wrong


def test_one_message_per_rule_episode(receiver):
    n = Notifier([f"json://127.0.0.1:{receiver.port}/hook"], run="r")
    assert n.alert(KL_ALERT)
    assert not n.alert(KL_ALERT | {"step": 30})  # same episode
    assert not n.alert(KL_ALERT | {"severity": "warning", "rule": "approx_kl_high"})  # not critical
    n.alert(KL_ALERT | {"event": "clear", "step": 40})
    assert n.alert(KL_ALERT | {"step": 50})  # a new episode
    assert n.close(wait=10)
    assert [b["title"].split(" at step ")[1].split()[0] for b in receiver.bodies] == ["24", "50"]


def test_dead_endpoint_never_delays_the_caller(dead_endpoint, tmp_path):
    log = tmp_path / "monitor.log"
    n = Notifier([f"json://127.0.0.1:{dead_endpoint}/hook"], run="r", log_path=log, timeout=1.0)
    t0 = time.perf_counter()
    n.alert(KL_ALERT | {"rule": "x"})
    n.stop("guardrail", 24, KL_ALERT, plan=PLAN)
    assert time.perf_counter() - t0 < 0.05
    t0 = time.perf_counter()
    assert not n.close(wait=0.3)  # still hanging: we give up and say so
    assert time.perf_counter() - t0 < 1.0
    assert "gave up waiting" in log.read_text()


def test_failing_endpoint_goes_to_the_log(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused
    problems: list[str] = []
    n = Notifier([f"json://127.0.0.1:{port}/hook"], run="r", log_path=tmp_path / "monitor.log",
                 report=problems.append, timeout=2.0)
    n.stop("guardrail", 3, KL_ALERT)
    assert n.close(wait=10)
    assert n.failed == 1 and n.sent == 0
    text = (tmp_path / "monitor.log").read_text()
    assert "notify: sending to json://127.0.0.1" in text and "failed" in text
    assert problems and "hook" not in problems[0]  # the URL path (secrets live there) is not logged


def test_bad_url_is_one_line_error():
    with pytest.raises(NotifyError, match="does not understand the URL bogus://"):
        build_apprise(["bogus://token/abc"])


def test_redact_keeps_scheme_and_host_only():
    assert redact("slack://T000SECRET/B000/XXXXSECRET") == "slack://…"
    assert redact("json://hooks.example.com:8080/p/SECRET") == "json://hooks.example.com:8080…"
    assert "SECRET" not in redact("json://user:SECRET@host:8080/p")


def test_apprise_is_not_imported_by_the_monitor_modules():
    import subprocess
    import sys

    code = ("import sys, rldk_engine.live.monitor, rldk_engine.live.notify, rldk_engine.resume; "
            "print('apprise' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tui_run_hands_notify_urls_to_the_monitor(monkeypatch):
    from rldk_tui import app as tui_app
    from rldk_tui import cli as tui_cli

    monkeypatch.delenv("RLDK_NOTIFY", raising=False)
    assert tui_cli.main(["run", "--notify", "bogus://x", "--", "true"]) == 2
    launched = {}
    monkeypatch.setattr(tui_app.RldkApp, "run", lambda self: launched.setdefault("env", os.environ.get("RLDK_NOTIFY")))
    assert tui_cli.main(["run", "--notify", "json://127.0.0.1:9/a", "--notify", "ntfy://topic", "--", "true"]) == 0
    assert launched["env"] == "json://127.0.0.1:9/a ntfy://topic"


def test_monitor_takes_urls_from_the_environment_and_hides_them_from_the_trainer(tmp_path, receiver):
    import subprocess
    import sys

    from helpers import MONITOR, REPO

    code = "import os; print('env:', os.environ.get('RLDK_NOTIFY')); print('{\"step\": 1, \"kl\": 0.1}')"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "RLDK_NOTIFY": f"json://127.0.0.1:{receiver.port}/h"}
    proc = subprocess.run([*MONITOR, "--run-dir", str(tmp_path / "run"),
                           "--", sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "env: None" in (tmp_path / "run" / "monitor.log").read_text()


def test_stop_message_waits_for_the_group_to_be_gone(receiver):
    gone = threading.Event()
    n = Notifier([f"json://127.0.0.1:{receiver.port}/hook"], run="r")
    n.stop("guardrail", 24, KL_ALERT, plan=PLAN, after=gone, hold=30)
    time.sleep(0.3)
    assert receiver.bodies == []  # held: the escalation has the machine to itself
    gone.set()
    assert n.close(wait=10)
    assert len(receiver.bodies) == 1


def test_callback_refuses_a_bad_url_before_training():
    pytest.importorskip("transformers")
    from rldk_engine.integrations.hf import RLDKCallback

    with pytest.raises(NotifyError, match="bogus://"):
        RLDKCallback(notify=["bogus://nope"])
