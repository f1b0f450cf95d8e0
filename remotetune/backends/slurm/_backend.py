"""Slurm clusters as a :class:`~remotetune.backends.Backend`: each trial is one sbatch job.

One SSH session and agent per cluster's login node, on one worker thread (the host pool's
:class:`HostWorker`, kept by the base both backends share, :class:`WorkerBackend`:
connecting, reconnecting, broken and cordoned clusters, outcomes). A cluster has
``maxJobs`` job slots (queued or running at once); placing a trial takes a slot, launching
submits its job (the handle's ``ref`` is the job id), ``tick`` polls all of a cluster's
jobs in ONE agent call (one squeue) at the poll cadence, ``kill`` is scancel. Resume
reattaches by the job id stored in the trial's ``pid``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from remotetune import slurm_commands
from remotetune.backends._base import (
    LaunchResult,
    LaunchSpec,
    OpenSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    RunState,
    TrialHandle,
    TrialPoll,
)
from remotetune.backends.hostpool._launch import trial_files
from remotetune.backends.hostpool._session import HostSession
from remotetune.backends.hostpool._worker_backend import WorkerBackend
from remotetune.backends.hostpool._workers import Completion, HostStatus, HostWorker, Op
from remotetune.backends.slurm._ops import JobPollItem, cancel_jobs, poll_jobs, submit_job
from remotetune.backends.slurm._polls import max_gpus, trial_poll
from remotetune.errors import SlurmError
from remotetune.model import EventLevel, HostSpec, HostState, Placement, SlurmSpec, TrialRecord


class _Cluster:
    """One cluster's bookkeeping on the controller's thread."""

    def __init__(self, worker: HostWorker, max_jobs: int) -> None:
        self.worker = worker
        self.max_jobs = max_jobs
        self.jobs: set[str] = set()  # trial ids holding a job slot
        self.max_gpus: int | None = None  # the most GPUs a node offers (sinfo), if known
        self.reasons: dict[str, str] = {}  # trial id -> why its job is still queued
        self.kills_pending = 0  # scancels submitted whose outcome is not handled yet

    @property
    def slurm(self) -> SlurmSpec:
        assert self.worker.spec.slurm is not None
        return self.worker.spec.slurm

    def summary(self) -> str | None:
        if not self.reasons:
            return None
        counts: dict[str, int] = {}
        for reason in self.reasons.values():
            counts[reason] = counts.get(reason, 0) + 1
        return "; ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


class SlurmBackend(WorkerBackend):
    name = "slurm"
    fatal_errors = (*WorkerBackend.fatal_errors, SlurmError)
    poll_what = "polling Slurm"

    def __init__(
        self,
        hosts: Sequence[HostSpec],
        *,
        trial_gpu_number: int | None,
        default_max_jobs: int,
        poll_interval: float,
        host_state_interval: float = 1.0,
        session_factory: Callable[..., HostSession] = HostSession,
    ) -> None:
        super().__init__([h for h in hosts if h.slurm is not None],
                         host_state_interval=host_state_interval,
                         session_factory=session_factory)
        self._gpus = trial_gpu_number or 0
        self._default_max_jobs = default_max_jobs
        self._poll_interval = max(poll_interval, 2.0)  # a modest squeue cadence
        self.clusters: dict[str, _Cluster] = {}

    # ------------------------------------------------------------------ lifecycle

    def _new_session(self, host: HostSpec) -> HostSession:
        return self._session_factory(host)

    def _added(self, worker: HostWorker) -> None:
        assert worker.spec.slurm is not None
        self.clusters[worker.name] = _Cluster(
            worker, worker.spec.slurm.max_jobs or self._default_max_jobs)

    def _connect_work(self, worker: HostWorker, spec: OpenSpec) -> Callable[[], Any]:
        manifest, objects, session = spec.manifest, spec.objects_dir, worker.session
        assert worker.spec.slurm is not None
        sinfo = slurm_commands.sinfo_gres_argv(worker.spec.slurm.partition)

        def connect() -> tuple[Any, str, int | None]:
            info = session.open()
            snapshot = session.sync(manifest, objects)
            assert session.agent is not None
            answer = session.agent.call("exec", argv=sinfo, timeout=60)
            gpus = max_gpus(answer["stdout"]) if answer.get("code") == 0 else None
            return info, snapshot, gpus

        return connect

    def set_concurrency(self, concurrency: int) -> None:
        """A cluster without `maxJobs` follows trialConcurrency (``remotetune update``)."""
        self._default_max_jobs = concurrency
        for cluster in self.clusters.values():
            if cluster.slurm.max_jobs is None:
                cluster.max_jobs = concurrency

    def _close_wait(self, worker: HostWorker) -> bool:
        # A scancel still queued (the controller stopped trials at maxExperimentDuration
        # and ended) is sent before the session closes: jobs would otherwise run on.
        return self.clusters[worker.name].kills_pending > 0

    # ------------------------------------------------------------------ placement

    def _too_few_gpus(self, cluster: _Cluster) -> bool:
        return cluster.max_gpus is not None and self._gpus > cluster.max_gpus

    def impossible(self) -> str | None:
        known = [c for c in self.clusters.values() if c.max_gpus is not None]
        if not known or len(known) < len(self.clusters):
            return None
        if all(self._too_few_gpus(c) for c in known):
            most = max(c.max_gpus or 0 for c in known)
            return (f"trialGpuNumber is {self._gpus} but no Slurm node offers more than "
                    f"{most} GPU(s) (sinfo)")
        return None

    def place(self, trial_id: str) -> PlaceResult:
        reasons = []
        for name, cluster in self.clusters.items():
            worker = cluster.worker
            if worker.status is not HostStatus.READY or worker.cordoned_until:
                reasons.append(f"{name}: {worker.message or worker.status.value.lower()}")
            elif self._too_few_gpus(cluster):
                reasons.append(f"{name}: no node has {self._gpus} GPUs")
            elif len(cluster.jobs) >= cluster.max_jobs:
                reasons.append(f"{name}: maxJobs reached ({len(cluster.jobs)}/"
                               f"{cluster.max_jobs} jobs queued or running)")
            else:
                cluster.jobs.add(trial_id)
                return PlaceResult(Placement(name))
        ever = not all(self._too_few_gpus(c) for c in self.clusters.values())
        return PlaceResult(None, "; ".join(reasons) or None, ever)

    def reattach(self, trial: TrialRecord) -> TrialHandle | None:
        cluster = self.clusters.get(trial.host or "")
        if cluster is None or trial.host is None:
            return None
        cluster.jobs.add(trial.id)
        return TrialHandle(trial.id, trial.host, trial.pid)  # pid: the job id

    def release(self, trial_id: str) -> None:
        for cluster in self.clusters.values():
            cluster.jobs.discard(trial_id)
            cluster.reasons.pop(trial_id, None)

    # ------------------------------------------------------------------ trials

    def launch(self, spec: LaunchSpec) -> None:
        assert self._spec is not None
        cluster = self.clusters[spec.placement.host]
        worker, trial_id = cluster.worker, spec.trial.id
        assert worker.snapshot_dir is not None
        relative = self._relative_dir(trial_id)
        files = trial_files(worker.session, self._spec.experiment_id, spec,
                            worker.session.absolute(relative),
                            worker.session.absolute(worker.snapshot_dir))
        submit = functools.partial(
            _submit, worker.session, trial_id, relative, files, cluster.slurm,
            slurm_commands.job_name(self._spec.experiment_id, trial_id), self._gpus,
            slurm_commands.time_limit_seconds(cluster.slurm, spec.max_duration))
        worker.submit(Op.LAUNCH, submit, token=trial_id)

    def kill(self, handle: TrialHandle, grace: float) -> bool:
        worker = self._ready_worker(handle.host)
        if handle.ref is None or worker is None:
            return False
        self.clusters[worker.name].kills_pending += 1
        worker.submit(Op.KILL, cancel_jobs, worker.session, [str(handle.ref)],
                      token=handle.trial_id)
        return True

    def _kill_group(self, worker: HostWorker, handles: list[TrialHandle], grace: float) -> None:
        worker.submit(Op.KILL, _cancel_and_wait, worker.session, [str(h.ref) for h in handles],
                      grace + 60.0)

    def fetch_tails(self, trial_id: str, host: str) -> None:
        worker = self.workers[host]
        worker.submit(Op.TAILS, worker.session.tails, self._relative_dir(trial_id),
                      token=trial_id)

    # ------------------------------------------------------------------ periodic work

    def tick(self, now: float, running: Sequence[PollRequest]) -> None:
        by_host = self._by_host(running)
        for name, worker in self.workers.items():
            self._reconnect(worker, now)
            requests = by_host.get(name, [])
            if (worker.status is HostStatus.READY and requests and not worker.poll_in_flight
                    and now >= worker.next_poll_at):
                worker.poll_in_flight = True
                worker.next_poll_at = now + self._poll_interval
                items = [(r.handle, self._relative_dir(r.handle.trial_id), r.offset)
                         for r in requests]
                worker.submit(Op.POLL, _poll, worker.session, name, items)

    # ------------------------------------------------------------------ outcomes

    def _lost_reports(self, worker: HostWorker, item: Completion) -> list[Report]:
        if item.op is Op.KILL:
            self.clusters[worker.name].kills_pending -= item.token is not None
            return [Report(ReportKind.KILLED, worker.name, item.token,
                           message=str(item.error), level=EventLevel.WARNING)]
        return super()._lost_reports(worker, item)

    def _connected(self, worker: HostWorker, result: Any, now: float) -> list[Report]:
        info, snapshot, gpus = result
        was_down = self._mark_ready(worker, snapshot)
        self.clusters[worker.name].max_gpus = gpus
        most = "" if gpus is None else f", at most {gpus} GPU(s) a node"
        return [Report(ReportKind.HOST_READY, worker.name,
                       message=f"{worker.name} back: {info.hostname}" if was_down else
                               f"{worker.name} ready: Slurm login node {info.hostname}, "
                               f"Python {info.python}{most}")]

    def _on_poll(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        reports = super()._on_poll(worker, item, now)
        if item.error is None:
            reasons = self.clusters[worker.name].reasons
            for poll in reports[0].polls:
                if poll.state is RunState.QUEUED and poll.reason:
                    reasons[poll.trial_id] = poll.reason
                else:
                    reasons.pop(poll.trial_id, None)
        return reports

    def _on_kill(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        self.clusters[worker.name].kills_pending -= item.token is not None  # kill_all's: none
        return super()._on_kill(worker, item, now)

    # ------------------------------------------------------------------ host states

    def host_state(self, experiment_id: str, host: str, now: float) -> HostState:
        cluster = self.clusters[host]
        worker = cluster.worker
        self._state_at[host] = now
        return HostState(
            experiment_id=experiment_id, host=host,
            reachable=worker.status is HostStatus.READY,
            slots=cluster.max_jobs, running=len(cluster.jobs),
            message=worker.message or cluster.summary(), updated_at=now)


# ---------------------------------------------------------------------- worker-thread work


def _submit(session: HostSession, trial_id: str, trial_dir: str, files: dict[str, str],
            spec: SlurmSpec, job_name: str, gpus: int, time_limit: float | None) -> LaunchResult:
    job = submit_job(session, trial_dir=trial_dir, files=files, spec=spec, job_name=job_name,
                     gpus=gpus, time_limit=time_limit)
    handle = TrialHandle(trial_id, session.name, int(job.job_id))
    return LaunchResult(handle, None, int(job.job_id))


def _poll(session: HostSession, host: str,
          items: Sequence[tuple[TrialHandle, str, int]]) -> list[TrialPoll]:
    """One agent call (one squeue) for every job; a trial without a job id is UNKNOWN."""
    known = [(h, d, o) for h, d, o in items if h.ref is not None]
    polls = [TrialPoll(h.trial_id, (), o, RunState.UNKNOWN) for h, d, o in items
             if h.ref is None]
    if known:
        snapshot = poll_jobs(session, [JobPollItem(h.trial_id, str(h.ref), d, o)
                                       for h, d, o in known])
        polls += [trial_poll(host, h, r) for (h, _, _), r in zip(known, snapshot.results,
                                                                  strict=True)]
    return polls


def _cancel_and_wait(session: HostSession, job_ids: list[str], timeout: float) -> None:
    """scancel the jobs, then wait (up to ``timeout``) until squeue shows none of them."""
    cancel_jobs(session, job_ids)
    assert session.agent is not None
    deadline = time.monotonic() + timeout
    argv = slurm_commands.squeue_active_argv(job_ids)
    while time.monotonic() < deadline:
        answer = session.agent.call("exec", argv=argv, timeout=60)
        if answer.get("code") != 0 or not answer["stdout"].strip():
            return
        time.sleep(1.0)
