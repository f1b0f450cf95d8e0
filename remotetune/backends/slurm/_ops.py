"""The Slurm ops of a login node's agent, called through an open :class:`HostSession`.

Each function is one agent round trip. ``submit_job`` writes the trial's files and its
job script and runs sbatch; ``poll_jobs`` runs ONE squeue call for every job (plus sacct,
or scontrol for each job squeue no longer shows) and reads each trial's new metric lines;
``cancel_jobs`` runs one scancel. They report what Slurm says; they decide nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remotetune import slurm_commands
from remotetune.backends.hostpool._agent_client import AgentClient, AgentError
from remotetune.backends.hostpool._session import METRIC_LINE_LIMIT, HostSession
from remotetune.backends.slurm._jobs import (
    JobEntry,
    JobStatus,
    accounting_disabled,
    job_status,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
)
from remotetune.errors import RemoteSetupError, SlurmError
from remotetune.metrics import skipped_line
from remotetune.model import SlurmSpec


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    cluster: str | None  # from `sbatch --parsable` on a federation, else None
    existing: bool  # the trial dir already had a job (a resubmit after a crash): that one


@dataclass(frozen=True)
class JobPollItem:
    trial_id: str
    job_id: str
    trial_dir: str  # relative to the login node's workdir, as HostSession.trial_dir gives it
    offset: int  # bytes of metrics.jsonl already read


@dataclass(frozen=True)
class JobPollResult:
    trial_id: str
    status: JobStatus
    lines: tuple[str, ...]  # new whole lines of metrics.jsonl
    offset: int
    more: bool  # more metric lines wait (poll again before treating the job as ended)
    pid: dict[str, Any] | None  # the launcher's pid.json: hostname, job_id, cuda devices
    exit: dict[str, Any] | None  # the launcher's exit.json
    exists: bool  # the trial dir is there


@dataclass(frozen=True)
class QueueSnapshot:
    results: tuple[JobPollResult, ...]
    accounting: bool | None  # sacct answered (True), is disabled (False), or was not asked
    time: float  # the login node's clock


def _agent(session: HostSession) -> AgentClient:
    if session.agent is None:
        raise RemoteSetupError(session.name, "not connected")
    return session.agent


def submit_job(
    session: HostSession,
    *,
    trial_dir: str,
    files: Mapping[str, str],
    spec: SlurmSpec,
    job_name: str,
    gpus: int,
    time_limit: float | None,
) -> SubmittedJob:
    """Write ``files`` (launch.json, parameters.json, run.sh) and job.sh, then sbatch.

    ``files`` are what :func:`remotetune.backends.hostpool._session.launch_files` makes;
    ``time_limit`` in seconds (see :func:`remotetune.slurm_commands.time_limit_seconds`).
    """
    absolute = session.absolute(trial_dir)
    script = slurm_commands.job_script(python=session.python, lib_dir=session.lib_dir,
                                       trial_dir=absolute, setup=spec.setup)
    argv = slurm_commands.sbatch_argv(spec, trial_dir=absolute, job_name=job_name, gpus=gpus,
                                      time_limit=time_limit)
    try:
        answer = _agent(session).call("slurm_submit", trial_dir=trial_dir, files=dict(files),
                                      script=script, argv=argv, timeout=120)
    except AgentError as exc:
        raise SlurmError(session.name, exc.message,
                         hint="check the `slurm:` keys of this host in machines.yml "
                         "(partition, account, qos, sbatchArgs)") from None
    return SubmittedJob(str(answer["job_id"]), answer.get("cluster"), bool(answer["existing"]))


def poll_jobs(
    session: HostSession, items: Sequence[JobPollItem], max_bytes: int = 1 << 20
) -> QueueSnapshot:
    """Every job's state and new metric lines, in one agent call (one squeue inside).

    Raises :class:`SlurmError` when squeue itself fails (slurmctld down): no job is then
    reported lost on a guess.
    """
    answer = _agent(session).call(
        "slurm_poll",
        jobs=[{"job_id": i.job_id, "dir": i.trial_dir, "offset": i.offset} for i in items],
        max_bytes=max_bytes, line_limit=METRIC_LINE_LIMIT, timeout=240)
    squeue = answer["squeue"]
    if squeue["code"] != 0:
        raise SlurmError(session.name, f"squeue failed (exit {squeue['code']}): "
                         f"{(squeue['stderr'] or squeue['stdout']).strip()[-500:]}")
    entries, accounting = finished_entries(answer.get("sacct"), answer.get("scontrol") or {})
    entries = {**entries, **parse_squeue(squeue["stdout"])}
    results = []
    for item, raw in zip(items, answer["trials"], strict=True):
        status = job_status(item.job_id, entries.get(item.job_id), raw["exit"])
        # over-long lines the agent skipped: marker lines the metric decoder warns about
        skipped = tuple(skipped_line(size, int(raw.get("line_limit", METRIC_LINE_LIMIT)))
                        for size in raw.get("skipped") or ())
        results.append(JobPollResult(
            trial_id=item.trial_id, status=status, lines=tuple(raw["lines"]) + skipped,
            offset=int(raw["offset"]), more=bool(raw["more"]), pid=raw["pid"],
            exit=raw["exit"], exists=bool(raw["exists"])))
    return QueueSnapshot(tuple(results), accounting, float(answer["time"]))


def finished_entries(
    sacct: Mapping[str, Any] | None, scontrol: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, JobEntry], bool | None]:
    """Jobs squeue no longer shows, from sacct's or scontrol's raw results."""
    entries: dict[str, JobEntry] = {}
    accounting: bool | None = None
    if sacct is not None:
        if sacct["code"] == 0:
            accounting = True
            entries.update(parse_sacct(sacct["stdout"]))
        elif accounting_disabled(sacct["stderr"]):
            accounting = False
    for result in scontrol.values():
        if result["code"] == 0:
            entry = parse_scontrol_job(result["stdout"])
            if entry is not None:
                entries[entry.job_id] = entry
    return entries, accounting


def cancel_jobs(session: HostSession, job_ids: Sequence[str]) -> None:
    """scancel the jobs (SIGTERM now, SIGKILL after the cluster's KillWait)."""
    try:
        _agent(session).call("slurm_cancel", job_ids=list(job_ids), timeout=120)
    except AgentError as exc:
        raise SlurmError(session.name, exc.message) from None
