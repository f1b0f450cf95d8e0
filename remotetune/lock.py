"""One controller per experiment: a lock that dies with its process.

``$REMOTETUNE_HOME/locks/EXP.lock`` is held with ``fcntl.flock`` for as long as a
controller runs the experiment. The kernel drops the lock when the process ends, however it
ends (SIGKILL included), so a dead controller never leaves a stale lock behind. The file
holds who has it (pid, host, start time) as data, for the message the next one gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from remotetune.errors import ExperimentBusy


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    host: str
    since: float | None

    def describe(self) -> str:
        when = (time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.since))
                if self.since else "an unknown time")
        who = f"pid {self.pid}" if self.pid else "another process"
        return f"{who} on {self.host or 'an unknown host'} since {when}"


def lock_path(home: Path, experiment_id: str) -> Path:
    return Path(home) / "locks" / f"{experiment_id}.lock"


def _holder(fd: int) -> LockHolder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid, since = data.get("pid"), data.get("since")
    return LockHolder(pid if isinstance(pid, int) else None, str(data.get("host") or ""),
                      float(since) if isinstance(since, (int, float)) else None)


def running_holder(home: Path, experiment_id: str) -> LockHolder | None:
    """Who runs ``experiment_id`` now, or None when no controller holds its lock.

    It takes a shared lock for an instant to find out; a controller starting in that instant
    tries again (``ExperimentLock.acquire``), so the look never makes it fail.
    """
    try:
        fd = os.open(lock_path(home, experiment_id), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ExperimentLock:
    """Held by the one controller that runs ``experiment_id``; ``acquire`` or ExperimentBusy."""

    def __init__(self, home: Path, experiment_id: str) -> None:
        self.path = lock_path(home, experiment_id)
        self.experiment_id = experiment_id
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(3):  # `running_holder` may hold it shared for an instant
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < 2:
                    time.sleep(0.05)
        else:
            holder = _holder(fd)
            os.close(fd)
            raise ExperimentBusy(
                f"experiment {self.experiment_id} is being run by {holder.describe()}; "
                f"watch it with remotetune view {self.experiment_id}") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()
