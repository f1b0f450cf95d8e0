"""The trial's launcher: the detached process that starts ``run.sh``, waits for it and
writes ``exit.json``; and the spare launcher the agent keeps forked ahead.

Standard library, Python 3.8 (shipped with the agent). A launcher is a fork of the agent:
it starts a new session (no controlling terminal, out of the SSH session's process group,
SIGHUP ignored), so the trial outlives the agent and the SSH connection.

Forking is most of a launch's cost on the host (the fork itself, then the child's own set-up
before it can start the trial). So once the agent has launched a trial, it keeps one launcher
forked ahead (the *spare*), already in its own session and blocked on a pipe: the next launch
hands it the trial's directory and spec and it starts the trial at once. The agent forks the
next spare after it has answered, off the critical path. A spare whose agent is gone reads
end-of-file and exits; one that died is replaced by a fresh fork.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

try:  # on hosts: the shipped bundle; in the controller's own tree: the package
    from remotetune._host import gpulocks  # type: ignore[attr-defined]
except ImportError:
    from remotetune.backends.hostpool._host import gpulocks


def agent_module():
    """agent.py's helpers; imported late (agent.py imports this module while loading)."""
    try:
        from remotetune._host import agent  # type: ignore[attr-defined]
    except ImportError:
        from remotetune.backends.hostpool._host import agent
    return agent


class _Overtime(Exception):
    """Raised by SIGALRM in the launcher when the trial ran past max_duration."""


def _overtime(signum, frame):
    raise _Overtime()


def _enforce_max_duration(proc, started: float, spec: dict):
    """Wait while the trial may run; past max_duration TERM (then KILL) it: "timeout".

    A blocking wait with an alarm at the deadline, not a sleep loop: the trial's end is
    seen at once (its exit.json written), not up to a polling interval later.
    """
    max_duration = spec.get("max_duration")
    grace = float(spec.get("kill_grace", 10.0))
    if not max_duration:
        return None
    left = started + float(max_duration) - time.time()
    if left > 0:
        signal.signal(signal.SIGALRM, _overtime)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            try:
                proc.wait()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Overtime:
            pass
        if proc.returncode is not None:  # it ended (maybe just as the alarm rang)
            return None
    agent_module()._terminate_group(proc.pid, grace, lambda: proc.poll() is not None)
    return "timeout"


