"""Slurm clusters as a :class:`~remotetune.backends.Backend`: each trial is one sbatch job.

One SSH session and agent per cluster's login node, on one worker thread (the host pool's
:class:`HostWorker`). A cluster has ``maxJobs`` job slots (queued or running at once);
placing a trial takes a slot, launching submits its job (the handle's ``ref`` is the job
id), ``tick`` polls all of a cluster's jobs in ONE agent call (one squeue) at the poll
cadence, ``kill`` is scancel. Resume reattaches by the job id stored in the trial's ``pid``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from remotetune import slurm_commands
from remotetune.backends._base import (
    Backend,
    Envelope,
    LaunchResult,
    LaunchSpec,
    OpenSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    RunState,
    Sink,
    TrialHandle,
    TrialPoll,
)
from remotetune.backends.hostpool._launch import trial_files
from remotetune.backends.hostpool._session import HostSession
from remotetune.backends.hostpool._workers import Completion, HostStatus, HostWorker, Op
from remotetune.backends.slurm._ops import JobPollItem, cancel_jobs, poll_jobs, submit_job
from remotetune.backends.slurm._polls import max_gpus, trial_poll
from remotetune.errors import (
    AgentError,
    AuthenticationFailed,
    HostKeyError,
    RemoteSetupError,
    SlurmError,
    SyncError,
    TransportError,
)
from remotetune.model import EventLevel, HostSpec, HostState, Placement, SlurmSpec, TrialRecord

BROKEN_RETRY = 60.0  # seconds between attempts on a cluster that needs the user
CORDON_SECONDS = 30.0  # no new jobs after sbatch refused one
_FATAL = (AuthenticationFailed, HostKeyError, RemoteSetupError, SyncError, SlurmError,
          AgentError)


def _is_connection_error(error: BaseException | None) -> bool:
    return isinstance(error, TransportError) and not isinstance(error, _FATAL)


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


class SlurmBackend(Backend):
    name = "slurm"

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
        self._specs = [h for h in hosts if h.slurm is not None]
        self._gpus = trial_gpu_number or 0
        self._default_max_jobs = default_max_jobs
        self._poll_interval = max(poll_interval, 2.0)  # a modest squeue cadence
        self._state_interval = host_state_interval
        self._session_factory = session_factory
        self._state_at: dict[str, float] = {}
        self.clusters: dict[str, _Cluster] = {}
        self._spec: OpenSpec | None = None
        self._handlers: dict[Op, Callable[[_Cluster, Completion, float], list[Report]]] = {
            Op.CONNECT: self._on_connect, Op.LAUNCH: self._on_launch, Op.POLL: self._on_poll,
            Op.KILL: self._on_kill, Op.TAILS: self._on_tails,
        }

    # ------------------------------------------------------------------ lifecycle

    def hosts(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    def open(self, spec: OpenSpec, sink: Sink) -> None:
        self._spec = spec

        def to_inbox(item: Completion) -> None:
            sink(Envelope(self.name, item))

        for host in self._specs:
            assert host.slurm is not None
            worker = HostWorker(host, self._session_factory(host), to_inbox)
            self.clusters[host.name] = _Cluster(
                worker, host.slurm.max_jobs or self._default_max_jobs)
        for cluster in self.clusters.values():
            self._submit_connect(cluster.worker)

    def _submit_connect(self, worker: HostWorker) -> None:
        assert self._spec is not None
        worker.connect_in_flight = True
        if worker.status is not HostStatus.UNREACHABLE:
            worker.status = HostStatus.CONNECTING
        manifest, objects, session = self._spec.manifest, self._spec.objects_dir, worker.session
        assert worker.spec.slurm is not None
        sinfo = slurm_commands.sinfo_gres_argv(worker.spec.slurm.partition)

        def connect() -> tuple[Any, str, int | None]:
            info = session.open()
            snapshot = session.sync(manifest, objects)
            assert session.agent is not None
            answer = session.agent.call("exec", argv=sinfo, timeout=60)
            gpus = max_gpus(answer["stdout"]) if answer.get("code") == 0 else None
            return info, snapshot, gpus

        worker.submit(Op.CONNECT, connect)

    def connecting(self) -> bool:
        return any(c.worker.connect_in_flight for c in self.clusters.values())

    def connect_timeout(self) -> float:
        return max((s.connect_timeout for s in self._specs), default=0.0)

    def unusable(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.worker.name, c.worker.message or "") for c in self.clusters.values()
                     if c.worker.status is not HostStatus.READY)

    def set_concurrency(self, concurrency: int) -> None:
        """A cluster without `maxJobs` follows trialConcurrency (``remotetune update``)."""
        self._default_max_jobs = concurrency
        for cluster in self.clusters.values():
            if cluster.slurm.max_jobs is None:
                cluster.max_jobs = concurrency

    def close(self) -> None:
        # A scancel still queued (the controller stopped trials at maxExperimentDuration
        # and ended) is sent before the session closes: jobs would otherwise run on.
        for cluster in self.clusters.values():
            cluster.worker.shutdown(wait=cluster.kills_pending > 0)

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

    def _relative_dir(self, trial_id: str) -> str:
        assert self._spec is not None
        return f"experiments/{self._spec.experiment_id}/trials/{trial_id}"

    def trial_dir(self, trial_id: str, host: str) -> str | None:
        return self.clusters[host].worker.session.absolute(self._relative_dir(trial_id))

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
        cluster = self.clusters.get(handle.host)
        if handle.ref is None or cluster is None or cluster.worker.status is not HostStatus.READY:
            return False
        worker = cluster.worker
        cluster.kills_pending += 1
        worker.submit(Op.KILL, cancel_jobs, worker.session, [str(handle.ref)],
                      token=handle.trial_id)
        return True

    def kill_all(self, handles: Sequence[TrialHandle], grace: float) -> int:
        by_host: dict[str, list[str]] = {}
        for h in handles:
            if h.ref is not None:
                by_host.setdefault(h.host, []).append(str(h.ref))
        sent = 0  # a cluster that is down gets nothing and is not waited for
        for host, job_ids in by_host.items():
            cluster = self.clusters.get(host)
            if cluster is None or cluster.worker.status is not HostStatus.READY:
                continue
            cluster.worker.submit(Op.KILL, _cancel_and_wait, cluster.worker.session, job_ids,
                                  grace + 60.0)
            sent += 1
        return sent

    def fetch_tails(self, trial_id: str, host: str) -> None:
        worker = self.clusters[host].worker
        worker.submit(Op.TAILS, worker.session.tails, self._relative_dir(trial_id),
                      token=trial_id)

    # ------------------------------------------------------------------ periodic work

    def tick(self, now: float, running: Sequence[PollRequest]) -> None:
        by_host: dict[str, list[PollRequest]] = {}
        for request in running:
            by_host.setdefault(request.handle.host, []).append(request)
        for name, cluster in self.clusters.items():
            worker = cluster.worker
            if worker.cordoned_until and now >= worker.cordoned_until:
                worker.cordoned_until = 0.0
            if worker.status in (HostStatus.BROKEN, HostStatus.UNREACHABLE):
                if not worker.connect_in_flight and now >= worker.next_connect_at:
                    self._submit_connect(worker)
                continue
            requests = by_host.get(name, [])
            if (worker.status is HostStatus.READY and requests and not worker.poll_in_flight
                    and now >= worker.next_poll_at):
                worker.poll_in_flight = True
                worker.next_poll_at = now + self._poll_interval
                items = [(r.handle, self._relative_dir(r.handle.trial_id), r.offset)
                         for r in requests]
                worker.submit(Op.POLL, _poll, worker.session, name, items)

    def down_since(self, host: str) -> float | None:
        worker = self.clusters[host].worker
        return worker.unreachable_since if worker.status is HostStatus.UNREACHABLE else None

    # ------------------------------------------------------------------ outcomes

    def handle(self, payload: Any, now: float) -> list[Report]:
        item: Completion = payload
        cluster = self.clusters[item.host]
        if _is_connection_error(item.error):
            return self._connection_lost(cluster, item, now)
        return self._handlers[item.op](cluster, item, now)

    def _connection_lost(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        worker, reports = cluster.worker, []
        if item.op is Op.CONNECT:
            worker.connect_in_flight = False
        elif item.op is Op.LAUNCH:
            reports.append(Report(ReportKind.LAUNCH_LOST, worker.name, item.token))
        elif item.op is Op.TAILS:
            reports.append(Report(ReportKind.TAILS, worker.name, item.token,
                                  message=str(item.error)))
        elif item.op is Op.KILL:
            cluster.kills_pending -= item.token is not None
            reports.append(Report(ReportKind.KILLED, worker.name, item.token,
                                  message=str(item.error), level=EventLevel.WARNING))
        first = worker.status is not HostStatus.UNREACHABLE
        worker.mark_unreachable(now, str(item.error))
        worker.session.close()
        if first:
            reports.append(Report(ReportKind.HOST_DOWN, worker.name,
                                  message=f"{worker.name} unreachable: {item.error}",
                                  level=EventLevel.WARNING))
        return reports

    def _on_connect(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        worker = cluster.worker
        worker.connect_in_flight = False
        if item.error is not None:
            repeated = worker.status is HostStatus.BROKEN and worker.message == str(item.error)
            worker.status, worker.message = HostStatus.BROKEN, str(item.error)
            worker.next_connect_at = now + BROKEN_RETRY
            worker.session.close()
            message = None if repeated else f"{worker.name} cannot be used: {item.error}"
            return [Report(ReportKind.HOST_EVENT, worker.name, message=message,
                           level=EventLevel.ERROR)]
        info, snapshot, gpus = item.result
        verb = "back" if worker.status is HostStatus.UNREACHABLE else "ready"
        worker.status, worker.message, worker.unreachable_since = HostStatus.READY, None, None
        worker.snapshot_dir = snapshot
        cluster.max_gpus = gpus
        most = "" if gpus is None else f", at most {gpus} GPU(s) a node"
        return [Report(ReportKind.HOST_READY, worker.name,
                       message=f"{worker.name} ready: Slurm login node {info.hostname}, "
                               f"Python {info.python}{most}" if verb == "ready" else
                               f"{worker.name} back: {info.hostname}")]

    def _on_launch(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        if item.error is not None:
            cluster.worker.cordoned_until = now + CORDON_SECONDS
            return [Report(ReportKind.LAUNCH_FAILED, cluster.worker.name, item.token,
                           message=str(item.error), level=EventLevel.ERROR)]
        return [Report(ReportKind.LAUNCHED, cluster.worker.name, item.token, launch=item.result)]

    def _on_poll(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        worker = cluster.worker
        worker.poll_in_flight = False
        if item.error is not None:
            return [Report(ReportKind.HOST_EVENT, worker.name,
                           message=f"{worker.name}: polling Slurm failed: {item.error}",
                           level=EventLevel.WARNING)]
        polls: tuple[TrialPoll, ...] = tuple(item.result)
        for poll in polls:
            if poll.state is RunState.QUEUED and poll.reason:
                cluster.reasons[poll.trial_id] = poll.reason
            else:
                cluster.reasons.pop(poll.trial_id, None)
        return [Report(ReportKind.POLLED, worker.name, polls=polls)]

    def _on_kill(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        cluster.kills_pending -= item.token is not None  # kill_all's have no trial id
        message = None if item.error is None else str(item.error)
        return [Report(ReportKind.KILLED, cluster.worker.name, item.token, message=message,
                       level=EventLevel.WARNING)]

    def _on_tails(self, cluster: _Cluster, item: Completion, now: float) -> list[Report]:
        if item.error is not None:
            return [Report(ReportKind.TAILS, cluster.worker.name, item.token,
                           message=str(item.error))]
        stdout, stderr = item.result
        return [Report(ReportKind.TAILS, cluster.worker.name, item.token, stdout=stdout,
                       stderr=stderr)]

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

    def host_states(self, experiment_id: str, now: float, *, due_only: bool) -> list[HostState]:
        return [self.host_state(experiment_id, name, now)
                for name, c in self.clusters.items()
                if not due_only or (c.worker.status is HostStatus.READY
                                    and now - self._state_at.get(name, 0.0)
                                    >= self._state_interval)]


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
