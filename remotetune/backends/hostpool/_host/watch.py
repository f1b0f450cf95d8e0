"""The agent's long poll: wait on the host until a trial changed or a request arrived.

Standard library only, Python >= 3.8 (shipped to hosts with the agent). A ``poll`` with
``"wait": seconds`` that finds nothing new does not answer at once. On Linux it sleeps in
``select`` on two descriptors: the agent's input (a request ends the wait at once) and one
inotify descriptor watching the waited trials' directories (inotify.py: a metric line, an
``exit.json`` or a ``pid.json`` wakes it). Each wake compares the trials' stat signatures
(the size and mtime of ``metrics.jsonl``, whether ``exit.json`` and ``pid.json`` exist)
with those taken before the poll read the files, so a change between that read and the
watch is seen too, and an event about nothing new sends the agent back to sleep. Where
inotify is unavailable it stats every ``every`` seconds instead (the fallback).

A trial whose launcher was killed (SIGKILL: no ``exit.json``) makes no file event: its
processes' liveness is checked every ``LIVENESS_EVENTS`` seconds with inotify,
``LIVENESS_EVERY`` when polling. Anything else ends the wait at once.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
import sys
import time

try:  # on hosts: the shipped bundle; in the controller's own tree: the package
    from remotetune._host import inotify  # type: ignore[attr-defined]
except ImportError:
    from remotetune.backends.hostpool._host import inotify

LIVENESS_EVERY = 0.1  # seconds between liveness checks (kill(0) and /proc) when polling
# With inotify this is the only periodic wake of an idle agent. The launcher writes exit.json
# when a trial ends, killed or not, so only a launcher killed with SIGKILL (or a host reboot)
# needs it: half a second to notice that, against 2 wakes a second per agent.
LIVENESS_EVENTS = 0.5

_INOTIFY: list = []  # the agent's one Inotify, made on first use


def events() -> inotify.Inotify:
    if not _INOTIFY:
        _INOTIFY.append(inotify.Inotify())
    return _INOTIFY[0]


def news(result: dict) -> bool:
    """Whether a trial's poll result has something for the controller now."""
    return bool(result["lines"] or result.get("skipped") or result["more"]
                or result["exit"] is not None or result["alive"] is False
                or not result["exists"])


