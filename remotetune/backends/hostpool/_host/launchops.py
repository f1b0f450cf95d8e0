"""The agent's launch ops: ``launch`` (one trial) and ``launches`` (several in one request).

Standard library, Python 3.8 (shipped with the agent). ``launches`` forks every launcher
first and then reads each one's report, so the trials of one request start side by side
(a host's first fill, or several slots freed at once) instead of one launch round trip after
another. Each trial has its own outcome: one that cannot start fails alone.
"""

from __future__ import annotations

import json
import os

try:  # on hosts: the shipped bundle; in the controller's own tree: the package
    from remotetune._host import gpulocks, launcher, pollops  # type: ignore[attr-defined]
except ImportError:
    from remotetune.backends.hostpool._host import gpulocks, launcher, pollops


_agent = launcher.agent_module  # agent.py's helpers, imported late


def _prepare(workdir: str, req: dict):
    """Write the trial's files and reserve its GPUs: (trial_dir, launch spec).

    A trial directory that has a pid record was launched already: it is refused before
    anything in it is touched. The files are written in place, not through a temporary
    name: nothing reads them before the launcher starts the trial.
    """
    agent = _agent()
    trial_dir = agent._abspath(workdir, req["trial_dir"])
    os.makedirs(trial_dir, exist_ok=True)
    if os.path.exists(os.path.join(trial_dir, "pid.json")):
        raise RuntimeError("trial already launched in %s" % trial_dir)
    pollops.forget(trial_dir)  # a pid record read before this launch is not its own
    files = req.get("files", {})
    for name, text in files.items():
        fd = os.open(os.path.join(trial_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o644)
        try:
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
    if "launch.json" in files:
        spec = json.loads(files["launch.json"])
    else:  # written before, by an earlier request
        with open(os.path.join(trial_dir, "launch.json"), "rb") as f:
            spec = json.loads(f.read().decode("utf-8"))
    if spec.get("reserve"):  # its GPUs, shared with other controllers (gpulocks.py)
        spec["gpu_locks"] = gpulocks.reserve(
            workdir, dict(spec["reserve"], dir=trial_dir), agent._pid_alive,
            agent._same_process, agent._start_ticks(os.getpid()))
    return trial_dir, spec


def op_launch(workdir: str, req: dict, payload):
    trial_dir, spec = _prepare(workdir, req)
    try:
        return launcher.launch(trial_dir, spec)
    except BaseException:
        gpulocks.release(spec.get("gpu_locks", ()))
        raise


def op_launches(workdir: str, req: dict, payload):
    """``{"trials": [{"trial_dir", "files"}, ...]}`` -> ``{"results": [...]}`` in the same
    order, each ``{"ok": true, "info": pid info}`` or ``{"ok": false, "error", "kind",
    "details"}``."""
    agent = _agent()
    results: list = []
    forked = []  # (index, trial_dir, spec, the launcher's report pipe)
    for item in req["trials"]:
        spec: dict = {}
        try:
            trial_dir, spec = _prepare(workdir, item)
            forked.append((len(results), trial_dir, spec, launcher.fork_launcher(trial_dir, spec)))
            results.append(None)
        except Exception as exc:  # noqa: BLE001 - this trial's outcome, the others go on
            gpulocks.release(spec.get("gpu_locks", ()))
            results.append(agent.failure_answer(exc))
    for index, trial_dir, spec, read_fd in forked:
        try:
            results[index] = {"ok": True, "info": launcher.launcher_report(trial_dir, read_fd)}
        except Exception as exc:  # noqa: BLE001
            gpulocks.release(spec.get("gpu_locks", ()))
            results[index] = agent.failure_answer(exc)
    return {"results": results}


OPS = {"launch": op_launch, "launches": op_launches}
