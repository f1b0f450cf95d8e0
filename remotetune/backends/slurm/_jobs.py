"""Slurm's answers, read: squeue, sacct and scontrol output into typed job states.

Pure functions over the text the agent's ``slurm_poll`` op returns (see
``remotetune/backends/hostpool/_host/slurmops.py``); no I/O.

The mapping of Slurm job states (``JobPhase``; the trial status the controller gives it)::

    PENDING (and CONFIGURING, REQUEUED, ...)   QUEUED     WAITING, with squeue's reason
    RUNNING (and COMPLETING, SUSPENDED, ...)   RUNNING    RUNNING
    COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY  EXITED     SUCCEEDED / FAILED / EARLY_STOPPED
    NODE_FAIL, PREEMPTED, BOOT_FAIL            LOST       LOST (re-queued as a new attempt)
    CANCELLED                                  CANCELLED  USER_CANCELED
    (no longer known, no exit file)            LOST
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from remotetune.model import TrialStatus

ACCOUNTING_DISABLED = "accounting storage is disabled"


class JobPhase(str, enum.Enum):
    QUEUED = "queued"  # waiting for resources, priority, a dependency...
    RUNNING = "running"
    EXITED = "exited"  # ended on its own (any exit code) or at its time limit
    LOST = "lost"  # the node failed, the job was preempted, or Slurm forgot it
    CANCELLED = "cancelled"  # scancel (by remotetune, the user or an admin)


_QUEUED = frozenset(("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                     "RESV_DEL_HOLD", "RESIZING"))
_RUNNING = frozenset(("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                      "STAGE_OUT", "UPDATE_DB"))
_EXITED = frozenset(("COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "DEADLINE",
                     "SPECIAL_EXIT"))
_LOST = frozenset(("NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED"))


@dataclass(frozen=True)
class JobEntry:
    """One job as squeue, sacct or scontrol shows it."""

    job_id: str
    state: str  # Slurm's state name: PENDING, RUNNING, TIMEOUT, ...
    reason: str | None = None  # None for Slurm's "None"
    exit_code: int | None = None  # the batch script's exit code
    signal: int | None = None  # the signal that ended it, if any


@dataclass(frozen=True)
class JobStatus:
    """What a job's state means for its trial."""

    job_id: str
    phase: JobPhase
    state: str  # Slurm's state, or "" when Slurm no longer knows the job
    reason: str | None  # squeue's reason (pending) or Slurm's (finished)
    exit_code: int | None
    signal: int | None
    message: str | None  # for the view and the trial record
    trial_status: TrialStatus

    @property
    def finished(self) -> bool:
        return self.phase not in (JobPhase.QUEUED, JobPhase.RUNNING)


def phase_of(state: str) -> JobPhase | None:
    """The phase of a Slurm state name; None for a name this table does not know."""
    base = state.split()[0].rstrip("+") if state.strip() else ""
    if base in _QUEUED:
        return JobPhase.QUEUED
    if base in _RUNNING:
        return JobPhase.RUNNING
    if base in _EXITED:
        return JobPhase.EXITED
    if base in _LOST:
        return JobPhase.LOST
    if base == "CANCELLED":
        return JobPhase.CANCELLED
    return None


def _reason(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "None", "(null)") else text


def _wait_status(text: str) -> tuple[int | None, int | None]:
    """squeue's ``exit_code`` field: a raw wait status (768: exit 3; 15: signal 15)."""
    text = text.strip()
    if not text.lstrip("-").isdigit():
        return None, None
    status = int(text)
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, None


def _code_signal(text: str) -> tuple[int | None, int | None]:
    """sacct's and scontrol's ``ExitCode=3:0``: exit code, then signal (0: none)."""
    code, _, sig = text.strip().partition(":")
    if not code.isdigit():
        return None, None
    signal = int(sig) if sig.isdigit() and int(sig) else None
    return int(code), signal


