"""The agent's ``exec`` op: a fixed argv (no shell), used for nvidia-smi.

Standard library, Python 3.8 (shipped with the agent). The connect bootstrap may name an
argv to start at once (:func:`start_early`): nvidia-smi then runs while the code syncs, and
the first ``exec`` of the same argv collects its output instead of starting it again.

With ``within`` (seconds) an ``exec`` waits no longer than that: a command still running is
left running and the answer says ``pending``; the next ``exec`` of the same argv collects it.
The periodic GPU reading uses ``within: 0``, so a slow or hung nvidia-smi never holds the
agent's one channel (polls, launches and kills) for more than a moment; past ``timeout``
from its start the command is killed and the ``exec`` fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

_EARLY: dict = {}  # argv tuple -> (Popen, its start on time.monotonic), until an exec collects it
_REAPED: dict = {}  # pid -> exit code, for an early command the agent's reaper collected


def start_early(argv) -> None:
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        return  # exec says "not found" itself
    try:
        _EARLY[tuple(argv)] = (subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            time.monotonic())
    except OSError:
        pass


def reaped(pid: int, status: int) -> None:
    """The agent's reaper (``waitpid(-1)``) collected ``pid``: keep its code if it is ours
    (``Popen`` would read a child reaped by someone else as exit 0)."""
    if any(proc.pid == pid for proc, _ in _EARLY.values()):
        if os.WIFEXITED(status):
            _REAPED[pid] = os.WEXITSTATUS(status)
        else:
            _REAPED[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else status


def op_exec(workdir: str, req: dict, payload):
    """Run a fixed argv (no shell) and return its output and exit code (or ``pending``)."""
    argv = [str(a) for a in req["argv"]]
    key = tuple(argv)
    timeout = float(req.get("timeout", 20))
    if key not in _EARLY:
        if shutil.which(argv[0]) is None:
            return {"found": False, "code": None, "stdout": "",
                    "stderr": "%s: not found" % argv[0]}
        start_early(argv)
    if key not in _EARLY:  # found, but it could not be started
        return {"found": True, "code": 126, "stdout": "", "stderr": "cannot run %s" % argv[0]}
    proc, started = _EARLY[key]
    deadline = started + timeout
    left = deadline - time.monotonic()
    wait = req.get("within")
    limit = left if wait is None else min(left, float(wait))
    try:  # at least a moment (10 ms): communicate reads the pipes only while its time lasts
        out, err = proc.communicate(timeout=max(0.01, limit))
    except subprocess.TimeoutExpired:
        if wait is not None and time.monotonic() < deadline:
            return {"found": True, "pending": True}
        _EARLY.pop(key, None)
        proc.kill()
        proc.communicate()
        _REAPED.pop(proc.pid, None)
        raise RuntimeError("%s did not answer within %g s" % (argv[0], timeout)) from None
    _EARLY.pop(key, None)
    code = _REAPED.pop(proc.pid, proc.returncode)
    return {"found": True, "code": code, "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace")}
