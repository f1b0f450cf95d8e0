"""GPU reservations on a host, shared by every controller that uses its workdir.

Standard library only, Python >= 3.8 (shipped with the agent). A trial that remotetune
launches with GPUs holds one reservation file per GPU::

    <workdir>/gpus/<index>.<n>.lock   {"experiment", "trial", "dir", "pid", "ticks",
                                       "launcher_pid", "launcher_ticks"}

``n`` counts holders, ``0 .. per_gpu - 1`` (the launching experiment's ``maxTrialsPerGpu``),
so a GPU takes as many trials as that allows, whichever experiments they belong to. The
agent takes the files before it starts the trial, with ``O_CREAT | O_EXCL`` while it holds
``flock`` on ``<workdir>/gpus/.lock``: two agents (two controllers) never take the same
holder file, and a stale file is removed only under that lock. Until the launcher has
started the trial a file names the agent itself; then it names the launcher and the
trial's process group (with their start ticks, as pid.json does). The launcher removes
its files when the trial has ended. A file whose recorded processes are all gone (a
launcher killed with SIGKILL, a rebooted host) is stale and taken over by the next launch.

A launch whose GPU has no free holder file is refused with :class:`GpuReserved`, whose
``details`` list the GPU and who holds it.
"""

from __future__ import annotations

import errno
import json
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]


class GpuReserved(RuntimeError):
    """Every holder slot of a GPU is held by another live trial."""

    def __init__(self, message: str, details: dict) -> None:
        RuntimeError.__init__(self, message)
        self.details = details


def _lock_dir(workdir: str) -> str:
    return os.path.join(workdir, "gpus")


def _read(path: str):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else {}


def _alive(pid, ticks, is_alive, same_process) -> bool:
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    return pid > 0 and is_alive(pid) and same_process(pid, ticks)


def holder_alive(info, is_alive, same_process) -> bool:
    """Whether any process a reservation names still runs. Files are written whole under
    the flock (or replaced atomically), so one that does not parse is a crash's leftover."""
    if info is None:
        return False
    return (_alive(info.get("pid"), info.get("ticks"), is_alive, same_process)
            or _alive(info.get("launcher_pid"), info.get("launcher_ticks"), is_alive,
                      same_process))


class _Flock:
    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)

    def __enter__(self) -> "_Flock":
        if fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # closing releases the flock


def _take_one(directory: str, index: int, per_gpu: int, record: bytes, alive) -> str:
    holders = []
    for n in range(max(1, per_gpu)):
        path = os.path.join(directory, "%d.%d.lock" % (index, n))
        info = _read(path) if os.path.exists(path) else None
        if os.path.exists(path) and alive(info):
            holders.append(info or {})
            continue
        if os.path.exists(path):
            try:
                os.unlink(path)  # stale: its trial and launcher are gone
            except FileNotFoundError:  # released meanwhile
                pass
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            if exc.errno == errno.EEXIST:  # only without flock (not POSIX)
                holders.append({})
                continue
            raise
        with os.fdopen(fd, "wb") as f:
            f.write(record)
        return path
    names = sorted({str(h.get("experiment", "?")) for h in holders})
    trials = [str(h.get("trial", "?")) for h in holders]
    raise GpuReserved(
        "GPU %d reserved by experiment %s (trial %s)" % (index, ", ".join(names),
                                                       ", ".join(trials)),
        {"gpu": index, "holders": len(holders), "experiments": names})


def reserve(workdir: str, request: dict, is_alive, same_process, self_ticks) -> list:
    """Take one holder file per GPU of ``request`` ({"indices", "per_gpu", "experiment",
    "trial", "dir"}); all or none. Returns the paths taken."""
    directory = _lock_dir(workdir)
    record = json.dumps({
        "experiment": request.get("experiment"), "trial": request.get("trial"),
        "dir": request.get("dir"), "pid": os.getpid(), "ticks": self_ticks,
    }).encode("utf-8")
    per_gpu = int(request.get("per_gpu") or 1)

    def alive(info) -> bool:
        return holder_alive(info, is_alive, same_process)

    taken = []
    with _Flock(directory):
        try:
            for index in request.get("indices", []):
                taken.append(_take_one(directory, int(index), per_gpu, record, alive))
        except BaseException:
            release(taken)
            raise
    return taken


def bind(paths, info: dict) -> None:
    """Point the reservations at the started trial (its group and launcher)."""
    for path in paths:
        old = _read(path) or {}
        old.update({k: info.get(k) for k in ("pid", "ticks", "launcher_pid", "launcher_ticks")})
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "wb") as f:
            f.write(json.dumps(old).encode("utf-8"))
        os.replace(tmp, path)


def release(paths) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
