"""Slurm clusters: trials as sbatch jobs, submitted over SSH through the login node's agent."""

from remotetune.backends.slurm._backend import SlurmBackend
from remotetune.backends.slurm._jobs import (
    JobEntry,
    JobPhase,
    JobStatus,
    accounting_disabled,
    job_status,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
    phase_of,
)
from remotetune.backends.slurm._ops import (
    JobPollItem,
    JobPollResult,
    QueueSnapshot,
    SubmittedJob,
    cancel_jobs,
    poll_jobs,
    submit_job,
)

__all__ = [
    "JobEntry",
    "JobPhase",
    "JobPollItem",
    "JobPollResult",
    "JobStatus",
    "QueueSnapshot",
    "SlurmBackend",
    "SubmittedJob",
    "accounting_disabled",
    "cancel_jobs",
    "job_status",
    "parse_sacct",
    "parse_scontrol_job",
    "parse_squeue",
    "phase_of",
    "poll_jobs",
    "submit_job",
]