def _stat(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def signature(trial_dir: str, started: bool = False) -> tuple:
    """What changes when a trial writes a metric line, starts or ends. ``started``: its
    pid record is held (pid.json is written once and stays: no need to look)."""
    return (_stat(trial_dir + "/metrics.jsonl"), _exists(trial_dir + "/exit.json"),
            started or _exists(trial_dir + "/pid.json"))


class Waiter:
    """How one long poll sleeps: on inotify and the input together, or stat polling."""

    def __init__(self, dirs, input_fd, every: float) -> None:
        self.every = every
        self.watch = None
        if input_fd is not None:
            watcher = events()
            if watcher.track(dirs):  # before the read: a later change wakes us
                self.watch = watcher
        self.fds = [input_fd, self.watch.fd] if self.watch is not None else []
        self.liveness = LIVENESS_EVENTS if self.watch is not None else LIVENESS_EVERY

    def sleep(self, seconds: float) -> bool:
        """Sleep until something may have changed; False when nothing did (look anyway)."""
        if self.watch is None:
            time.sleep(min(self.every, seconds))
            return True
        try:
            ready, _, _ = select.select(self.fds, [], [], max(seconds, 0.0))
        except InterruptedError:
            return True
        except (OSError, ValueError):
            time.sleep(min(self.every, seconds))  # a closed input: pending() sees it
            return True
        return self.watch.fd in ready and self.watch.drain()


def wait_change(pids, before, wait: float, waiter: Waiter, pending, alive, sign):
    """Block up to ``wait`` seconds; return (why it stopped, the signatures then): changed
    (a file), vanished (a trial's processes), request or timeout.

    ``pids``: the waited trials' pid records; ``before``: their signatures (``sign()``)
    from before the poll read them. ``pending()`` says whether a request waits on the
    agent's input; ``alive(pid record)`` whether a trial's processes still live.
    """
    deadline = time.monotonic() + wait
    next_liveness = time.monotonic() + waiter.liveness
    look = True  # at once: what changed since the read (and before the watch)
    while True:
        if pending():
            return "request", None
        if look:
            now_signs = sign()
            if now_signs != before:
                return "changed", now_signs
        now = time.monotonic()
        if now >= next_liveness:
            next_liveness = now + waiter.liveness
            if not all(alive(pid) for pid in pids):
                return "vanished", None
        if now >= deadline:
            return "timeout", None
        look = waiter.sleep(min(deadline, next_liveness) - now)


PIPE_BYTES = 1 << 20  # Linux's pipe-max-size for unprivileged processes, by default
_READ_BYTES = 1 << 16  # one read of the input; Linux's default pipe size
_SETPIPE_SZ, _GETPIPE_SZ = 1031, 1032  # fcntl.F_SETPIPE_SZ / F_GETPIPE_SZ (Linux only)


def _is_pipe(fd) -> bool:
    if fd is None or not sys.platform.startswith("linux"):
        return False
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _pipe_size(fd) -> int:
    try:
        return fcntl.fcntl(fd, _GETPIPE_SZ)
    except OSError:
        return 0


def _resize_pipe(fd, size: int) -> None:
    try:
        fcntl.fcntl(fd, _SETPIPE_SZ, size)
    except OSError:  # over pipe-max-size or the user's pipe quota; EBUSY: it holds more
        pass


class Input:
    """The agent's request stream, read with ``os.read`` so that pending input is visible.

    A buffered reader may hold a whole request that ``select`` no longer sees; this one
    knows what it holds. Falls back to the stream's own methods when it has no descriptor.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        try:
            self.fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        self.pipe = _is_pipe(self.fd)

    def _fill(self, most: int = _READ_BYTES) -> bool:
        chunk = os.read(self.fd, most)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def readline(self) -> bytes:
        if self.fd is None:
            return self.stream.readline()
        scanned = 0
        while True:
            end = self.buffer.find(b"\n", scanned)
            if end >= 0:
                break
            scanned = len(self.buffer)
            if not self._fill():
                line = bytes(self.buffer)
                del self.buffer[:]
                return line
        line = bytes(self.buffer[:end + 1])
        del self.buffer[:end + 1]
        return line

    def read(self, size: int) -> bytes:
        if self.fd is None:
            return self.stream.read(size)
        if not self.buffer and not self._fill(min(max(size, _READ_BYTES), PIPE_BYTES)):
            return b""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_exact(self, size: int) -> bytes:
        """``size`` bytes (a request's payload). A large one crosses a pipe widened to 1 MiB
        for the time it takes, in 16 times fewer hand-overs from sshd; the pipe then goes
        back to its size before, 64 KiB by default (a user's pipes share a quota: 64 agents
        of one user stay within it)."""
        was = _pipe_size(self.fd) if self.pipe else 0
        wide = 0 < was < PIPE_BYTES and size - len(self.buffer) > was
        if wide:
            _resize_pipe(self.fd, PIPE_BYTES)
        try:
            chunks = []
            while size > 0:
                chunk = self.read(size)
                if not chunk:
                    raise EOFError("payload cut short")
                chunks.append(chunk)
                size -= len(chunk)
            return b"".join(chunks)
        finally:
            if wide:
                _resize_pipe(self.fd, was)

    def pending(self) -> bool:
        if self.buffer:
            return True
        if self.fd is None:
            return False
        try:
            readable, _, _ = select.select([self.fd], [], [], 0)
        except (OSError, ValueError):
            return True  # a closed input: answer now, the next read sees EOF
        return bool(readable)
