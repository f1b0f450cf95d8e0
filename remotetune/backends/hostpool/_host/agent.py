"""The host agent: one small process per host, driven by the controller over a pipe.

Standard library only, Python >= 3.8: shipped to bare hosts by the controller and started
on one SSH exec channel (or as a local subprocess). It launches trials detached, reads
their metric and exit files, and kills process groups. It keeps no state the controller
needs: trials outlive the agent, and everything about a trial is in its directory::

    launch.json    what to run (written by the controller)
    parameters.json
    run.sh         the shell script: the host's `setup` lines, then the trialCommand
    pid.json       {"pid", "pgid", "launcher_pid", "started", "hostname", "ticks",
                    "launcher_ticks"}  (by the launcher; ticks: start times, see _start_ticks)
    metrics.jsonl  appended by the trial (remotetune.trial)
    stdout.log stderr.log
    exit.json      {"code", "signal", "ended", "reason"}  (by the launcher, atomically)

Protocol: a request is one JSON line; when it carries ``"size": N`` exactly N raw bytes
follow. The answer is one JSON line ``{"id": ..., "ok": true, ...}`` or
``{"id": ..., "ok": false, "error": "...", "kind": "..."}``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

try:  # on hosts: the shipped bundle; in the controller's own tree: the package
    from remotetune._host import (  # type: ignore[attr-defined]
        execops,
        launcher,
        launchops,
        pollops,
        reads,
        watch,
    )
except ImportError:
    from remotetune.backends.hostpool._host import (
        execops,
        launcher,
        launchops,
        pollops,
        reads,
        watch,
    )

SETUP_FAILED_EXIT = 254


def _abspath(workdir: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(workdir, path)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)  # no fsync: rename is atomic for crashes of processes, which is
        # what we guard against; an fsync costs ~10 ms per file on a busy disk
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts; check /proc when we can.
    return True


def _start_ticks(pid):
    """When ``pid`` started, in clock ticks since boot (/proc), or None if unknown.

    With the pid it names one process for good: a pid reused after the process ended
    (a restarted container or host counts pids from 1 again) has another start time.
    """
    try:
        fd = os.open("/proc/%d/stat" % int(pid), os.O_RDONLY)  # once per trial and poll
        try:
            stat = os.read(fd, 4096).decode("ascii", "replace")
        finally:
            os.close(fd)
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _same_process(pid, ticks) -> bool:
    """False when ``pid`` now names another process than the one that started at ``ticks``.

    True when it cannot tell (no ticks recorded, no /proc, or no such process any more).
    """
    if ticks is None or not pid:
        return True
    now = _start_ticks(pid)
    return now is None or now == int(ticks)


# ------------------------------------------------------- trial processes (launcher.py)


def _shell() -> str:
    for candidate in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.path.exists(candidate):
            return candidate
    return "sh"


def _trial_env(spec: dict) -> dict:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in spec.get("env", {}).items()})
    for key in spec.get("unset_env", []):
        env.pop(key, None)
    for key, value in spec.get("prepend_env", {}).items():
        env[key] = value + (os.pathsep + env[key] if env.get(key) else "")
    return env


def _terminate_group(pgid: int, grace: float, gone=None) -> bool:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.time() + grace
    while time.time() < deadline:
        if (gone and gone()) or not group_alive(pgid):
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return not group_alive(pgid)


def reap_children() -> None:
    """Collect launchers that ended while we run (they are our children).

    A command started at connect (:func:`start`) is a child too: its exit status is kept
    for :func:`op_exec`, which would otherwise read a reaped child's code as 0.
    """
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        execops.reaped(pid, status)


# --------------------------------------------------------------------------- ops


def op_hello(workdir: str, req: dict, payload):
    os.makedirs(workdir, exist_ok=True)
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "home": os.path.expanduser("~"),
        "workdir": workdir,
        "cpus": os.cpu_count() or 1,
    }


def op_write(workdir: str, req: dict, payload):
    path = _abspath(workdir, req["path"])
    write_atomic(path, payload or b"", int(req.get("mode", 0o644)))
    return {"path": path}


def _trial_alive(pid_info: dict) -> bool:
    pgid, launcher_pid = int(pid_info["pgid"]), pid_info.get("launcher_pid")
    return (group_alive(pgid) and _same_process(pgid, pid_info.get("ticks"))) or (
        _pid_alive(launcher_pid) and _same_process(launcher_pid, pid_info.get("launcher_ticks")))


# Whether a request waits on the agent's input, and its descriptor (set by serve): a long
# poll ends early then, and sleeps in select on that descriptor and its inotify one.
_PENDING = [lambda: False]
_INPUT_FD = [None]


def op_poll(workdir: str, req: dict, payload):
    """Every trial's news; with ``wait``, a long poll (``pollops``, ``watch``)."""
    return pollops.poll(workdir, req, _trial_alive, _PENDING[0], _INPUT_FD[0])


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def op_kill(workdir: str, req: dict, payload):
    pgid = int(req["pgid"])
    grace = float(req.get("grace", 10.0))
    if not group_alive(pgid):
        return {"alive": False}
    if req.get("dir"):  # the trial's own record: is pgid still that trial's group?
        info = reads.read_json(os.path.join(_abspath(workdir, req["dir"]), "pid.json")) or {}
        if int(info.get("pgid", pgid)) == pgid and not _same_process(pgid, info.get("ticks")):
            return {"alive": False, "reused": True}  # another process got the id: leave it
    if req.get("wait"):
        gone = _terminate_group(pgid, grace)
        return {"alive": not gone}
    threading.Thread(target=_terminate_group, args=(pgid, grace), daemon=True).start()
    return {"alive": True}


