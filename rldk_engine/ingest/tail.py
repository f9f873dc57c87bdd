"""The one incremental file tailer: whole lines of a growing file, read without blocking.

Used by the monitor's follow mode and control channel, the TUI's run-directory client and
determinism replica output. Every read is size-capped (`max_bytes` per call), so a file
that grows faster than it is read, or a 100 MB line without a newline, costs bounded work
per call instead of pinning the CPU; a line longer than `max_line` is either split into
pieces (`overlong="split"`: trainer output, nothing lost) or skipped up to its newline
(`overlong="drop"`: a command channel, where a piece of a line means nothing).

Only regular files are read: a FIFO, socket or device at the path is refused with
`NotARegularFile` (one line, naming the path), because reading one could block forever.
The file descriptor is opened with O_NONBLOCK, so even the open cannot hang on a FIFO.

Truncation (`> file`, copytruncate) rewinds to the start; rotation (a new file at the
path) drains the old file first, then switches, and the old file's unterminated last line
counts as complete (nobody writes there any more).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from rldk_engine.errors import InputError

READ_CHUNK = 1 << 16  # default bytes per read_lines() call
MAX_LINE = 16 * 1024 * 1024  # a longer "line" is split (or dropped), never held whole


class NotARegularFile(InputError, OSError):
    """The path is a FIFO, socket, device or folder: reading it could block or never end.
    An OSError too, so code that handles "cannot open" handles this."""


def file_kind(mode: int) -> str:
    """Plain words for a st_mode: "a FIFO", "a socket", "a directory", ..."""
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def open_regular(path: str | os.PathLike, *, nofollow: bool = False, write: bool = False,
                 create: bool = False, append: bool = False, mode: int = 0o664) -> int:
    """Open a regular file and return its descriptor (blocking mode restored), or raise.

    O_NONBLOCK makes the open itself return at once on a FIFO; the fstat check then
    refuses anything that is not a regular file. `nofollow` refuses a symlink at the
    path's last component (ELOOP), for files in a directory another user may write to.
    Created files get `mode` minus the umask (never world-writable with the default).
    """
    flags = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    flags |= (os.O_WRONLY if not append else os.O_WRONLY | os.O_APPEND) if write else os.O_RDONLY
    if create:
        flags |= os.O_CREAT
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO and write:  # a FIFO with no reader
            raise NotARegularFile(path, "is a FIFO (named pipe), not a regular file; refused") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(path, f"is {file_kind(info.st_mode)}, not a regular file; refused")
        os.set_blocking(fd, True)  # regular files never block; writes must not be partial
    except BaseException:
        os.close(fd)
        raise
    return fd


def close_quietly(fd: int | None) -> None:
    """Close a descriptor we own; a close that fails has nothing left to lose."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def check_regular(path: str | os.PathLike) -> None:
    """Raise NotARegularFile when something other than a regular file is at `path`
    (an absent path is fine: a followed log may appear later)."""
    try:
        info = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(path, f"is {file_kind(info.st_mode)}, not a regular file; refused")


HEAD_MAX = 64 << 10  # a first line longer than this is not watched for rewrites