def _run_launcher(trial_dir: str, spec: dict, report_fd: int) -> None:
    """Runs in the detached launcher: start the trial, wait, record how it ended."""
    agent = agent_module()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = agent._trial_env(spec)
    script = os.path.join(trial_dir, "run.sh")
    out = open(os.path.join(trial_dir, "stdout.log"), "ab")
    err = open(os.path.join(trial_dir, "stderr.log"), "ab")
    started = time.time()
    try:
        proc = subprocess.Popen(
            [agent._shell(), script],
            cwd=spec.get("cwd") or trial_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    except OSError as exc:
        agent.write_atomic(
            os.path.join(trial_dir, "exit.json"),
            json.dumps({"code": 127, "signal": None, "ended": time.time(),
                        "reason": "launch failed: %s" % exc}).encode(),
        )
        gpulocks.release(spec.get("gpu_locks", ()))
        os.write(report_fd, json.dumps({"error": str(exc)}).encode())
        return
    info = {
        "pid": proc.pid,
        "pgid": proc.pid,
        "launcher_pid": os.getpid(),
        "started": started,
        "hostname": socket.gethostname(),
        "ticks": agent._start_ticks(proc.pid),
        "launcher_ticks": agent._start_ticks(os.getpid()),
    }
    agent.write_atomic(os.path.join(trial_dir, "pid.json"), json.dumps(info).encode())
    gpulocks.bind(spec.get("gpu_locks", ()), info)  # the GPUs are this trial's now
    os.write(report_fd, json.dumps(info).encode())
    os.close(report_fd)
    out.close()
    err.close()

    reason = _enforce_max_duration(proc, started, spec)
    code = proc.wait()
    ended = time.time()
    sig = -code if code < 0 else None
    result = {"code": code if code >= 0 else 128 + (sig or 0), "signal": sig,
              "ended": ended, "reason": reason}
    if code == agent.SETUP_FAILED_EXIT:
        result["reason"] = "setup failed"
    # The GPUs go back before exit.json tells the controller: its next trial finds them free.
    gpulocks.release(spec.get("gpu_locks", ()))
    agent.write_atomic(os.path.join(trial_dir, "exit.json"), json.dumps(result).encode())


# --------------------------------------------------------------------------- forking

# The launcher forked ahead, at most one: (its order pipe, its report pipe). The agent's
# reaper collects it, as every launcher, so its pid is not kept.
_SPARE: list = []
_WANTED = [False]  # set by the first launch: an agent that never launches keeps no spare


def _read_all(fd: int) -> bytes:
    chunks: list = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(order_fd: int, report_fd: int) -> None:
    """The forked launcher: detach, wait for its trial (or end-of-file), run it."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # never the agent's channel: sshd waits for it to close
        os.dup2(devnull, fd)
    order = _read_all(order_fd)
    os.close(order_fd)
    if not order:  # the agent went away, or let this spare go
        return
    trial_dir, spec = json.loads(order.decode("utf-8"))
    log = os.open(os.path.join(trial_dir, "launcher.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    try:
        _run_launcher(trial_dir, spec, report_fd)
    except BaseException as exc:  # noqa: BLE001 - last words go to launcher.log
        os.write(2, ("launcher error: %r\n" % (exc,)).encode())
        os._exit(1)


def _fork() -> tuple:
    """A new launcher, waiting for its order: (order fd, report fd)."""
    order_r, order_w = os.pipe()
    report_r, report_w = os.pipe()
    if os.fork() == 0:
        try:
            os.close(order_w)
            os.close(report_r)
            _child(order_r, report_w)
        finally:
            os._exit(0)
    os.close(order_r)
    os.close(report_w)
    return order_w, report_r


def _hand(launcher: tuple, trial_dir: str, spec: dict) -> int:
    """Give ``launcher`` its trial; its report fd, or raises OSError if it is gone."""
    order_fd, report_fd = launcher
    try:
        data = json.dumps([trial_dir, spec]).encode("utf-8")
        while data:
            data = data[os.write(order_fd, data):]
    except OSError:
        os.close(report_fd)
        raise
    finally:
        os.close(order_fd)
    return report_fd


def fork_launcher(trial_dir: str, spec: dict) -> int:
    """Start the trial's launcher (the spare when there is one); returns the pipe its pid
    info comes back on (:func:`launcher_report`)."""
    _WANTED[0] = True
    if _SPARE:
        try:
            return _hand(_SPARE.pop(), trial_dir, spec)
        except OSError:  # the spare died (killed from outside): fork one now
            pass
    return _hand(_fork(), trial_dir, spec)


def replenish() -> None:
    """Fork the next spare once this agent launches trials (after an answer is sent)."""
    if _WANTED[0] and not _SPARE:
        _SPARE.append(_fork())


def discard() -> None:
    """Let the spare go (it reads end-of-file and exits): the agent is done."""
    while _SPARE:
        order_fd, report_fd = _SPARE.pop()
        os.close(order_fd)
        os.close(report_fd)


def launcher_report(trial_dir: str, read_fd: int) -> dict:
    """The pid info the launcher started by :func:`fork_launcher` sends once the trial runs."""
    chunks = []
    try:
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"}"):
                break
    finally:
        os.close(read_fd)
    raw = b"".join(chunks)
    if not raw:
        raise RuntimeError("the launcher died before starting the trial; see %s/launcher.log"
                           % trial_dir)
    info = json.loads(raw.decode())
    if "error" in info:
        raise RuntimeError("cannot start the trial: %s" % info["error"])
    return info


def launch(trial_dir: str, spec: dict) -> dict:
    """Start the trial detached and return its pid info."""
    return launcher_report(trial_dir, fork_launcher(trial_dir, spec))
