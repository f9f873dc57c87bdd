"""Watch a metrics stream a trainer writes, and stop a process rldk did not start.

`rldk monitor --stream FILE --rules rules.yaml --pid PID --alerts FILE --report FILE`
(the original kit's command). The stream is followed as it grows (or read once, or
stdin); each line is a long-format event (`{"step": 3, "name": "kl", "value": 0.11}`) or
any metrics row rldk reads (flat JSON, Python dicts, verl lines...). Every metric value goes
to the rules engine (the original kit's rules, or rldk's own presets/rules files); alerts
are printed, appended to the alerts file as they happen, and summed up in the report.

On a stop rule with `--pid`: SIGINT, then SIGTERM, then SIGKILL after the grace periods,
to the process, and to its whole process group when it leads one (never to rldk's own
group: a trainer started with `&` from a script shares the script's group). The watch then
ends with exit code 3, also without `--pid` (scripts read 3 as "the guardrail said stop").
When the process ends on its own, the rest of the stream is read and the exit code is 0.

Hot path: standard library, orjson, PyYAML and rldk_engine.ingest / live rules only.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson

from rldk_engine.errors import InputError
from rldk_engine.ingest.metrics import canonical_name
from rldk_engine.ingest.parse import LineParser, number_from_value
from rldk_engine.ingest.tail import FileTail, check_regular, own_stdin
from rldk_engine.live.process import group_alive, proc_info, stop_plan
from rldk_engine.live.rules import Alert, json_number

EXIT_STOPPED = 3
DRAIN_QUIET = 0.5  # after the process is gone: stop reading once the stream is quiet this long
DRAIN_MAX = 5.0


class Engine(Protocol):
    def observe(self, step: int, metrics: dict[str, float], now: float | None = None) -> list[Alert]: ...


@dataclass
class AttachConfig:
    stream: str  # a path, or "-" for stdin
    engine: Engine
    rules_source: str
    pid: int | None = None
    once: bool = False
    first_signal: int = signal.SIGINT
    grace_int: float = 2.0  # seconds after the first signal before SIGTERM (time to save a checkpoint)
    grace_term: float = 5.0  # seconds after SIGTERM before SIGKILL
    alerts_path: Path | None = None
    report_path: Path | None = None
    quiet: bool = False
    echo: Callable[[str], None] | None = None


@dataclass
class AttachResult:
    exit_code: int
    outcome: str  # stopped | process_exited | stream_ended | interrupted
    stop_rule: str | None = None
    stop_step: int | None = None
    signals: list[str] = field(default_factory=list)
    process_gone: bool | None = None
    steps: int = 0
    events: int = 0
    first_step: int | None = None
    last_step: int | None = None
    alerts: list[Alert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- events


def events_of_line(text: str, parser: LineParser) -> tuple[int | None, dict[str, float]]:
    """(step, {name: value}) from one line: a long-format event keeps its own name; a
    metrics row gives its canonical metrics. (None, {}) for a line with no metric."""
    stripped = text.strip()
    if stripped.startswith("{") and '"name"' in stripped and '"value"' in stripped:
        try:
            row = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("name"), str) and "value" in row:
            value = number_from_value(row["value"])
            step = number_from_value(row.get("step"))
            if value is None:
                return None, {}
            if step is None or not math.isfinite(step):
                step = (parser.last_step + 1) if parser.last_step is not None else 0
            parser.last_step = int(step)
            return int(step), {row["name"]: value}
    record = parser.feed(text)
    if record is None:
        return None, {}
    return record.step, dict(record.metrics)


# ----------------------------------------------------------------------------- processes


def pid_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, its identity."""
    info = proc_info(pid)
    return info.start if info is not None else None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True while `pid` exists, is not a zombie (a parent may reap it late) and, when
    `start` is given, is still the process that started then (pids are recycled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = proc_info(pid)
    if info is None:
        return not os.path.isdir("/proc")  # no /proc: kill(0) is all we know
    return info.state != "Z" and (start is None or info.start == start)


def stop_target(pid: int) -> tuple[str, int]:
    """("group", pgid) when `pid` leads its own process group (and it is not ours),
    else ("pid", pid)."""
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return "pid", pid
    if pgid == pid and pgid != os.getpgid(0):
        return "group", pgid
    return "pid", pid


def escalate(pid: int, start: int | None, plan: list[tuple[int, float]], sent: list[str]) -> bool:
    """Send each signal of `plan` (process.stop_plan) to the process, or to its group when it
    leads one, until it is gone; a recycled pid is never signalled. True once gone."""
    kind, ident = stop_target(pid)

    def alive() -> bool:  # a group id is not reused while any member lives
        return group_alive(ident) if kind == "group" else pid_alive(pid, start)

    for sig, grace in plan:
        if not alive():
            return True
        try:
            (os.killpg if kind == "group" else os.kill)(ident, sig)
        except (ProcessLookupError, PermissionError):
            pass
        sent.append(signal.Signals(sig).name)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive():
                return True
            time.sleep(0.01)
    return not alive()


# ----------------------------------------------------------------------------- the watch


def _stdin_reader(q: queue.Queue) -> None:
    for raw in own_stdin():
        q.put(raw.decode("utf-8", "replace"))
    q.put(None)


class _Lines:
    """The stream's new lines: a followed file (FileTail), a file read once, or stdin.
    `get()` returns a list of lines (maybe empty), or None when the input ended."""

    def __init__(self, cfg: AttachConfig):
        self.cfg = cfg
        self.q: queue.Queue | None = None
        self.tail: FileTail | None = None
        if cfg.stream == "-":
            self.q = queue.Queue(maxsize=4096)
            threading.Thread(target=_stdin_reader, args=(self.q,), name="rldk-stdin", daemon=True).start()
        else:
            self.tail = FileTail(cfg.stream)

    def get(self) -> list[str] | None:
        if self.q is not None:
            try:
                line = self.q.get(timeout=0.05)
            except queue.Empty:
                return []
            return None if line is None else [line]
        assert self.tail is not None
        lines = [raw.decode("utf-8", "replace") for raw in self.tail.read_lines(1 << 20)]
        if lines:
            return lines
        if self.cfg.once:
            rest = bytes(self.tail.partial)  # a last line without its newline is complete
            self.tail.partial.clear()
            return [rest.decode("utf-8", "replace")] if rest.strip() else None
        time.sleep(0.05)
        return []

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()


class Watch:
    def __init__(self, cfg: AttachConfig):
        self.cfg = cfg
        self.parser = LineParser()
        self.res = AttachResult(exit_code=0, outcome="stream_ended")
        self.alerts_fh = None
        self._steps: set[int] = set()
        self._stopper: threading.Thread | None = None
        self._interrupted = False
        self.pid_start = pid_start(cfg.pid) if cfg.pid is not None else None
        if cfg.alerts_path is not None:
            try:
                cfg.alerts_path.parent.mkdir(parents=True, exist_ok=True)
                self.alerts_fh = open(cfg.alerts_path, "ab", buffering=0)
            except OSError as exc:
                self.problem(f"cannot write {cfg.alerts_path}: {exc.strerror or exc}")

    def say(self, message: str) -> None:
        if not self.cfg.quiet:
            (self.cfg.echo or (lambda m: print(m, file=sys.stderr, flush=True)))(f"rldk: {message}")

    def problem(self, message: str) -> None:
        self.res.errors.append(message)
        self.say(message)

    def handle(self, text: str) -> None:
        step, metrics = events_of_line(text, self.parser)
        if step is None or not metrics:
            return
        self.res.events += len(metrics)
        if step not in self._steps:
            self._steps.add(step)
            self.res.steps += 1
        self.res.first_step = step if self.res.first_step is None else min(self.res.first_step, step)
        self.res.last_step = step if self.res.last_step is None else max(self.res.last_step, step)
        for alert in self.cfg.engine.observe(step, metrics):
            self.on_alert(alert)

    def on_alert(self, alert: Alert) -> None:
        self.res.alerts.append(alert)
        row = alert.to_dict() | {"rule_id": alert.rule, "name": alert.metric}  # + the original's keys
        if self.alerts_fh is not None:
            try:
                self.alerts_fh.write(orjson.dumps(row) + b"\n")
            except OSError as exc:
                self.problem(f"cannot write {self.cfg.alerts_path}: {exc.strerror or exc}")
                self.alerts_fh = None
        if alert.event != "fire":
            self.say(f"[clear] {alert.message}")
            return
        stopping = alert.action == "stop" and self.res.stop_rule is None
        self.say(f"[{alert.severity}] {alert.rule} at step {alert.step}: {alert.message}"
                 + (" -> stopping" + (f" PID {self.cfg.pid}" if self.cfg.pid else " the watch")
                    if stopping else ""))
        if stopping:
            self.res.stop_rule, self.res.stop_step = alert.rule, alert.step
            if self.cfg.pid is not None:
                self._stopper = threading.Thread(
                    target=self._stop_process, name="rldk-attach-stopper", daemon=True)
                self._stopper.start()

    def _stop_process(self) -> None:
        assert self.cfg.pid is not None
        plan = stop_plan(self.cfg.first_signal, self.cfg.grace_int, self.cfg.grace_term)
        self.res.process_gone = escalate(self.cfg.pid, self.pid_start, plan, self.res.signals)

    def on_signal(self, signum, frame) -> None:
        self._interrupted = True

    def run(self) -> AttachResult:
        try:
            lines = _Lines(self.cfg)
            if self.cfg.stream != "-":
                check_regular(self.cfg.stream)
                if self.cfg.once and not Path(self.cfg.stream).is_file():
                    raise InputError(self.cfg.stream, "no such file")
        except (InputError, OSError) as exc:
            self.problem(str(exc) if isinstance(exc, InputError) else f"{self.cfg.stream}: {exc.strerror or exc}")
            self.res.exit_code = 2
            return self.finish()
        old = None
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        gone_at: float | None = None
        last_line = time.monotonic()
        next_check = 0.0
        try:
            while not self._interrupted:
                try:
                    batch = lines.get()
                except InputError as exc:  # a FIFO appeared at the path
                    self.problem(str(exc))
                    break
                if batch is None:
                    break  # stdin or --once ended
                if batch:
                    last_line = time.monotonic()
                    for line in batch:
                        self.handle(line)
                        if self.res.stop_rule is not None and self.cfg.pid is None:
                            break  # nothing to stop: the watch ends at the stop rule
                now = time.monotonic()
                if self.res.stop_rule is not None:
                    if self._stopper is None or not self._stopper.is_alive():
                        break
                    continue
                if self.cfg.pid is not None and now >= next_check:
                    next_check = now + 0.1
                    if gone_at is None and not pid_alive(self.cfg.pid, self.pid_start):
                        gone_at = now
                    if gone_at is not None and (now - last_line > DRAIN_QUIET or now - gone_at > DRAIN_MAX):
                        self.res.outcome = "process_exited"
                        break
        finally:
            lines.close()
            if old:
                for s, h in old.items():
                    signal.signal(s, h)
        if self.res.stop_rule is not None:
            self.res.exit_code, self.res.outcome = EXIT_STOPPED, "stopped"
        elif self._interrupted:
            self.res.outcome = "interrupted"
        return self.finish()

    def finish(self) -> AttachResult:
        if self.alerts_fh is not None:
            self.alerts_fh.close()
        if self.cfg.report_path is not None:
            try:
                self.cfg.report_path.parent.mkdir(parents=True, exist_ok=True)
                self.cfg.report_path.write_bytes(orjson.dumps(report(self.cfg, self.res), option=orjson.OPT_INDENT_2))
            except OSError as exc:
                self.problem(f"cannot write {self.cfg.report_path}: {exc.strerror or exc}")
        return self.res


def report(cfg: AttachConfig, res: AttachResult) -> dict[str, Any]:
    """The JSON report: steps, alerts, per-rule activations (the original's `rules` key) and
    the outcome."""
    from rldk_engine import __version__

    rules: dict[str, dict[str, Any]] = {}
    for a in res.alerts:
        if a.event != "fire":
            continue
        entry = rules.setdefault(a.rule, {"activations": 0, "first_activation": None, "last_activation": None})
        activation = {"step": a.step, "name": a.metric, "value": json_number(a.value), "message": a.message}
        entry["activations"] += 1
        entry["first_activation"] = entry["first_activation"] or activation
        entry["last_activation"] = activation
    return {
        "tool": "rldk", "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stream": cfg.stream, "rules_source": cfg.rules_source, "pid": cfg.pid,
        "steps": res.steps, "events": res.events, "first_step": res.first_step, "last_step": res.last_step,
        "rules": rules,
        "alerts": [a.to_dict() | {"rule_id": a.rule, "name": a.metric} for a in res.alerts],
        "outcome": {"result": res.outcome, "stop_rule": res.stop_rule, "stop_step": res.stop_step,
                    "signals_sent": list(res.signals), "process_gone": res.process_gone,
                    "exit_code": res.exit_code},
        "errors": list(res.errors),
    }


class NativeEngine:
    """rldk's RuleEngine fed with canonical names (a long-format `reward` is reward_mean)."""

    def __init__(self, rules: list[Any]):
        from rldk_engine.live.rules import RuleEngine

        self.inner = RuleEngine(rules)

    def observe(self, step: int, metrics: dict[str, float], now: float | None = None) -> list[Alert]:
        return self.inner.observe(step, {canonical_name(k): v for k, v in metrics.items()}, now)


def run_attach(cfg: AttachConfig) -> AttachResult:
    return Watch(cfg).run()