class FileTail:
    """Whole new lines of one growing file, `max_bytes` at most per `read_lines()` call.

    start_at_end: skip what the file holds now (a command channel: stale commands are
        never acted on); otherwise read it from the start (follow mode, TUI).
    overlong: "split" hands a line longer than `max_line` on in pieces; "drop" skips it
        up to its newline and counts it in `dropped_lines`.
    nofollow: refuse a symlink at the path (run-directory files).
    watch_head: read the file again from the start when its first line changes in place
        (a CSV rewritten with a wider header); the lines come again.
    Lines come back without their b"\\n" (a b"\\r" before it is kept).
    """

    def __init__(self, path: str | os.PathLike, *, start_at_end: bool = False,
                 max_line: int = MAX_LINE, overlong: str = "split", nofollow: bool = False,
                 watch_head: bool = False):
        if overlong not in ("split", "drop"):
            raise ValueError("overlong must be 'split' or 'drop'")
        self.path = Path(path)
        self.max_line = max_line
        self.overlong = overlong
        self.nofollow = nofollow
        self.fd: int | None = None
        self.ino: tuple[int, int] | None = None
        self.offset = 0
        self.partial = bytearray()
        self.skipping = False  # "drop": inside an overlong line, skip to its newline
        self.dropped_lines = 0
        self.split_lines = 0
        # watch_head: a file rewritten in place from its start (SB3 rewrites progress.csv
        # with a wider header when new keys appear) is read again from the start
        self.watch_head = watch_head
        self.head: bytes | None = None
        self.rewrites = 0
        if start_at_end:
            try:
                info = os.stat(self.path)
                if stat.S_ISREG(info.st_mode):
                    self.offset = info.st_size
                    self.ino = (info.st_dev, info.st_ino)
            except OSError:
                pass

    # -- opening, truncation and rotation

    def _open(self) -> bool:
        try:
            fd = open_regular(self.path, nofollow=self.nofollow)
        except FileNotFoundError:
            return False
        info = os.fstat(fd)
        ino = (info.st_dev, info.st_ino)
        if self.ino is not None and ino != self.ino:
            self.offset = 0  # not the file we skipped to the end of: read it all
        self.ino = ino
        if info.st_size < self.offset:  # truncated while closed
            self.offset = 0
        os.lseek(fd, self.offset, os.SEEK_SET)
        self.fd = fd
        return True

    def close(self) -> None:
        close_quietly(self.fd)
        self.fd = None

    def _head_rewritten(self) -> bool:
        """The first line is not what it was when it was read: rewritten in place."""
        if not self.watch_head or self.head is None or self.fd is None:
            return False
        if os.pread(self.fd, len(self.head), 0) != self.head:
            self.rewrites += 1
            return True
        return False

    def _replaced(self) -> bool:
        """True when the path now names another file (rotated) or nothing (deleted)."""
        try:
            info = os.stat(self.path) if not self.nofollow else os.lstat(self.path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self.ino

    # -- reading

    def read_lines(self, max_bytes: int = READ_CHUNK) -> list[bytes]:
        """The complete lines that arrived since the last call (at most about `max_bytes`
        of them). Raises NotARegularFile when a special file sits at the path."""
        if self.fd is None and not self._open():
            return []
        assert self.fd is not None
        try:
            size = os.fstat(self.fd).st_size
            if size < self.offset or self._head_rewritten():  # truncated or rewritten: start again
                os.lseek(self.fd, 0, os.SEEK_SET)
                self.offset = 0
                self.partial.clear()
                self.skipping = False
                self.head = None
            start = self.offset
            data = os.read(self.fd, max_bytes) if size > self.offset else b""
        except OSError:
            self.close()
            return []
        if data:
            self.offset += len(data)
            if self.watch_head and start == 0 and b"\n" in data[:HEAD_MAX]:
                self.head = data[: data.index(b"\n") + 1]
            return self._split(data)
        if self._replaced():  # rotated or deleted: the old file is drained, take the next one
            lines = []
            if self.partial and not self.skipping:
                lines.append(bytes(self.partial))  # its last line is complete now
            self.partial.clear()
            self.skipping = False
            self.close()
            self.offset = 0
            self.ino = None
            return lines
        return []

    def _split(self, data: bytes) -> list[bytes]:
        lines = data.split(b"\n")
        last = lines.pop()  # b"" when data ended with a newline
        out: list[bytes] = []
        if lines:
            first = lines[0]
            if self.skipping:
                self.skipping = False  # the overlong line ends here
                lines = lines[1:]
            elif self.partial:
                self.partial += first
                lines[0] = bytes(self.partial)
                self.partial.clear()
            for line in lines:
                if len(line) > self.max_line:
                    out.extend(self._overlong(line, final=True))
                else:
                    out.append(line)
            self.partial += last
        elif not self.skipping:
            self.partial += last
        if len(self.partial) > self.max_line:
            out.extend(self._overlong(bytes(self.partial), final=False))
            self.partial.clear()
        return out

    def _overlong(self, line: bytes, final: bool) -> list[bytes]:
        if self.overlong == "drop":
            self.dropped_lines += 1
            self.skipping = not final
            return []
        self.split_lines += 1
        return [line[i:i + self.max_line] for i in range(0, len(line), self.max_line)]

    def __enter__(self) -> "FileTail":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def own_stdin() -> BinaryIO:
    """A reader of its own on stdin's descriptor, for a daemon thread: one blocked in
    sys.stdin's readline holds that object's lock, and the interpreter aborts ("could not
    acquire lock ... at interpreter shutdown") when it flushes the standard streams."""
    try:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    except (OSError, ValueError, AttributeError):  # no real descriptor (embedded, tests)
        return sys.stdin.buffer