def op_tail(workdir: str, req: dict, payload):
    trial_dir = _abspath(workdir, req["dir"])
    limit = int(req.get("bytes", 4000))
    return {
        "stdout": reads.tail(os.path.join(trial_dir, "stdout.log"), limit),
        "stderr": reads.tail(os.path.join(trial_dir, "stderr.log"), limit),
        "launcher": reads.tail(os.path.join(trial_dir, "launcher.log"), limit),
    }


OPS = {
    "hello": op_hello,
    "write": op_write,
    "poll": op_poll,
    "kill": op_kill,
    "tail": op_tail,
    "exec": execops.op_exec,
}

OPS.update(launchops.OPS)  # launch and launches

try:  # code sync lives in its own module
    from remotetune._host import syncops  # type: ignore[attr-defined]

    OPS.update(syncops.OPS)
except ImportError:  # pragma: no cover - older lib without sync
    pass

# ---- Slurm ops (slurm_submit, slurm_poll, slurm_cancel): trials as sbatch jobs ----
try:
    from remotetune._host import slurmops  # type: ignore[attr-defined]

    OPS.update(slurmops.OPS)
except ImportError:  # pragma: no cover - a bundle without slurmops
    pass
# ---- end of the Slurm ops ----


def failure_answer(exc: BaseException) -> dict:
    """How the agent answers a failure (a refused GPU's ``details`` included)."""
    return {"ok": False, "error": str(exc) or repr(exc), "kind": type(exc).__name__,
            "details": getattr(exc, "details", None)}


def serve(workdir: str, stdin=None, stdout=None, hello=None) -> None:
    """Answer requests until stdin closes. The first line says the agent is ready, with
    ``hello``'s facts when given (the connect bootstrap's: no ``hello`` request needed)."""
    stdin = watch.Input(stdin or sys.stdin.buffer)
    _PENDING[0] = stdin.pending
    _INPUT_FD[0] = stdin.fd
    stdout = stdout or sys.stdout.buffer
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ready = {"id": 0, "ok": True, "ready": True}
    if hello is not None:
        ready["hello"] = hello
    stdout.write(json.dumps(ready).encode("utf-8") + b"\n")
    stdout.flush()
    try:
        _answer_requests(workdir, stdin, stdout)
    finally:
        launcher.discard()


def _answer_requests(workdir: str, stdin, stdout) -> None:
    while True:
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        req_id = None
        try:
            req = json.loads(line.decode("utf-8"))
            req_id = req.get("id")
            payload = stdin.read_exact(int(req["size"])) if req.get("size") else None
            handler = OPS.get(req.get("op"))
            if handler is None:
                raise ValueError("unknown op %r" % req.get("op"))
            answer = handler(workdir, req, payload)
            answer.update({"id": req_id, "ok": True})
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the controller
            answer = dict(failure_answer(exc), id=req_id)
        stdout.write(json.dumps(answer).encode("utf-8") + b"\n")
        stdout.flush()
        reap_children()
        launcher.replenish()  # the next launch's process, forked while the controller works


def start(workdir: str, probe: dict, early=None) -> None:
    """As ``commands.connect_command`` starts it: ``early``, an argv, runs now (``exec``)."""
    if early:
        execops.start_early(early)
    hello = op_hello(workdir, {}, None)
    hello["probe"] = probe
    serve(workdir, hello=hello)


def main() -> None:
    workdir = os.path.abspath(os.path.expanduser(sys.argv[1] if len(sys.argv) > 1 else "."))
    os.makedirs(workdir, exist_ok=True)
    serve(workdir)


if __name__ == "__main__":
    main()
