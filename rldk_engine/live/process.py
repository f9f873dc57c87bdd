"""The trainer's process tree: spawn it in a new session, know who belongs to it, stop all
of it, and never signal anyone else.

* `ProcessGroup.spawn(args)` starts the command as the leader of a new session (its pid is
  the group id), with a parent-death signal (Linux: the trainer gets SIGTERM if the
  supervisor dies, even by SIGKILL) and, on Linux, makes this process a child subreaper,
  so descendants that `setsid` out of the group and whose parent exits are re-parented to
  us instead of init and can still be found.
* Descendants are found by walking /proc (parent links from the trainer, plus orphans
  re-parented to us); each is remembered with its start time, so a recycled pid is never
  signalled ("never a wrong kill").
* `stop()` escalates a configurable first signal -> SIGTERM -> SIGKILL with grace periods
  over the group and every escaped descendant; `stop_leftovers()` ends what outlives the
  trainer; `alive()` is true while any of them runs (zombies do not count).
* `Watchdog` is a tiny separate process that holds a pipe from us: if we die without
  saying goodbye (SIGKILL, OOM killer), it stops the trainer's group and every descendant
  we told it about, and marks status.json "lost".

Without /proc (macOS, BSD) the walk finds nothing and the group signal alone is used.
Standard library only (the monitor's hot path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

KILL_WAIT = 2.0  # seconds to wait for the kernel after SIGKILL
POLL = 0.02  # a /proc walk costs ~5 ms: poll the group at 50 Hz while stopping
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc: Any = None
_registry_lock = threading.Lock()
_OWN_CHILDREN: set[int] = set()  # every leader/helper this process spawned through here
_ACTIVE_GROUPS: set["ProcessGroup"] = set()


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            import ctypes  # only where prctl exists, and only when a trainer is spawned

            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_child_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux >= 3.4); False elsewhere."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _death_signal_preexec(sig: int, parent: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec: async-signal-safe calls only
        _prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl: act as if it fired now
            os.kill(os.getpid(), sig)
    return preexec


# ----------------------------------------------------------------------------- /proc


class ProcInfo(NamedTuple):
    """One process as /proc/PID/stat shows it."""

    ppid: int
    pgid: int
    state: str  # "R", "S", ... "Z" for a zombie
    start: int  # start time in clock ticks since boot: (pid, start) names one process


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()
    try:
        return ProcInfo(int(rest[1]), int(rest[2]), rest[0].decode(), int(rest[19]))
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, ProcInfo]:
    """Every process in /proc; {} where there is no /proc."""
    table: dict[int, ProcInfo] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for name in entries:
        if name.isdigit():
            info = proc_info(int(name))
            if info is not None:
                table[int(name)] = info
    return table


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in the group (zombies cannot run; in a
    container without a reaping init they may linger forever)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    return any(info.pgid == pgid and info.state != "Z" for info in proc_table().values())


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exit_code_of(returncode: int | None) -> int:
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


def stop_plan(first_signal: int = signal.SIGINT, grace: float = 0.5, term_grace: float = 0.5,
              kill_wait: float = KILL_WAIT) -> list[tuple[int, float]]:
    """The escalation: the first signal and its grace, SIGTERM and its grace, SIGKILL.
    A first signal of SIGTERM (or SIGKILL) is not sent twice."""
    plan = [(int(first_signal), grace)]
    if first_signal not in (signal.SIGTERM, signal.SIGKILL):
        plan.append((int(signal.SIGTERM), term_grace))
    if first_signal != signal.SIGKILL:
        plan.append((int(signal.SIGKILL), kill_wait))
    return plan


# ----------------------------------------------------------------------------- the group


class ProcessGroup:
    """A command running as the leader of its own session, and everything it starts."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # a new session: its leader's pid is the group id
        info = proc_info(self.pid)
        self.start = info.start if info is not None else None
        self.known: dict[int, int] = {}  # descendant pid -> start time, once seen
        self._lock = threading.RLock()  # the loop's walk and the stopper thread's share `known`
        with _registry_lock:
            _OWN_CHILDREN.add(self.pid)
            _ACTIVE_GROUPS.add(self)

    @classmethod
    def spawn(cls, args: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: str | os.PathLike | None = None, stdin: Any = subprocess.DEVNULL,
              stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE, bufsize: int = -1,
              death_signal: int | None = signal.SIGTERM, subreaper: bool = True,
              **popen_kwargs: Any) -> "ProcessGroup":
        """Start `args` in a new session. Raises OSError when it cannot be started.

        death_signal: sent to the leader by the kernel if this process dies (Linux); None
            for none. subreaper: make this process the child subreaper (Linux), so escaped
            descendants can still be found. popen_kwargs (text, errors, encoding, ...) go
            to subprocess.Popen as they are."""
        if subreaper:
            set_child_subreaper()
        preexec = None
        if death_signal is not None and sys.platform.startswith("linux"):
            preexec = _death_signal_preexec(int(death_signal), os.getpid())
        proc = subprocess.Popen(list(args), stdin=stdin, stdout=stdout, stderr=stderr,
                                start_new_session=True, env=env, cwd=cwd, bufsize=bufsize,
                                preexec_fn=preexec, **popen_kwargs)
        return cls(proc)

    # -- membership

    def refresh(self, table: dict[int, ProcInfo] | None = None) -> dict[int, ProcInfo]:
        """Walk /proc and remember every descendant (with its start time): children of the
        trainer's tree, descendants remembered before (a setsid daemon whose parent exited
        may have been re-parented anywhere), and orphans re-parented to us (subreaper) that
        no other group of ours could own. Dead entries are forgotten, our zombies reaped."""
        table = proc_table() if table is None else table
        if not table:
            return table
        me = os.getpid()
        children: dict[int, list[int]] = {}
        for pid, info in table.items():
            children.setdefault(info.ppid, []).append(pid)
        with _registry_lock:
            others = _OWN_CHILDREN - {self.pid}
            alone = len(_ACTIVE_GROUPS) <= 1
        with self._lock:
            for pid, start in list(self.known.items()):  # forget the dead and the recycled
                now = table.get(pid)
                if now is None or now.start != start:
                    del self.known[pid]
                elif now.state == "Z" and now.ppid == me:
                    self._reap(pid)
            roots = [self.pid, *self.known]
            if alone:  # an orphan re-parented to us is ours when no other group could own it
                roots += [pid for pid in children.get(me, ())
                          if pid not in others and pid != self.pid
                          and (self.start is None or table[pid].start >= self.start)]
            seen: set[int] = set()
            stack = roots
            while stack:
                pid = stack.pop()
                if pid in seen or pid not in table:
                    continue
                seen.add(pid)
                if pid != self.pid:
                    self.known[pid] = table[pid].start
                stack.extend(children.get(pid, ()))
        return table

    @staticmethod
    def _reap(pid: int) -> None:
        try:
            os.waitpid(pid, os.WNOHANG)
        except OSError:  # not our child (or already reaped)
            pass

    def _live_known(self, table: dict[int, ProcInfo]) -> list[int]:
        """Remembered descendants that still run as the same process (pid and start time)."""
        with self._lock:
            return [pid for pid, start in self.known.items()
                    if (info := table.get(pid)) is not None and info.start == start and info.state != "Z"]

    def escaped(self, table: dict[int, ProcInfo] | None = None) -> list[int]:
        """Live descendants outside the trainer's process group (setsid, setpgid)."""
        table = self.refresh(table)
        out = [p for p in self._live_known(table) if table[p].pgid != self.pgid]
        return out

    def alive(self) -> bool:
        """Any process of the group, or any remembered descendant, still running. Cheap
        while the group is gone (no /proc walk): the stop polls it at 50 Hz."""
        self.proc.poll()  # reap our child so it is not a zombie group member
        self._reap_orphans()
        try:
            os.killpg(self.pgid, 0)
            members = True
        except ProcessLookupError:
            members = False
        except PermissionError:
            members = True
        if members:
            table = proc_table()
            if not table:  # no /proc: the group signal test is all we have
                return True
            if any(info.pgid == self.pgid and info.state != "Z" for info in table.values()):
                return True
            return bool(self.escaped(table))
        with self._lock:
            known = list(self.known.items())
        return any((info := proc_info(pid)) is not None and info.start == start and info.state != "Z"
                   for pid, start in known)

    def _reap_orphans(self) -> None:
        """Descendants re-parented to us (subreaper) are our zombies to collect."""
        with self._lock:
            pids = list(self.known)
        for pid in pids:
            self._reap(pid)

    # -- signals

    def send(self, sig: int) -> None:
        """Signal the group and every escaped descendant (re-checked just before)."""
        signal_group(self.pgid, sig)
        for pid in self.escaped():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)

    def escalate(self, plan: Sequence[tuple[int, float]],
                 on_signal: Callable[[int], None] | None = None) -> bool:
        """Send each signal of the plan and wait its grace; True once everything is gone."""
        for index, sig_grace in enumerate(plan):
            sig, grace = sig_grace
            if index and not self.alive():  # the first signal goes out at once
                return True
            if on_signal is not None:
                on_signal(sig)
            self.send(sig)
            if self.wait_gone(grace):
                return True
        return not self.alive()

    def stop(self, first_signal: int = signal.SIGINT, grace: float = 0.5,
             term_grace: float = 0.5, kill_wait: float = KILL_WAIT,
             on_signal: Callable[[int], None] | None = None) -> bool:
        return self.escalate(stop_plan(first_signal, grace, term_grace, kill_wait), on_signal)

    def has_leftovers(self) -> bool:
        """After the leader exited: does anything of its tree still run? One full walk, so
        daemons re-parented to us since the last walk are found too."""
        self.proc.poll()
        self.refresh()
        return self.alive()

    def stop_leftovers(self, term_grace: float = 0.5, kill_wait: float = KILL_WAIT) -> bool:
        """After the trainer exited: processes of its tree still running (workers of a
        crashed trainer, setsid daemons) are orphans holding GPUs; end them. False when
        there were none."""
        if not self.has_leftovers():
            return False
        self.escalate([(int(signal.SIGTERM), term_grace), (int(signal.SIGKILL), kill_wait)])
        return True

    # -- the leader

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def close(self) -> None:
        """Forget the group (after it is gone)."""
        with _registry_lock:
            _ACTIVE_GROUPS.discard(self)


