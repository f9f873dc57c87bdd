"""Tell the person wherever they are: critical alerts and the stop, through Apprise.

`--notify URL` (repeatable) takes the URLs Apprise users already know: `slack://...`,
`discord://...`, `tgram://...`, `mailto://...`, `ntfy://...`, `matrix://...`, `json://host/path`.

Guarantees (a notifier never costs the run anything):
* messages are queued and sent from one background daemon thread; `alert()` and `stop()`
  return at once, whatever the endpoint does;
* one message per rule episode: a rule's fire is sent once, again only after it cleared;
  at most MAX_MESSAGES per run in all;
* each send has a timeout; a failing or hanging endpoint is written to the run's
  monitor.log (and the `report` callback), never raised;
* `close(wait)` waits at most `wait` seconds for queued messages (the monitor calls it
  after the trainer is gone, so the stop itself is never delayed).

Apprise is imported lazily, only when a notifier is built (only with --notify).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SEND_TIMEOUT = 10.0  # seconds one message may take before we stop waiting for it
CLOSE_WAIT = 5.0  # seconds the monitor waits at exit for queued messages
MAX_MESSAGES = 50  # per run: a flapping rule never floods a phone
# `rldk-tui run --notify URL` hands its URLs to the headless monitor it starts through this
# variable (space-separated); the monitor removes it before starting the trainer.
NOTIFY_ENV = "RLDK_NOTIFY"

_STOP = object()


class NotifyError(ValueError):
    """A --notify URL Apprise does not understand; str() is one line."""


def redact(url: str) -> str:
    """`slack://TOKEN/...` -> `slack://…`: URLs carry secrets; logs name only the scheme
    and a host name (never user, password, path or a token in the host position)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if "." not in host and host != "localhost":
        host = ""  # slack://TokenA/..., tgram://bottoken/...: the "host" is a secret
    if host and parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}…" if parts.scheme else "<URL without scheme>"


def build_apprise(urls: Sequence[str]) -> Any:
    """An Apprise object holding every URL; NotifyError names the first URL it refused."""
    try:
        import apprise
    except ImportError as exc:
        raise NotifyError("--notify needs the optional 'notify' extra (pip install 'rldk[notify]')") from exc
    ap = apprise.Apprise()
    for url in urls:
        if not ap.add(url):
            raise NotifyError(f"--notify: Apprise does not understand the URL {redact(url)} "
                              "(see https://github.com/caronc/apprise/wiki for URL forms)")
    return ap


def evidence_text(alert: Mapping[str, Any]) -> str:
    metric, value, threshold = alert.get("metric"), alert.get("value"), alert.get("threshold")
    text = f"{metric}={value:.4g}" if isinstance(value, (int, float)) else f"{metric}={value}"
    if isinstance(threshold, (int, float)):
        text += f" (threshold {threshold:.4g})"
    return text


def alert_message(run: str, alert: Mapping[str, Any]) -> tuple[str, str]:
    title = f"rldk: [{alert.get('severity')}] {alert.get('rule')} at step {alert.get('step')} in {run}"
    body = "\n".join([
        f"run: {run}",
        f"rule: {alert.get('rule')} ({alert.get('severity')})",
        f"step: {alert.get('step')}",
        f"evidence: {evidence_text(alert)}",
        f"message: {alert.get('message', '')}",
    ])
    return title, body


def stop_message(run: str, alert: Mapping[str, Any] | None, reason: str, step: int | None,
                 plan: Mapping[str, Any] | None) -> tuple[str, str]:
    from rldk_engine.resume import plan_text

    rule = alert.get("rule") if alert else None
    title = (f"rldk: {run} stopped by {rule} at step {step}" if rule else
             f"rldk: {run} stopped ({reason}) at step {step}")
    lines = [f"run: {run}", f"stopped: {reason}", f"rule: {rule or '-'}", f"step: {step}"]
    if alert:
        lines.append(f"evidence: {evidence_text(alert)}")
        lines.append(f"message: {alert.get('message', '')}")
    if plan:
        lines.append(plan_text(plan))
    return title, "\n".join(lines)


