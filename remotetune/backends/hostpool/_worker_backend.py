"""What the backends that reach their hosts over a :class:`HostSession` share.

The host pool (a host runs trials itself) and Slurm (a login node submits jobs) both keep
one :class:`HostWorker` per host: connecting and reconnecting with backoff, a host that needs
the user (``BROKEN``, tried again every :data:`BROKEN_RETRY` seconds), a launch failure that
cordons the host, the completions' dispatch over :class:`Op`, tails, kills and host states.
Each subclass adds what differs: what a connect does, how a trial is launched, polled and
killed, and what it does with a host's reachability (the host pool's slot table).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from remotetune.backends._base import (
    Backend,
    Envelope,
    OpenSpec,
    PollRequest,
    Report,
    ReportKind,
    Sink,
    TrialHandle,
)
from remotetune.backends.hostpool._session import HostSession
from remotetune.backends.hostpool._workers import Completion, HostStatus, HostWorker, Op
from remotetune.errors import (
    AgentError,
    AuthenticationFailed,
    HostKeyError,
    RemoteSetupError,
    SyncError,
    TransportError,
)
from remotetune.model import EventLevel, HostSpec, HostState

BROKEN_RETRY = 60.0  # seconds between attempts on a host that needs the user
CORDON_SECONDS = 30.0  # no new trials on a host after it failed to launch one

Handler = Callable[[HostWorker, Completion, float], list[Report]]


class WorkerBackend(Backend):
    """A backend with one worker thread and one :class:`HostSession` per host."""

    #: Errors that need the user (wrong credentials, host key, no Python) or that the agent
    #: raised: retrying cannot help, and the link itself is fine. Other transport errors
    #: mean the host is unreachable.
    fatal_errors: tuple[type[BaseException], ...] = (
        AgentError, AuthenticationFailed, HostKeyError, RemoteSetupError, SyncError)
    #: What a failed poll is called in the event the user sees.
    poll_what = "polling"

    def __init__(self, hosts: Sequence[HostSpec], *, host_state_interval: float,
                 session_factory: Callable[..., HostSession]) -> None:
        self._specs = list(hosts)
        self._session_factory = session_factory
        self._state_interval = host_state_interval
        self._state_at: dict[str, float] = {}
        self.workers: dict[str, HostWorker] = {}
        self._spec: OpenSpec | None = None
        self._sink: Sink | None = None
        self._handlers: dict[Op, Handler] = {
            Op.CONNECT: self._on_connect,
            Op.LAUNCH: self._on_launch,
            Op.POLL: self._on_poll,
            Op.KILL: self._on_kill,
            Op.TAILS: self._on_tails,
        }

    # ------------------------------------------------------------------ what differs

    @abc.abstractmethod
    def _new_session(self, host: HostSpec) -> HostSession:
        """The session to ``host`` (not opened yet)."""

    @abc.abstractmethod
    def _connect_work(self, worker: HostWorker, spec: OpenSpec) -> Callable[[], Any]:
        """What a connect does on the worker's thread; its result goes to :meth:`_connected`."""

    @abc.abstractmethod
    def _connected(self, worker: HostWorker, result: Any, now: float) -> list[Report]:
        """A connect succeeded (``result`` from :meth:`_connect_work`)."""

    @abc.abstractmethod
    def _kill_group(self, worker: HostWorker, handles: list[TrialHandle], grace: float) -> None:
        """Submit the kill of ``handles`` (all with a ``ref``) on ``worker``, and wait."""

    def _added(self, worker: HostWorker) -> None:
        """A worker was made for a host (at :meth:`open`)."""

    def _set_reachable(self, worker: HostWorker, reachable: bool) -> None:
        """Whether new trials may go to ``worker``'s host (beyond its status)."""

    def _close_wait(self, worker: HostWorker) -> bool:
        """Whether closing waits for the work queued on ``worker``."""
        return False

    # ------------------------------------------------------------------ lifecycle

    def hosts(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    def _warm_work(self, worker: HostWorker) -> Callable[[], Any] | None:
        """The part of a connect that needs no experiment (:meth:`warm`), or None."""
        return None

    def warm(self) -> None:
        self._make_workers()
        for worker in self.workers.values():
            work = self._warm_work(worker)
            if work is not None:
                worker.warm(work)

    def _make_workers(self) -> None:
        if self.workers:
            return

        def to_inbox(item: Completion) -> None:
            assert self._sink is not None  # set by open(): jobs that report come after it
            self._sink(Envelope(self.name, item))

        for host in self._specs:
            self.workers[host.name] = HostWorker(host, self._new_session(host), to_inbox)
            self._added(self.workers[host.name])

    def open(self, spec: OpenSpec, sink: Sink) -> None:
        self._spec, self._sink = spec, sink
        self._make_workers()
        for worker in self.workers.values():
            self._submit_connect(worker)

    def _submit_connect(self, worker: HostWorker) -> None:
        assert self._spec is not None
        worker.connect_in_flight = True
        if worker.status is not HostStatus.UNREACHABLE:
            worker.status = HostStatus.CONNECTING
        worker.submit(Op.CONNECT, self._connect_work(worker, self._spec))

    def connecting(self) -> bool:
        return any(w.connect_in_flight for w in self.workers.values())

    def connect_timeout(self) -> float:
        return max((s.connect_timeout for s in self._specs), default=0.0)

    def unusable(self) -> tuple[tuple[str, str], ...]:
        return tuple((w.name, w.message or "") for w in self.workers.values()
                     if w.status is not HostStatus.READY)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.shutdown(wait=self._close_wait(worker))

    # ------------------------------------------------------------------ trials

    def _relative_dir(self, trial_id: str) -> str:
        assert self._spec is not None
        return f"experiments/{self._spec.experiment_id}/trials/{trial_id}"

    def trial_dir(self, trial_id: str, host: str) -> str | None:
        return self.workers[host].session.absolute(self._relative_dir(trial_id))

    def _ready_worker(self, host: str) -> HostWorker | None:
        worker = self.workers.get(host)
        return worker if worker is not None and worker.status is HostStatus.READY else None

    def kill_all(self, handles: Sequence[TrialHandle], grace: float) -> int:
        by_host: dict[str, list[TrialHandle]] = {}
        for h in handles:
            if h.ref is not None:
                by_host.setdefault(h.host, []).append(h)
        sent = 0  # a host that is down gets nothing and is not waited for
        for host, group in by_host.items():
            worker = self._ready_worker(host)
            if worker is not None:
                self._kill_group(worker, group, grace)
                sent += 1
        return sent

    # ------------------------------------------------------------------ periodic work

    @staticmethod
    def _by_host(running: Sequence[PollRequest]) -> dict[str, list[PollRequest]]:
        by_host: dict[str, list[PollRequest]] = {}
        for request in running:
            by_host.setdefault(request.handle.host, []).append(request)
        return by_host

    def _reconnect(self, worker: HostWorker, now: float) -> None:
        if worker.cordoned_until and now >= worker.cordoned_until:
            worker.cordoned_until = 0.0
            if worker.status is HostStatus.READY:
                self._set_reachable(worker, True)
        if worker.status in (HostStatus.BROKEN, HostStatus.UNREACHABLE):
            if not worker.connect_in_flight and now >= worker.next_connect_at:
                self._submit_connect(worker)  # the user may have fixed it meanwhile

    def down_since(self, host: str) -> float | None:
        worker = self.workers[host]
        return worker.unreachable_since if worker.status is HostStatus.UNREACHABLE else None

    # ------------------------------------------------------------------ outcomes

    def handle(self, payload: Any, now: float) -> list[Report]:
        item: Completion = payload
        worker = self.workers[item.host]
        if isinstance(item.error, TransportError) and not isinstance(item.error,
                                                                     self.fatal_errors):
            return self._connection_lost(worker, item, now)
        return self._handlers[item.op](worker, item, now)

    def _lost_reports(self, worker: HostWorker, item: Completion) -> list[Report]:
        """What the operation ``item`` leaves behind when the link broke under it."""
        if item.op is Op.CONNECT:
            worker.connect_in_flight = False
        elif item.op is Op.LAUNCH:
            return [Report(ReportKind.LAUNCH_LOST, worker.name, trial_id)
                    for trial_id in _launch_tokens(item.token)]
        elif item.op is Op.TAILS:
            return [Report(ReportKind.TAILS, worker.name, item.token, message=str(item.error))]
        return []

    def _connection_lost(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        reports = self._lost_reports(worker, item)
        first = worker.status is not HostStatus.UNREACHABLE
        worker.mark_unreachable(now, str(item.error))
        self._set_reachable(worker, False)
        worker.session.close()
        if first:
            reports.append(Report(ReportKind.HOST_DOWN, worker.name,
                                  message=f"{worker.name} unreachable: {item.error}",
                                  level=EventLevel.WARNING))
        return reports

    def _on_connect(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        worker.connect_in_flight = False
        if item.error is not None:
            return self._broken(worker, str(item.error), now)
        return self._connected(worker, item.result, now)

    @staticmethod
    def _mark_ready(worker: HostWorker, snapshot: str) -> bool:
        """The host is connected and its code is at ``snapshot``; True if it was down."""
        was_down = worker.status is HostStatus.UNREACHABLE
        worker.status, worker.message, worker.unreachable_since = HostStatus.READY, None, None
        worker.snapshot_dir = snapshot
        return was_down

    def _broken(self, worker: HostWorker, why: str, now: float) -> list[Report]:
        """The host cannot be used (tried again every BROKEN_RETRY seconds)."""
        repeated = worker.status is HostStatus.BROKEN and worker.message == why
        worker.status = HostStatus.BROKEN
        worker.message = why
        worker.next_connect_at = now + BROKEN_RETRY
        worker.session.close()
        self._set_reachable(worker, False)
        message = None if repeated else f"{worker.name} cannot be used: {why}"
        return [Report(ReportKind.HOST_EVENT, worker.name, message=message,
                       level=EventLevel.ERROR)]

    def _on_launch(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        """One launch (token: its trial id) or several (a tuple of ids, one outcome each)."""
        ids = _launch_tokens(item.token)
        outcomes = [item.error] * len(ids) if item.error is not None else (
            item.result if isinstance(item.token, tuple) else [item.result])
        return [self._launched(worker, trial_id, outcome, now)
                for trial_id, outcome in zip(ids, outcomes, strict=True)]

    def _launched(self, worker: HostWorker, trial_id: str, outcome: Any, now: float) -> Report:
        if isinstance(outcome, BaseException):
            # A host that cannot start trials (disk full, workdir gone, sbatch refused) takes
            # no new ones for a while, so it does not eat the trial budget; its running
            # trials go on.
            worker.cordoned_until = now + CORDON_SECONDS
            self._set_reachable(worker, False)
            return Report(ReportKind.LAUNCH_FAILED, worker.name, trial_id,
                          message=str(outcome), level=EventLevel.ERROR)
        return Report(ReportKind.LAUNCHED, worker.name, trial_id, launch=outcome)

    def _on_poll(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        worker.poll_in_flight = False
        if item.error is not None:
            return [Report(ReportKind.HOST_EVENT, worker.name,
                           message=f"{worker.name}: {self.poll_what} failed: {item.error}",
                           level=EventLevel.WARNING)]
        return [Report(ReportKind.POLLED, worker.name, polls=tuple(item.result))]

    def _on_kill(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        message = None if item.error is None else str(item.error)
        return [Report(ReportKind.KILLED, worker.name, item.token, message=message,
                       level=EventLevel.WARNING)]

    def _on_tails(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        if item.error is not None:
            return [Report(ReportKind.TAILS, worker.name, item.token, message=str(item.error))]
        stdout, stderr = item.result
        return [Report(ReportKind.TAILS, worker.name, item.token, stdout=stdout, stderr=stderr)]

    # ------------------------------------------------------------------ host states

    def host_states(self, experiment_id: str, now: float, *, due_only: bool) -> list[HostState]:
        return [self.host_state(experiment_id, name, now) for name, w in self.workers.items()
                if not due_only or (w.status is HostStatus.READY
                                    and now - self._state_at.get(name, 0.0)
                                    >= self._state_interval)]


def _launch_tokens(token: Any) -> tuple[str, ...]:
    """The trial ids of a launch operation: one, or a tuple of them (a batch)."""
    return token if isinstance(token, tuple) else (token,)
