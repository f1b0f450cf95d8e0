"""The agent's long poll: wait on the host until a trial changed or a request arrived.

Standard library only, Python >= 3.8 (shipped to hosts with the agent). A ``poll`` with
``"wait": seconds`` that finds nothing new does not answer at once: it watches its trials
with cheap ``stat`` calls every ``every`` seconds (the size and mtime of ``metrics.jsonl``,
whether ``exit.json`` and ``pid.json`` exist) and whether each trial's processes still
live (less often), and answers as soon as any of that changed, when the controller sent
anything (a launch, kill or tail must not wait behind a poll), or when ``wait`` ran out.
"""

from __future__ import annotations

import os
import select
import time

LIVENESS_EVERY = 0.1  # seconds between liveness checks (kill(0) and /proc) while waiting


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


def _exists(path) -> bool:
    if path is None:
        return True  # pid.json of a started trial: it stays once written
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _paths(trial_dir: str, started: bool) -> tuple:
    join = os.path.join
    return (join(trial_dir, "metrics.jsonl"), join(trial_dir, "exit.json"),
            None if started else join(trial_dir, "pid.json"))


def _signature(paths: tuple) -> tuple:
    """What changes when a trial writes a metric line, starts or ends."""
    metrics, exit_file, pid_file = paths
    return (_stat(metrics), _exists(exit_file), _exists(pid_file))


def wait_change(trials, wait: float, every: float, pending, alive) -> str:
    """Block up to ``wait`` seconds; return why it stopped: changed, request or timeout.

    ``trials``: (trial dir, its pid record or None) pairs. ``pending()`` says whether a
    request waits on the agent's input; ``alive(pid record)`` whether a trial's processes
    still live. Paths are joined once: this loop runs every few milliseconds on each host.
    """
    paths = [_paths(d, pid is not None) for d, pid in trials]
    pids = [pid for _, pid in trials if pid is not None]
    before = [_signature(p) for p in paths]
    deadline = time.monotonic() + wait
    next_liveness = time.monotonic() + LIVENESS_EVERY
    while True:
        if pending():
            return "request"
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        time.sleep(min(every, deadline - now))
        for i, p in enumerate(paths):
            if _signature(p) != before[i]:
                return "changed"
        if time.monotonic() >= next_liveness:
            next_liveness = time.monotonic() + LIVENESS_EVERY
            if not all(alive(pid) for pid in pids):
                return "changed"


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

    def _fill(self) -> bool:
        chunk = os.read(self.fd, 1 << 16)
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
        if not self.buffer and not self._fill():
            return b""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

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
