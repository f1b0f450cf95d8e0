"""What the Slurm backend reports: a job's poll result as the controller's typed TrialPoll.

Pure functions, no I/O. The mapping (docs/slurm.md, "States"):

* PENDING: ``RunState.QUEUED`` with squeue's reason (``queued in Slurm (Resources)``); the
  controller keeps the trial RUNNING in its book (it holds a job slot) with that reason as
  its message and no start time, and the view shows it as WAITING with the reason.
* RUNNING: ``RunState.RUNNING``, started (time, job id) from the launcher's pid.json.
* COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY: ``RunState.EXITED`` with Slurm's message.
* CANCELLED: ``RunState.EXITED`` with ``ExitInfo.cancelled``.
* NODE_FAIL, PREEMPTED, BOOT_FAIL, forgotten: ``RunState.LOST`` (re-queued by the controller).
"""

from __future__ import annotations

import re

from remotetune.backends._base import (
    TIMEOUT_REASON,
    ExitInfo,
    LaunchResult,
    RunState,
    TrialHandle,
    TrialPoll,
)
from remotetune.backends.slurm._jobs import JobPhase
from remotetune.backends.slurm._ops import JobPollResult
from remotetune.model import TrialStatus

_GPU_GRES = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")


def max_gpus(sinfo_stdout: str) -> int | None:
    """The most GPUs one node offers in ``sinfo --format=%G`` output; None: not known."""
    best: int | None = None
    for line in sinfo_stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        counts = [int(m) for m in _GPU_GRES.findall(line)]
        best = max([best or 0, *counts])
    return best


def trial_poll(host: str, handle: TrialHandle, result: JobPollResult) -> TrialPoll:
    """One job's poll result as the controller's TrialPoll."""
    status = result.status
    started = _started(host, handle, result)
    lines, offset = result.lines, result.offset
    if status.phase is JobPhase.QUEUED:
        return TrialPoll(handle.trial_id, lines, offset, RunState.QUEUED, reason=status.message)
    if status.phase is JobPhase.RUNNING or result.more:
        # more metric lines wait: read them all before the job counts as ended
        return TrialPoll(handle.trial_id, lines, offset, RunState.RUNNING, started=started)
    if status.phase is JobPhase.LOST:
        return TrialPoll(handle.trial_id, lines, offset, RunState.LOST, started=started,
                         reason=status.message)
    ended = _float((result.exit or {}).get("ended"))
    if status.phase is JobPhase.CANCELLED:
        info = ExitInfo(status.exit_code, status.signal, ended, status.message, cancelled=True)
    else:
        info = _exit_info(status.trial_status, status.exit_code, status.signal, ended,
                          status.message)
    return TrialPoll(handle.trial_id, lines, offset, RunState.EXITED, info, started)


def _exit_info(trial_status: TrialStatus, code: int | None, signal: int | None,
               ended: float | None, message: str | None) -> ExitInfo:
    if trial_status is TrialStatus.SUCCEEDED:
        return ExitInfo(0, None, ended)
    if trial_status is TrialStatus.EARLY_STOPPED:
        return ExitInfo(code, signal, ended, TIMEOUT_REASON)
    # FAILED: never code 0 (a TIMEOUT or OUT_OF_MEMORY job may end with exit code 0)
    return ExitInfo(None if code == 0 else code, signal, ended, message)


def _started(host: str, handle: TrialHandle, result: JobPollResult) -> LaunchResult | None:
    pid = result.pid
    if not pid or pid.get("started") is None:
        return None
    return LaunchResult(handle, float(pid["started"]), handle.ref)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
