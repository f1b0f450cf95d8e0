"""The SSH/local host pool as a :class:`~remotetune.backends.Backend`.

A trial is a process group on a host, started by the host's agent; its handle's ``ref``
is the group id. Each host has one worker thread (:mod:`._workers`); connecting,
reconnecting with backoff and cordoning a host that failed to launch a trial are shared
with Slurm (:mod:`._worker_backend`); GPU readings, the slot table and long polls are this
module's business. Whether a trial is lost with its host is the controller's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from remotetune.backends._base import (
    LaunchSpec,
    OpenSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    TrialHandle,
)
from remotetune.backends.hostpool import _bundle as hostlib
from remotetune.backends.hostpool._launch import trial_files
from remotetune.backends.hostpool._session import GpuReport, HostSession, PollItem
from remotetune.backends.hostpool._slots import SlotTable
from remotetune.backends.hostpool._waiting import BusyNotice
from remotetune.backends.hostpool._worker_backend import WorkerBackend
from remotetune.backends.hostpool._workers import Completion, HostStatus, HostWorker, Op
from remotetune.errors import AgentError
from remotetune.model import EventLevel, HostSpec, HostState, Placement, TrialRecord

LONG_POLL = 1.0  # seconds a host's agent may hold a poll that has no news (docs/protocol.md)
IDLE_WAIT = 0.25  # the controller's longest sleep: budgets, host states, reconnects
GPU_PENDING_RETRY = 0.25  # seconds before asking again for a GPU reading still being taken


class HostPoolBackend(WorkerBackend):
    name = "hostpool"

    def __init__(
        self,
        hosts: Sequence[HostSpec],
        *,
        trial_gpu_number: int | None,
        default_slots: int,
        poll_interval: float,
        gpu_refresh: float = 10.0,
        host_state_interval: float = 1.0,
        local_workdir: str | None = None,
        local_code_dir: str | None = None,
        session_factory: Callable[..., HostSession] = HostSession,
        long_poll: float = LONG_POLL,
    ) -> None:
        super().__init__(hosts, host_state_interval=host_state_interval,
                         session_factory=session_factory)
        self._local_workdir = local_workdir
        # Local trials run in the code directory itself (NNI's local mode); None: in the
        # snapshot, as on remote hosts (`localSnapshot: true`)
        self._local_code_dir = local_code_dir
        self.slots = SlotTable(self._specs, trial_gpu_number, default_slots=default_slots)
        self._default_slots = default_slots
        self._poll_interval = poll_interval  # unused by long polls; kept for the interface
        self._long_poll = long_poll
        self._gpu_refresh = gpu_refresh
        self._refused: dict[str, str] = {}  # host -> the last launch refusal told
        self._misfit: dict[str, str] = {}  # host -> why its machines entry does not fit it
        self._busy = BusyNotice()  # which busy GPUs the user was told trials wait for
        self._refusal: tuple[int, PlaceResult] | None = None  # (slot table version, answer)
        self._handlers[Op.GPUS] = self._on_gpus

    # ------------------------------------------------------------------ lifecycle

    def _new_session(self, host: HostSpec) -> HostSession:
        workdir = self._local_workdir if host.local and not host.workdir else None
        return self._session_factory(host, workdir=workdir)

    def _connect_work(self, worker: HostWorker, spec: OpenSpec) -> Callable[[], Any]:
        manifest, objects, session = spec.manifest, spec.objects_dir, worker.session
        # Placing trials needs the host's GPUs only when they take GPUs or gpuIndices must
        # be checked; else the first trials do not wait for nvidia-smi (a real one can take
        # a second), whose reading is collected at the first tick, after their launches.
        wait_gpus = self.slots.schedules_gpus or bool(worker.spec.gpu_indices)

        def connect() -> tuple[Any, str, GpuReport | None]:
            warmed, info = worker.warmed()  # opened already, while the run started up
            if not warmed:
                info = session.open(gpus_early=True)  # nvidia-smi runs while the code syncs
            snapshot = session.sync(manifest, objects)
            return info, snapshot, session.gpus() if wait_gpus else None

        return connect

    def warm(self) -> None:
        super().warm()
        if any(not w.spec.local for w in self.workers.values()):
            hostlib.packed()  # built here while the SSH handshakes wait, not after them

    def _warm_work(self, worker: HostWorker) -> Callable[[], Any] | None:
        if not worker.spec.local:  # paramiko is imported here, before the thread needs it
            import remotetune.transport.ssh  # noqa: F401
        return functools.partial(worker.session.open, gpus_early=True)

    def _set_reachable(self, worker: HostWorker, reachable: bool) -> None:
        self.slots.set_reachable(worker.name, reachable)

    def misconfigured(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._misfit.items())

    # ------------------------------------------------------------------ placement

    def impossible(self) -> str | None:
        return self.slots.impossible()

    def place(self, trial_id: str) -> PlaceResult:
        """A refusal is worked out once per change of the slot table: until it changes, the
        next waiting trial gets the same answer at no cost. Why in full is :meth:`why_not`
        (asked for by the view); a busy GPU is named in the answer's ``notice``, once."""
        if self._refusal is not None and self._refusal[0] == self.slots.version:
            return self._refusal[1]
        placement = self.slots.place(trial_id)
        if placement is not None:
            return PlaceResult(placement)
        answer = PlaceResult(None, None, self.slots.impossible() is None)
        self._refusal = (self.slots.version, answer)
        notice = self._busy.refused(self.slots.busy_gpus())
        return answer if notice is None else PlaceResult(None, None, answer.ever, notice)

    def why_not(self) -> str | None:
        return self.slots.why_not()

    def reattach(self, trial: TrialRecord) -> TrialHandle | None:
        if trial.host not in self.hosts():
            return None
        assert trial.host is not None
        self.slots.occupy(trial.id, Placement(trial.host, trial.gpus, None))
        return TrialHandle(trial.id, trial.host, trial.pid)

    def release(self, trial_id: str) -> None:
        self.slots.release(trial_id)

    # ------------------------------------------------------------------ trials

    def launch(self, spec: LaunchSpec) -> None:
        assert self._spec is not None
        worker = self.workers[spec.placement.host]
        assert worker.snapshot_dir is not None
        relative = self._relative_dir(spec.trial.id)
        code_dir = (self._local_code_dir if worker.spec.local and self._local_code_dir
                    else worker.snapshot_dir)
        files = trial_files(worker.session, self._spec.experiment_id, spec,
                            worker.session.absolute(relative), code_dir)
        worker.launches_due.append((spec.trial.id, relative, files))  # sent at this turn's tick

    @staticmethod
    def _send_launches(worker: HostWorker) -> None:
        """This turn's launches of ``worker``'s host, in one request when there are several:
        the agent starts them side by side (a first fill, slots freed together)."""
        due, worker.launches_due = worker.launches_due, []
        if len(due) == 1:
            worker.submit(Op.LAUNCH, worker.session.launch, *due[0], token=due[0][0])
        elif due:
            worker.submit(Op.LAUNCH, worker.session.launch_many, due,
                          token=tuple(trial_id for trial_id, _, _ in due))

    def kill(self, handle: TrialHandle, grace: float) -> bool:
        worker = self._ready_worker(handle.host)
        if handle.ref is None or worker is None:
            return False
        kill = functools.partial(  # the trial dir lets the agent check it is our process
            worker.session.kill, trial_dir=self._relative_dir(handle.trial_id))
        worker.submit(Op.KILL, kill, handle.ref, grace, token=handle.trial_id)
        return True

    def _kill_group(self, worker: HostWorker, handles: list[TrialHandle], grace: float) -> None:
        groups = [(h.ref, self._relative_dir(h.trial_id)) for h in handles if h.ref is not None]
        worker.submit(Op.KILL, functools.partial(_kill_and_wait, worker.session, groups, grace))

    def fetch_tails(self, trial_id: str, host: str) -> None:
        """Sent at the next tick, after the launches of this turn: a refill goes first."""
        self.workers[host].tails_due.append(trial_id)

    # ------------------------------------------------------------------ periodic work

    def tick(self, now: float, running: Sequence[PollRequest]) -> None:
        by_host = self._by_host(running)
        for name, worker in self.workers.items():
            self._send_launches(worker)  # first: a refill goes before tails and polls
            self._reconnect(worker, now)
            while worker.tails_due:  # a host that is down answers them with errors
                trial_id = worker.tails_due.pop(0)
                worker.submit(Op.TAILS, worker.session.tails, self._relative_dir(trial_id),
                              token=trial_id)
            if worker.status is not HostStatus.READY:
                continue
            self._poll(worker, by_host.get(name, []))
            if not worker.gpu_in_flight and now >= worker.next_gpu_at:
                worker.gpu_in_flight = True
                worker.next_gpu_at = now + self._gpu_refresh
                worker.submit(Op.GPUS, worker.session.gpus, 0.0)  # never holds the agent

    def _poll(self, worker: HostWorker, requests: list[PollRequest]) -> None:
        """Keep one long poll out per host, over the trials the controller wants polled."""
        wanted = frozenset(r.handle.trial_id for r in requests)
        if worker.poll_in_flight:
            if not wanted <= worker.polling and not worker.poll_woken:
                worker.poll_woken = True
                worker.session.wake()  # a new trial: ask again with it
            return
        if not requests:
            return
        items = [PollItem(r.handle.trial_id, self._relative_dir(r.handle.trial_id), r.offset)
                 for r in requests]
        worker.poll_in_flight, worker.polling, worker.poll_woken = True, wanted, False
        worker.submit(Op.POLL, functools.partial(worker.session.poll, items,
                                                 wait=self._long_poll))

    def wait_hint(self, now: float) -> float | None:
        """How long the controller may block on its inbox: news comes in on its own."""
        return IDLE_WAIT

    # ------------------------------------------------------------------ outcomes

    def _lost_reports(self, worker: HostWorker, item: Completion) -> list[Report]:
        if item.op is Op.GPUS:
            worker.gpu_in_flight = False
            return []
        return super()._lost_reports(worker, item)

    def _connected(self, worker: HostWorker, result: Any, now: float) -> list[Report]:
        info, snapshot, gpus = result
        lacking = missing_gpus(worker.spec, gpus)
        if lacking is not None:
            self._misfit[worker.name] = lacking
            return self._broken(worker, lacking, now)
        self._misfit.pop(worker.name, None)
        was_down = self._mark_ready(worker, snapshot)
        self._apply_gpus(worker, gpus)
        worker.next_gpu_at = now + self._gpu_refresh if gpus is not None else now
        self.slots.set_reachable(worker.name, True)
        verb = "back" if was_down else "ready"
        return [Report(ReportKind.HOST_READY, worker.name,
                       message=f"{worker.name} {verb}: {info.hostname}, Python {info.python}")]

    def _apply_gpus(self, worker: HostWorker, report: GpuReport | None) -> None:
        if report is None:
            return
        worker.gpus = tuple(report.gpus or ())
        worker.gpu_error = report.error
        self.slots.update_gpus(worker.name, report.gpus, error=report.error)
        self._busy.reading(worker.name, (g.index for _, g in self.slots.busy_gpus(worker.name)))

    def _on_gpus(self, worker: HostWorker, item: Completion, now: float) -> list[Report]:
        worker.gpu_in_flight = False
        if item.error is None and item.result is None:  # nvidia-smi still running
            worker.next_gpu_at = min(worker.next_gpu_at, now + GPU_PENDING_RETRY)
        elif item.error is None:
            self._apply_gpus(worker, item.result)
        return []

    def _launched(self, worker: HostWorker, trial_id: str, outcome: Any, now: float) -> Report:
        """One trial's launch outcome (alone or in a batch)."""
        error = outcome if isinstance(outcome, BaseException) else None
        if isinstance(error, AgentError) and error.kind == "GpuReserved":
            # Another controller's trial holds the GPU: busy, not broken (no cordon).
            gpu, holders = error.details.get("gpu"), error.details.get("holders", 1)
            names = error.details.get("experiments") or ["another experiment"]
            who = "experiment " + ", ".join(map(str, names))
            if isinstance(gpu, int) and isinstance(holders, int):
                self.slots.reserved_elsewhere(worker.name, gpu, holders, who)
            message = f"{worker.name}: {error.detail}"
            repeated = self._refused.get(worker.name) == message
            self._refused[worker.name] = message
            return Report(ReportKind.LAUNCH_REFUSED, worker.name, trial_id,
                          message=None if repeated else message, level=EventLevel.INFO)
        report = super()._launched(worker, trial_id, outcome, now)
        if error is None:
            self._refused.pop(worker.name, None)
        return report

    # ------------------------------------------------------------------ host states

    def set_concurrency(self, concurrency: int) -> None:
        self._default_slots = concurrency
        self.slots.set_default_slots(concurrency)

    def host_state(self, experiment_id: str, host: str, now: float) -> HostState:
        worker = self.workers[host]
        self._state_at[host] = now
        return HostState(
            experiment_id=experiment_id,
            host=host,
            reachable=worker.status is HostStatus.READY,
            gpus=worker.gpus,
            gpu_holders=self.slots.holders(host),
            slots=worker.spec.slots or self._default_slots,
            running=len(self.slots.running_on(host)),
            message=worker.message or worker.gpu_error,
            updated_at=now,
        )


def _kill_and_wait(session: HostSession, groups: list[tuple[int, str]], grace: float) -> None:
    for pgid, trial_dir in groups:  # TERM now, KILL after grace (agent thread)
        session.kill(pgid, grace, trial_dir=trial_dir)
    for pgid, trial_dir in groups:
        session.kill(pgid, grace, wait=True, trial_dir=trial_dir)


def missing_gpus(spec: HostSpec, report: GpuReport | None) -> str | None:
    """Why ``gpuIndices`` cannot be right for this host (it names a GPU that nvidia-smi
    does not report), or None. A host whose GPUs are unknown is judged by the slot table."""
    if not spec.gpu_indices or report is None or report.gpus is None:
        return None
    have = sorted(g.index for g in report.gpus)
    absent = [i for i in spec.gpu_indices if i not in have]
    if not absent:
        return None
    names = ", ".join(map(str, absent))
    has = f"GPUs {', '.join(map(str, have))}" if have else "no GPU"
    return (f"gpuIndices names GPU {names}, which {spec.name} does not have (nvidia-smi "
            f"reports {has}); fix gpuIndices in the machines file")
