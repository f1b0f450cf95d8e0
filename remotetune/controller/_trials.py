"""The trial side of the controller: new trials, placement, launch, reports, budgets, loss.

:class:`TrialFlow` is a part of :class:`~remotetune.controller.Controller` (kept in its
own module to keep both small); it decides, the backends act, the trial book records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remotetune.backends import (
    Backend,
    ExitInfo,
    LaunchSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    RunState,
    TrialPoll,
)
from remotetune.config import ExperimentConfig
from remotetune.controller._book import TrialBook
from remotetune.controller._clock import Clock
from remotetune.errors import RemotetuneError
from remotetune.metrics import SKIPPED_LINE_MARKER
from remotetune.model import EventKind, EventLevel, TrialRecord, TrialStatus

S = TrialStatus
NO_FINAL = "exited 0 without reporting a final result"


class TrialFlow:
    config: ExperimentConfig
    clock: Clock
    book: TrialBook | None
    backends: list[Backend]
    backend_of: dict[str, Backend]
    refusals: tuple[tuple[Backend, PlaceResult], ...]  # why the queue's head waits, raw
    tuner_exhausted: bool
    tuner_waiting: bool  # the tuner has nothing now: ask again after the next observe
    tuner: Any
    _assess_reported: Callable[[list[str]], None]
    _tuner_value: Callable[[TrialRecord], float | None]
    _tuner_not_now: Callable[[], bool]
    _event: Callable[..., None]
    _may_launch: Callable[[float], bool]
    _out_of_time: Callable[[float], bool]
    _save_host_state: Callable[..., None]

    @property
    def experiment_id(self) -> str:
        raise NotImplementedError

    @property
    def _book(self) -> TrialBook:
        assert self.book is not None
        return self.book

    # ------------------------------------------------------------------ new trials

    def _fill(self, now: float) -> None:
        book = self._book
        active = book.count(S.RUNNING) + len(book.queue)
        while active < self.config.trial_concurrency and self._may_launch(now):
            if not self._new_trial(now):
                break
            active += 1
        self._place_waiting()

    def _suggest(self) -> dict[str, Any] | None:
        try:
            params = self.tuner.suggest(self._book.next_parameter_id, self._book.history())
        except RemotetuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - a tuner bug ends the experiment clearly
            raise RemotetuneError(f"tuner {self.config.tuner.name} failed: {exc!r}") from exc
        return None if params is None else dict(params)

    def _new_trial(self, now: float, retry_of: TrialRecord | None = None) -> bool:
        book = self._book
        if retry_of is None:
            params = self._suggest()
            if params is None:
                if self._tuner_not_now():
                    return False
                self.tuner_exhausted = True
                self._event(EventKind.EXPERIMENT, "the tuner has no more configurations to try")
                return False
            parameter_id, attempt = book.next_parameter_id, 1
            book.next_parameter_id += 1
        else:
            parameter_id, params, attempt = (
                retry_of.parameter_id, dict(retry_of.parameters), retry_of.attempt + 1)
        store = book.store
        book.add(TrialRecord(
            id=store.new_trial_id(self.experiment_id),
            experiment_id=self.experiment_id,
            sequence=store.next_sequence(self.experiment_id),
            parameters=params,
            parameter_id=parameter_id,
            status=S.WAITING,
            attempt=attempt,
            retry_of=retry_of.id if retry_of else None,
            created_at=now,
        ))
        return True

    def _place_waiting(self) -> None:
        """Place the queue's head until a backend refuses. The refusals are kept as they came
        (:meth:`waiting_reason` words them when asked); a backend's ``notice`` (a busy GPU
        holds trials back) is an event, which the backend gives once per change."""
        book = self._book
        refusals: list[tuple[Backend, PlaceResult]] = []
        while book.queue:
            trial_id = book.queue[0]
            refusals = []
            for backend in self.backends:
                result = backend.place(trial_id)
                if result.notice:
                    self._event(EventKind.HOST, result.notice, level=EventLevel.WARNING)
                if result.placement is not None:
                    book.queue.popleft()
                    self._launch(backend, book[trial_id], result.placement)
                    break
                refusals.append((backend, result))
            else:
                break
        self.refusals = tuple(refusals) if book.queue else ()

    def waiting_reason(self) -> str | None:
        """Why the queue's head is not placed, worded now (not on every loop turn)."""
        reasons = [result.reason or backend.why_not() for backend, result in self.refusals]
        return "; ".join(r for r in reasons if r) or None

    def _launch(self, backend: Backend, trial: TrialRecord, placement: Any) -> None:
        book = self._book
        trial = book.update(trial.id, status=S.RUNNING, host=placement.host,
                            gpus=placement.gpus, trial_dir=backend.trial_dir(trial.id,
                                                                             placement.host),
                            started_at=None)
        book.offsets[trial.id] = 0
        book.launching.add(trial.id)
        backend.launch(LaunchSpec(
            trial, placement, self.config.trial_command, self.config.max_trial_duration,
            self.config.kill_grace_period, self.config.trial_gpu_number is not None))

    def _poll_requests(self, backend: Backend) -> list[PollRequest]:
        book = self._book
        out = []
        for trial in book.with_status(S.RUNNING):
            handle = book.handles.get(trial.id)
            if handle is None and trial.host and self.backend_of.get(trial.host) is backend:
                from remotetune.backends import TrialHandle  # not started yet: no ref

                handle = TrialHandle(trial.id, trial.host, None)
            if (handle is not None and trial.id not in book.launching
                    and self.backend_of.get(handle.host) is backend):
                out.append(PollRequest(handle, book.offsets.get(trial.id, 0)))
        return out

    # ------------------------------------------------------------------ reports

    def _dispatch(self, report: Report) -> None:
        _HANDLERS[report.kind](self, report)

    def _on_launched(self, r: Report) -> None:
        assert r.trial_id is not None and r.launch is not None
        book = self._book
        book.launching.discard(r.trial_id)
        book.handles[r.trial_id] = r.launch.handle
        trial = book.update(r.trial_id, pid=r.launch.pid, started_at=r.launch.started_at)
        gpus = f" GPU {','.join(map(str, trial.gpus))}" if trial.gpus else ""
        verb = "running on" if r.launch.started_at is not None else "submitted to"
        self._event(EventKind.TRIAL, f"trial {trial.id} {verb} {r.host}{gpus} "
                    f"{json.dumps(dict(trial.parameters), sort_keys=True)}",
                    trial_id=trial.id, host=r.host)

    def _on_launch_failed(self, r: Report) -> None:
        assert r.trial_id is not None
        book = self._book
        book.launching.discard(r.trial_id)
        self.backend_of[r.host].release(r.trial_id)
        book.update(r.trial_id, status=S.FAILED, ended_at=self.clock.now(),
                    message=f"launch failed: {r.message}")
        self._event(EventKind.TRIAL, f"trial {r.trial_id} could not be launched on {r.host}: "
                    f"{r.message}", trial_id=r.trial_id, host=r.host, level=EventLevel.ERROR)
        self._observe(book[r.trial_id])

    def _on_launch_lost(self, r: Report) -> None:
        # The connection broke mid-launch: the trial may or may not have started. Its
        # files tell: keep it RUNNING with no handle; polling after reconnect finds out.
        assert r.trial_id is not None
        self._book.launching.discard(r.trial_id)

    def _on_launch_refused(self, r: Report) -> None:
        # Not started (e.g. another experiment holds its GPU): it waits, first in line.
        assert r.trial_id is not None
        book = self._book
        book.launching.discard(r.trial_id)
        self.backend_of[r.host].release(r.trial_id)
        if book[r.trial_id].status is not S.RUNNING:  # stopped meanwhile: nothing to run
            return
        book.update(r.trial_id, status=S.WAITING, host=None, gpus=())
        book.requeue_front(r.trial_id)
        if r.message:
            self._event(EventKind.TRIAL, f"trial {r.trial_id} waits: {r.message}",
                        trial_id=r.trial_id, host=r.host, level=r.level)

    def _on_polled(self, r: Report) -> None:
        book = self._book
        grown = []
        for poll in r.polls:
            trial = book.get(poll.trial_id)
            if trial is None or trial.status is not S.RUNNING:
                continue
            if poll.offset != book.offsets.get(poll.trial_id, 0) or poll.lines:
                before = trial.intermediate_count
                for bad in book.ingest(trial.id, poll.lines, poll.offset, self.clock.now()):
                    shown = "" if bad.line.startswith(SKIPPED_LINE_MARKER) else (
                        f": {bad.line[:120]!r}")
                    self._event(EventKind.TRIAL, f"trial {trial.id} wrote a metric line "
                                f"remotetune cannot read ({bad.error}){shown}",
                                trial_id=trial.id, host=trial.host, level=EventLevel.WARNING)
                if book[trial.id].intermediate_count > before:
                    grown.append(trial.id)
            self._on_state(r.host, book[poll.trial_id], poll)
        self._assess_reported(grown)

    def _on_state(self, host: str, trial: TrialRecord, poll: TrialPoll) -> None:
        book = self._book
        if poll.state is RunState.EXITED and poll.exit is not None:
            self._ended(host, trial, poll.exit)
        elif poll.state is RunState.VANISHED:
            self._ended(host, trial, ExitInfo(None, None, self.clock.now(),
                                              "its processes vanished without an exit record"))
        elif poll.state is RunState.LOST:  # a batch job's node failed, or it was preempted
            self._lose(self.backend_of[host], trial, self.clock.now(), poll.reason)
        elif poll.started is not None and trial.started_at is None:
            book.handles[trial.id] = poll.started.handle
            book.update(trial.id, pid=poll.started.pid, started_at=poll.started.started_at,
                        message=None)
        elif poll.state is RunState.QUEUED and poll.reason and poll.reason != trial.message:
            book.update(trial.id, message=poll.reason)  # e.g. "queued in Slurm (Resources)"
        elif poll.state is RunState.UNKNOWN and trial.id not in book.launching:
            # Lost mid-launch: it never started. Start it again.
            self.backend_of[host].release(trial.id)
            book.update(trial.id, status=S.WAITING, host=None, gpus=())
            book.requeue_front(trial.id)

    def _ended(self, host: str, trial: TrialRecord, exit_info: ExitInfo) -> None:
        book = self._book
        code, reason = exit_info.code, exit_info.reason
        if trial.id in book.kill_sent and trial.status is not S.RUNNING:
            status = trial.status
        elif exit_info.cancelled:
            status = S.USER_CANCELED
        elif exit_info.timed_out:
            status, reason = S.EARLY_STOPPED, "ran past maxTrialDuration"
        else:
            status = S.SUCCEEDED if code == 0 else S.FAILED
        message = reason
        if status is S.FAILED and not message:
            message = f"exited with code {code}" + (
                f" (signal {exit_info.signal})" if exit_info.signal else "")
        if status is S.SUCCEEDED and trial.final is None and not message:
            message = NO_FINAL  # still SUCCEEDED, as in NNI; the tuner gets value None
        self.backend_of[host].release(trial.id)
        book.handles.pop(trial.id, None)
        trial = book.update(trial.id, status=status, exit_code=code,
                            ended_at=float(exit_info.ended or self.clock.now()), message=message)
        level = EventLevel.ERROR if status is S.FAILED else (
            EventLevel.WARNING if message == NO_FINAL else EventLevel.INFO)
        final = f" final={trial.final:.6g}" if trial.final is not None else ""
        self._event(EventKind.TRIAL, f"trial {trial.id} {status.value.lower()}{final}"
                    + (f": {message}" if message else ""), trial_id=trial.id, host=host,
                    level=level)
        self._observe(trial)
        book.finalizing.add(trial.id)
        self.backend_of[host].fetch_tails(trial.id, host)
        if status is S.FAILED and trial.attempt <= self.config.retry_failed_trials:
            self._new_trial(self.clock.now(), retry_of=trial)

    def _on_tails(self, r: Report) -> None:
        assert r.trial_id is not None
        book = self._book
        book.finalizing.discard(r.trial_id)
        if r.message is not None:
            return
        trial = book.update(r.trial_id, stdout_tail=r.stdout[-2000:],
                            stderr_tail=r.stderr[-2000:])
        if trial.status is S.FAILED and r.stderr.strip():
            tail = " | ".join(r.stderr.strip().splitlines()[-3:])
            self._event(EventKind.TRIAL, f"trial {trial.id} stderr: {tail}", trial_id=trial.id,
                        host=r.host, level=EventLevel.ERROR)

    def _on_killed(self, r: Report) -> None:
        self._book.kills_out.discard(r.trial_id or "")
        if r.message is not None:
            self._event(EventKind.TRIAL, f"could not stop trial {r.trial_id}: {r.message}",
                        trial_id=r.trial_id, host=r.host, level=EventLevel.WARNING)

    def _on_host(self, r: Report) -> None:
        if r.message is not None:
            self._event(EventKind.HOST, r.message, host=r.host, level=r.level)
        backend = self.backend_of[r.host]
        if r.kind is ReportKind.HOST_READY:
            # Trials we gave up on while it was away must not run twice.
            book = self._book
            for t in book.on_host(r.host, S.LOST):
                handle = book.handles.pop(t.id, None)
                if handle is not None:
                    backend.kill(handle, self.config.kill_grace_period)
        self._save_host_state(backend.host_state(self.experiment_id, r.host, self.clock.now()))

    def _observe(self, trial: TrialRecord) -> None:
        self.tuner_waiting = False
        value = self._tuner_value(trial)  # NNI's rule for an early-stopped trial
        try:
            self.tuner.observe(trial.parameter_id, trial.parameters, value, trial.status)
        except Exception as exc:  # noqa: BLE001
            self._event(EventKind.EXPERIMENT, f"tuner failed to observe trial {trial.id}: "
                        f"{exc!r}", level=EventLevel.WARNING)

    # ------------------------------------------------------------------ hosts & budgets

    def _check_lost_hosts(self, now: float) -> None:
        grace = self.config.host_grace_period
        for host, backend in self.backend_of.items():
            since = backend.down_since(host)
            if since is None or now - since < grace:
                continue
            for trial in self._book.on_host(host, S.RUNNING):
                self._lose(backend, trial, now)

    def _lose(self, backend: Backend, trial: TrialRecord, now: float,
              why: str | None = None) -> None:
        book = self._book
        book.launching.discard(trial.id)
        backend.release(trial.id)
        lost = book.update(trial.id, status=S.LOST, ended_at=now,
                           message=why or f"host {trial.host} unreachable for "
                                          f"{self.config.host_grace_period:g} s")
        if lost.attempt <= self.config.max_trial_retries:
            self._event(EventKind.TRIAL, f"trial {trial.id} lost with {trial.host}; "
                        "re-queued with the same parameters", trial_id=trial.id,
                        host=trial.host, level=EventLevel.WARNING)
            self._new_trial(now, retry_of=lost)
        else:
            book.update(trial.id, status=S.FAILED, message=f"{lost.message}; retry budget spent")
            self._observe(book[trial.id])

    def _check_budgets(self, now: float) -> None:
        book = self._book
        if not self._out_of_time(now):
            late = self.config.max_trial_duration
            if late is None:
                return
            for trial in book.with_status(S.RUNNING):
                if (trial.started_at and trial.id not in book.kill_sent
                        and now - trial.started_at > late + self.config.kill_grace_period + 30):
                    self._kill(trial, S.EARLY_STOPPED, "ran past maxTrialDuration")
            return
        for trial in book.with_status(S.RUNNING):
            if trial.id not in book.kill_sent:
                self._kill(trial, S.SYS_CANCELED, "maxExperimentDuration reached")
        self._cancel_waiting(S.SYS_CANCELED, "maxExperimentDuration reached")

    def _cancel_waiting(self, status: TrialStatus, message: str) -> None:
        book = self._book
        while book.queue:
            book.update(book.queue.popleft(), status=status, message=message)

    def _kill(self, trial: TrialRecord, status: TrialStatus, message: str) -> None:
        book = self._book
        book.kill_sent.add(trial.id)
        book.update(trial.id, status=status, message=message, ended_at=self.clock.now())
        handle = book.handles.get(trial.id)
        if trial.host in self.backend_of:
            backend = self.backend_of[trial.host or ""]
            backend.release(trial.id)
            if handle is not None and backend.kill(handle, self.config.kill_grace_period):
                book.kills_out.add(trial.id)  # the experiment ends only once it is answered
        self._observe(book[trial.id])


_HANDLERS: dict[ReportKind, Callable[[TrialFlow, Report], None]] = {
    ReportKind.LAUNCHED: TrialFlow._on_launched,
    ReportKind.LAUNCH_FAILED: TrialFlow._on_launch_failed,
    ReportKind.LAUNCH_LOST: TrialFlow._on_launch_lost,
    ReportKind.LAUNCH_REFUSED: TrialFlow._on_launch_refused,
    ReportKind.POLLED: TrialFlow._on_polled,
    ReportKind.TAILS: TrialFlow._on_tails,
    ReportKind.KILLED: TrialFlow._on_killed,
    ReportKind.HOST_READY: TrialFlow._on_host,
    ReportKind.HOST_DOWN: TrialFlow._on_host,
    ReportKind.HOST_EVENT: TrialFlow._on_host,
}

