"""The controller's side of early stopping, and of a tuner that has nothing *now*.

:class:`AssessFlow` is a part of :class:`~remotetune.controller.Controller` (as
:class:`~remotetune.controller._trials.TrialFlow` is). It keeps one frozen
:class:`~remotetune.assessors.TrialView` per trial, updated from the trial book when a trial
reports or ends, and hands new results to :class:`AssessWorker`: one thread that runs the
assessor (assessors are not thread-safe, and a curve fit may take 20 ms), so the loop never
waits on it. Decisions come back on the controller's inbox as :class:`AssessDone` and are
applied in the loop: a stop kills the trial through its backend (``_kill``), marks it
EARLY_STOPPED with ``stop.message`` as its message, and records the event.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from remotetune.assessors import (
    CurvePoint,
    EarlyStopping,
    Stop,
    TrialView,
    create_assessor,
    value_for_tuner,
)
from remotetune.backends import Envelope
from remotetune.config import ExperimentConfig
from remotetune.controller._book import TrialBook
from remotetune.model import EventKind, EventLevel, TrialRecord, TrialStatus
from remotetune.store import Store

log = logging.getLogger(__name__)
S = TrialStatus


@dataclass(frozen=True)
class AssessDone:
    """The worker's answer for one trial: a stop decision, or an assessor error."""

    trial_id: str
    stop: Stop | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Job:
    finished: bool  # True: es.finished(view); False: es.reported(view, others)
    view: TrialView
    snapshot: tuple[TrialView, ...] = ()


class AssessWorker:
    """One thread that owns the :class:`EarlyStopping` driver; jobs run in the order sent."""

    def __init__(self, es: EarlyStopping, sink: Callable[[Envelope], None]) -> None:
        self.es = es
        self._sink = sink
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="remotetune-assessor",
                                        daemon=True)
        self._thread.start()

    def reported(self, view: TrialView, snapshot: tuple[TrialView, ...]) -> None:
        self._jobs.put(_Job(False, view, snapshot))

    def finished(self, view: TrialView) -> None:
        self._jobs.put(_Job(True, view))

    def close(self) -> None:
        """Stop after the jobs already sent; never waits (a stuck assessor is abandoned)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if job.finished:
                    self.es.finished(job.view)
                    continue
                tid = job.view.trial_id
                others = [v for v in job.snapshot if v.trial_id != tid]
                stop = self.es.reported(job.view, others)
                if stop is not None:
                    self._sink(Envelope(None, AssessDone(tid, stop)))
            except Exception as exc:  # noqa: BLE001 - an assessor bug is an event, not a crash
                log.debug("assessor failed", exc_info=True)
                self._sink(Envelope(None, AssessDone(job.view.trial_id, error=repr(exc))))


def _points(curve: Iterable[Any]) -> tuple[CurvePoint, ...]:
    """The assessor's curve from the book's points (non-finite values skipped, as
    ``TrialView.of`` does)."""
    out: list[CurvePoint] = []
    for p in curve:
        if p.value == p.value and abs(p.value) != float("inf"):
            out.append(CurvePoint(len(out) + 1, float(p.value), p.time))
    return tuple(out)


def _view(trial: TrialRecord, points: tuple[CurvePoint, ...]) -> TrialView:
    return TrialView(trial.id, trial.parameters, points, trial.status, trial.final,
                     trial.parameter_id)


class AssessFlow:
    config: ExperimentConfig
    store: Store
    book: TrialBook | None
    inbox: queue.Queue[Envelope]
    tuner: Any
    tuner_waiting: bool
    _event: Callable[..., None]
    _kill: Callable[..., None]

    @property
    def experiment_id(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ start / end

    def _assess_start(self, existing: Sequence[TrialRecord]) -> list[TrialRecord]:
        """Build the assessor (restored from the store) and return ``existing`` as the tuner
        is to be restored from: an early-stopped trial carries ``value_for_tuner``'s value
        as its final, the value the tuner was given live."""
        self._views: dict[str, TrialView] = {}
        self._assessor: AssessWorker | None = None
        spec = self.config.assessor
        need = {r.id for r in existing if spec is not None or r.status is S.EARLY_STOPPED}
        views = {r.id: TrialView.of(r, self.store.metrics(self.experiment_id, r.id))
                 for r in existing if r.id in need}
        history = [dataclasses.replace(r, final=value_for_tuner(views[r.id]))
                   if r.status is S.EARLY_STOPPED and r.final is None else r for r in existing]
        if spec is None:
            return history
        es = EarlyStopping(create_assessor(
            spec.name, spec.class_args, code_directory=spec.code_directory,
            optimize_mode=self.config.optimize_mode), spec.name)
        es.restore(list(views.values()))  # before the worker starts: one thread at a time
        self._views = views
        self._assessor = AssessWorker(es, self.inbox.put)
        return history

    def _assess_close(self) -> None:
        worker = getattr(self, "_assessor", None)
        if worker is not None:
            worker.close()

    # ------------------------------------------------------------------ live

    def _assess_reported(self, trial_ids: Iterable[str]) -> None:
        """These running trials have new intermediate results: refresh their views and send
        them to the worker, with one snapshot of every trial for ``others``."""
        if getattr(self, "_assessor", None) is None:
            return
        book = self._book_
        fresh = []
        for tid in trial_ids:
            trial = book[tid]
            view = _view(trial, _points(book.curve(tid)))
            self._views[tid] = view
            if trial.status is S.RUNNING and tid not in book.kill_sent:
                fresh.append(view)
        if fresh:
            snapshot = tuple(self._views.values())
            assert self._assessor is not None
            for view in fresh:
                self._assessor.reported(view, snapshot)

    def _tuner_value(self, trial: TrialRecord) -> float | None:
        """What the tuner learns from ``trial`` (``value_for_tuner``); tells the assessor
        that the trial ended."""
        view = _view(trial, _points(self._book_.curve(trial.id)))  # this poll's lines included
        worker = getattr(self, "_assessor", None)
        if worker is not None:
            self._views[trial.id] = view
            worker.finished(view)
        return value_for_tuner(view)

    def _on_assessed(self, done: AssessDone) -> None:
        book = self._book_
        trial = book.get(done.trial_id)
        if done.error is not None:
            self._event(EventKind.EXPERIMENT, f"assessor failed on trial {done.trial_id}: "
                        f"{done.error}", trial_id=done.trial_id, level=EventLevel.WARNING)
            return
        if (done.stop is None or trial is None or trial.status is not S.RUNNING
                or trial.id in book.kill_sent):
            return  # it ended meanwhile: the decision is moot
        self._event(EventKind.TRIAL, f"trial {trial.id} {done.stop.message}",
                    trial_id=trial.id, host=trial.host)
        self._kill(trial, S.EARLY_STOPPED, done.stop.message)

    # ------------------------------------------------------------------ tuner "not now"

    def _tuner_not_now(self) -> bool:
        """After ``suggest`` returned None: True (and wait for the next observe) when the
        tuner says it will have more later."""
        try:
            later = self.tuner.is_exhausted() is False
        except Exception:  # noqa: BLE001 - a tuner without the method is exhausted
            later = False
        self.tuner_waiting = later
        return later

    @property
    def _book_(self) -> TrialBook:
        assert self.book is not None
        return self.book