# ----------------------------------------------------------------------------- watchdog


_WATCHDOG = r"""
import json, os, signal, sys, time
args = json.loads(sys.argv[1])
pgid, status_path, grace, monitor = args["pgid"], args["status"], args["grace"], args["monitor"]
leader_start = args["leader_start"]
known = {}
done = False
for raw in sys.stdin.buffer:
    words = raw.split()
    if words == [b"done"]:
        done = True
        break
    if len(words) == 3 and words[0] == b"pid":
        known[int(words[1])] = int(words[2])
if done:
    sys.exit(0)
def start_of(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            data = fh.read()
        rest = data[data.rfind(b")") + 2:].split()
        return int(rest[19]), rest[0]
    except (OSError, IndexError, ValueError):
        return None, None
def send(sig):
    hit = False
    now, _ = start_of(pgid)
    if now is None or leader_start is None or now == leader_start:  # never a recycled group id
        try:
            os.killpg(pgid, sig); hit = True
        except OSError:
            pass
    for pid, start in known.items():
        now, state = start_of(pid)
        if now == start and state != b"Z":
            try:
                os.kill(pid, sig); hit = True
            except OSError:
                pass
    return hit
def gone():
    try:
        os.killpg(pgid, 0)
        members = True
    except ProcessLookupError:
        members = False
    except OSError:
        members = True
    if members and os.path.isdir("/proc"):
        members = False
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/stat" % name, "rb") as fh:
                        rest = fh.read().rsplit(b")", 1)[1].split()
                    if int(rest[2]) == pgid and rest[0] != b"Z":
                        members = True
                        break
                except (OSError, IndexError, ValueError):
                    pass
    return not members and all(start_of(p)[0] != s or start_of(p)[1] == b"Z" for p, s in known.items())
stopped = False
for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
    if gone():
        break
    send(sig)
    stopped = True
    end = time.monotonic() + wait
    while time.monotonic() < end and not gone():
        time.sleep(0.01)
try:
    fd = os.open(status_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        status = json.loads(os.read(fd, 4 << 20))
    finally:
        os.close(fd)
    if not isinstance(status, dict):
        status = {}
except (OSError, ValueError):
    status = {}
if status.get("state") in (None, "starting", "running", "stopping"):
    what = ("monitor pid %d ended without cleaning up (killed?); the watchdog %s"
            % (monitor, "stopped the trainer's processes" if stopped else "found the trainer already gone"))
    status.update(state="lost", stop_reason=status.get("stop_reason") or "monitor_lost",
                  updated=time.time(), notice=what)
    status.setdefault("errors", []).append(what)
    tmp = "%s.%s.tmp" % (os.path.join(os.path.dirname(status_path), "." + os.path.basename(status_path)), os.urandom(8).hex())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o664)
        with os.fdopen(fd, "w") as fh:
            json.dump(status, fh, indent=2)
        os.replace(tmp, status_path)
    except OSError:
        pass
"""