class Notifier:
    """Queue messages for the URLs; send them from a background thread.

    run: the run's name as people know it (run directory or command).
    log_path: a file the notifier appends its problems to (the run's monitor.log).
    report: also told about problems (the monitor's stderr/status errors).
    apprise_obj: a ready Apprise object (tests, or a pre-validated one from the CLI).
    """

    def __init__(self, urls: Sequence[str], run: str, log_path: Path | None = None,
                 report: Callable[[str], None] | None = None, timeout: float = SEND_TIMEOUT,
                 apprise_obj: Any = None):
        self.urls = list(urls)
        self.run = run
        self.log_path = log_path
        self.report = report
        self.timeout = timeout
        self.apprise = apprise_obj if apprise_obj is not None else build_apprise(self.urls)
        self.sent = 0
        self.failed = 0
        self._queued = 0
        self._open_episodes: set[str] = set()
        self._stopped = False
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, name="rldk-notify", daemon=True)
        self._thread.start()

    # -- what callers use (never blocks)

    def alert(self, alert: Mapping[str, Any]) -> bool:
        """A fire or clear alert row; a critical fire is sent once per rule episode.
        True when a message was queued."""
        rule = str(alert.get("rule"))
        if alert.get("event", "fire") == "clear":
            with self._lock:
                self._open_episodes.discard(rule)
            return False
        if alert.get("severity") != "critical":
            return False
        with self._lock:
            if rule in self._open_episodes:
                return False
            self._open_episodes.add(rule)
        return self._put(lambda: alert_message(self.run, alert))

    def stop(self, reason: str, step: int | None, alert: Mapping[str, Any] | None = None,
             plan: Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None = None,
             after: threading.Event | None = None, hold: float = 2.0) -> bool:
        """The stop, once per run. `plan` may be a callable: it is evaluated on the
        notifier's thread (a checkpoint search never runs on the stop path). `after`: the
        message is built and sent once this event is set (the monitor sets it when the
        trainer's group is gone, so not even the GIL is taken from the escalation), or
        after `hold` seconds at most."""
        with self._lock:
            if self._stopped:
                return False
            self._stopped = True
            if alert is not None:
                self._open_episodes.add(str(alert.get("rule")))  # its fire is this message

        def build() -> tuple[str, str]:
            if after is not None:
                after.wait(hold)
            resolved = plan() if callable(plan) else plan
            return stop_message(self.run, alert, reason, step, resolved)

        return self._put(build, failure=True)

    def close(self, wait: float = CLOSE_WAIT) -> bool:
        """Let queued messages go out for at most `wait` seconds; True when all went."""
        self._q.put(_STOP)
        self._thread.join(max(0.0, wait))
        if self._thread.is_alive():
            self._problem(f"notify: gave up waiting for {self._q.qsize()} queued message(s) after {wait:g}s")
            return False
        return True

    # -- the background thread

    def _put(self, build: Callable[[], tuple[str, str]], failure: bool = False) -> bool:
        with self._lock:
            if self._queued >= MAX_MESSAGES:
                return False
            self._queued += 1
        self._q.put((build, failure))
        return True

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            build, failure = item
            try:
                title, body = build()
                self._send(title, body, failure)
            except Exception as exc:  # a notifier problem is never the run's problem
                self.failed += 1
                self._problem(f"notify: could not build or send a message ({exc.__class__.__name__}: {exc})")

    def _send(self, title: str, body: str, failure: bool) -> None:
        import apprise

        started = time.monotonic()
        problems: list[str] = []

        def log_callback(entry: Any, plugin: Any = None) -> None:
            level = getattr(entry, "level", None)
            if isinstance(level, int) and level >= 30:  # warnings and errors
                problems.append(str(getattr(entry, "message", entry)))

        kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.WARNING
        try:
            ok = self.apprise.notify(body=body, title=title, notify_type=kind,
                                     timeout=self.timeout, log_callback=log_callback)
        except TypeError:  # an Apprise without timeout/log_callback
            ok = self.apprise.notify(body=body, title=title, notify_type=kind)
        if ok:
            self.sent += 1
            return
        self.failed += 1
        took = time.monotonic() - started
        detail = "; ".join(dict.fromkeys(problems))[:300] or "no detail from Apprise"
        targets = ", ".join(redact(u) for u in self.urls)
        self._problem(f"notify: sending to {targets} failed after {took:.1f}s ({detail})")

    def _problem(self, message: str) -> None:
        if self.log_path is not None:
            try:  # one O_APPEND write per line: never torn by the monitor's own writes
                with open(self.log_path, "ab", buffering=0) as fh:
                    fh.write(f"rldk {message}\n".encode("utf-8", "replace"))
            except OSError:
                pass
        if self.report is not None:
            try:
                self.report(message)
            except Exception:
                pass
