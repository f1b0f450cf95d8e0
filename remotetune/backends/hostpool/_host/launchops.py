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
    from remotetune._host import gpulocks, pollops  # type: ignore[attr-defined]
except ImportError:
    from remotetune.backends.hostpool._host import gpulocks, pollops


def _agent():
    """agent.py's helpers; imported late (agent.py imports this module while loading)."""
    try:
        from remotetune._host import agent  # type: ignore[attr-defined]
    except ImportError:
        from remotetune.backends.hostpool._host import agent
    return agent


def _prepare(workdir: str, req: dict):
    """Write the trial's files and reserve its GPUs: (trial_dir, launch spec)."""
    agent = _agent()
    trial_dir = agent._abspath(workdir, req["trial_dir"])
    os.makedirs(trial_dir, exist_ok=True)
    pollops.forget(trial_dir)  # a pid record read before this launch is not its own
    for name, text in req.get("files", {}).items():
        agent.write_atomic(os.path.join(trial_dir, name), text.encode("utf-8"))
    with open(os.path.join(trial_dir, "launch.json"), "rb") as f:
        spec = json.loads(f.read().decode("utf-8"))
    if os.path.exists(os.path.join(trial_dir, "pid.json")):
        raise RuntimeError("trial already launched in %s" % trial_dir)
    if spec.get("reserve"):  # its GPUs, shared with other controllers (gpulocks.py)
        spec["gpu_locks"] = gpulocks.reserve(
            workdir, dict(spec["reserve"], dir=trial_dir), agent._pid_alive,
            agent._same_process, agent._start_ticks(os.getpid()))
    return trial_dir, spec


def op_launch(workdir: str, req: dict, payload):
    trial_dir, spec = _prepare(workdir, req)
    try:
        return _agent().launch(trial_dir, spec)
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
            forked.append((len(results), trial_dir, spec, agent.fork_launcher(trial_dir, spec)))
            results.append(None)
        except Exception as exc:  # noqa: BLE001 - this trial's outcome, the others go on
            gpulocks.release(spec.get("gpu_locks", ()))
            results.append(agent.failure_answer(exc))
    for index, trial_dir, spec, read_fd in forked:
        try:
            results[index] = {"ok": True, "info": agent.launcher_report(trial_dir, read_fd)}
        except Exception as exc:  # noqa: BLE001
            gpulocks.release(spec.get("gpu_locks", ()))
            results[index] = agent.failure_answer(exc)
    return {"results": results}


OPS = {"launch": op_launch, "launches": op_launches}