class Watchdog:
    """A separate tiny process that stops the trainer's tree if this process dies without
    calling `close()` (SIGKILL, OOM killer), and marks status.json "lost".

    It runs in its own session (a terminal's SIGHUP/SIGINT do not reach it), reads pid
    reports on a pipe, and acts on end-of-file without a "done" line. Writes to it never
    block the caller: a full pipe drops the report (the next one repeats the whole set)."""

    def __init__(self, group: ProcessGroup, status_path: Path, grace: float = 1.0):
        self.group = group
        self.proc: subprocess.Popen | None = None
        self._sent: dict[int, int] = {}
        args = {"pgid": group.pgid, "status": str(status_path), "grace": grace, "monitor": os.getpid(),
                "leader_start": group.start}
        try:
            import json

            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", _WATCHDOG, json.dumps(args)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
            with _registry_lock:
                _OWN_CHILDREN.add(self.proc.pid)
            assert self.proc.stdin is not None
            os.set_blocking(self.proc.stdin.fileno(), False)
        except (OSError, ValueError):
            self.proc = None

    def report(self) -> None:
        """Tell the watchdog about descendants it does not know yet."""
        if self.proc is None or self.proc.stdin is None:
            return
        with self.group._lock:
            known = dict(self.group.known)
        self._sent = {p: s for p, s in self._sent.items() if known.get(p) == s}  # forget the dead
        new = {p: s for p, s in known.items() if self._sent.get(p) != s}
        if not new:
            return
        data = b"".join(b"pid %d %d\n" % (p, s) for p, s in new.items())
        try:
            os.write(self.proc.stdin.fileno(), data)
            self._sent.update(new)
        except (BlockingIOError, BrokenPipeError, OSError, ValueError):
            pass

    def close(self) -> None:
        """We are cleaning up ourselves: the watchdog leaves without acting."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                os.set_blocking(self.proc.stdin.fileno(), True)
                self.proc.stdin.write(b"done\n")
                self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with _registry_lock:
            _OWN_CHILDREN.discard(self.proc.pid)
        self.proc = None
