"""The agent's ``exec`` op: a fixed argv (no shell), used for nvidia-smi.

Standard library, Python 3.8 (shipped with the agent). The connect bootstrap may name an
argv to start at once (:func:`start_early`): nvidia-smi then runs while the code syncs, and
the first ``exec`` of the same argv collects its output instead of starting it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess

_EARLY: dict = {}  # argv tuple -> Popen, until the first exec of that argv
_REAPED: dict = {}  # pid -> exit code, for an early command the agent's reaper collected


def start_early(argv) -> None:
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        return  # exec says "not found" itself
    try:
        _EARLY[tuple(argv)] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
        pass


def reaped(pid: int, status: int) -> None:
    """The agent's reaper (``waitpid(-1)``) collected ``pid``: keep its code if it is ours
    (``Popen`` would read a child reaped by someone else as exit 0)."""
    if any(proc.pid == pid for proc in _EARLY.values()):
        if os.WIFEXITED(status):
            _REAPED[pid] = os.WEXITSTATUS(status)
        else:
            _REAPED[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else status


def op_exec(workdir: str, req: dict, payload):
    """Run a fixed argv (no shell) and return its output and exit code."""
    argv = [str(a) for a in req["argv"]]
    timeout = float(req.get("timeout", 20))
    early = _EARLY.pop(tuple(argv), None)
    if early is not None:
        out, err = early.communicate(timeout=timeout)
        code = _REAPED.pop(early.pid, early.returncode)
    elif shutil.which(argv[0]) is None:
        return {"found": False, "code": None, "stdout": "", "stderr": "%s: not found" % argv[0]}
    else:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    return {"found": True, "code": code, "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace")}