def parse_squeue(stdout: str) -> dict[str, JobEntry]:
    """``squeue --noheader --Format=JobID:|,State:|,Reason:|,exit_code:|`` by job id."""
    jobs: dict[str, JobEntry] = {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 3 or not fields[0].strip():
            continue
        exit_code, signal = _wait_status(fields[3]) if len(fields) > 3 else (None, None)
        job_id = fields[0].strip()
        jobs[job_id] = JobEntry(job_id, fields[1].strip(), _reason(fields[2]), exit_code, signal)
    return jobs


def parse_sacct(stdout: str) -> dict[str, JobEntry]:
    """``sacct --noheader --parsable2 --allocations --format=JobIDRaw,State,ExitCode,Reason``."""
    jobs: dict[str, JobEntry] = {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue  # steps (123.batch) are left out by --allocations; skip any anyway
        exit_code, signal = _code_signal(fields[2])
        state = fields[1].strip().split(" ")[0]  # "CANCELLED by 1000"
        reason = _reason(fields[3]) if len(fields) > 3 else None
        jobs[fields[0].strip()] = JobEntry(fields[0].strip(), state, reason, exit_code, signal)
    return jobs


def parse_scontrol_job(stdout: str) -> JobEntry | None:
    """``scontrol --oneliner show job ID`` (or the multi-line form); None if no job."""
    fields: dict[str, str] = {}
    for word in stdout.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    if "JobId" not in fields or "JobState" not in fields:
        return None
    exit_code, signal = _code_signal(fields.get("ExitCode", ""))
    return JobEntry(fields["JobId"], fields["JobState"], _reason(fields.get("Reason", "")),
                    exit_code, signal)


def accounting_disabled(stderr: str) -> bool:
    """sacct's answer on a cluster without slurmdbd."""
    return ACCOUNTING_DISABLED in stderr.lower()


def job_status(
    job_id: str, entry: JobEntry | None, exit_file: Mapping[str, Any] | None
) -> JobStatus:
    """A job's status from Slurm's entry and the launcher's exit.json (either may be missing).

    Slurm's state decides; the exit file refines the message (and is the only record of a
    job that Slurm has forgotten: past MinJobAge, without accounting).
    """
    if entry is None:
        if exit_file is not None:
            code = _int(exit_file.get("code"))
            return _exited(job_id, "", None, code, _int(exit_file.get("signal")), exit_file)
        return JobStatus(job_id, JobPhase.LOST, "", None, None, None,
                         "Slurm no longer knows the job and it left no exit record",
                         TrialStatus.LOST)
    phase = phase_of(entry.state)
    if phase is None:
        phase = JobPhase.RUNNING  # an unknown, newer state name: wait for a known one
    if phase is JobPhase.QUEUED:
        message = f"queued in Slurm ({entry.reason})" if entry.reason else "queued in Slurm"
        return JobStatus(job_id, phase, entry.state, entry.reason, None, None, message,
                         TrialStatus.WAITING)
    if phase is JobPhase.RUNNING:
        return JobStatus(job_id, phase, entry.state, entry.reason, None, None, None,
                         TrialStatus.RUNNING)
    if phase is JobPhase.LOST:
        what = {"NODE_FAIL": "its node failed", "PREEMPTED": "it was preempted",
                "BOOT_FAIL": "its node failed to boot"}.get(entry.state, entry.state.lower())
        return JobStatus(job_id, phase, entry.state, entry.reason, entry.exit_code,
                         entry.signal, f"Slurm job {job_id}: {what}", TrialStatus.LOST)
    if phase is JobPhase.CANCELLED:
        return JobStatus(job_id, phase, entry.state, entry.reason, entry.exit_code,
                         entry.signal, f"Slurm job {job_id} was cancelled",
                         TrialStatus.USER_CANCELED)
    code, signal = entry.exit_code, entry.signal
    if exit_file is not None and exit_file.get("code") is not None:
        code, signal = _int(exit_file.get("code")), _int(exit_file.get("signal"))
    return _exited(job_id, entry.state, entry.reason, code, signal, exit_file)


def _exited(job_id: str, state: str, reason: str | None, code: int | None,
            signal: int | None, exit_file: Mapping[str, Any] | None) -> JobStatus:
    own = exit_file.get("reason") if exit_file else None
    if state == "TIMEOUT":
        status, message = TrialStatus.FAILED, f"Slurm job {job_id} reached its time limit"
    elif state == "OUT_OF_MEMORY":
        status, message = TrialStatus.FAILED, f"Slurm job {job_id} ran out of memory"
    elif own == "timeout":
        status, message = TrialStatus.EARLY_STOPPED, "ran past maxTrialDuration"
    elif code == 0 and state in ("", "COMPLETED"):
        status, message = TrialStatus.SUCCEEDED, None
    else:
        status = TrialStatus.FAILED
        if own:
            message = str(own)
        elif code == 254:
            message = "setup failed"
        elif code is None:
            message = f"killed by signal {signal}" if signal else f"Slurm job {job_id} failed"
        else:
            message = f"exited with code {code}" + (f" (signal {signal})" if signal else "")
    return JobStatus(job_id, JobPhase.EXITED, state, reason, code, signal, message, status)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
