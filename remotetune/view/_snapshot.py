"""The immutable picture of an experiment that the view draws, and what it derives from it.

A :class:`Snapshot` is built either by the controller (cheaply, from its in-memory state,
during ``run``) or from the store (``remotetune view``). Building it from the store only
reads; the view never writes and never talks to a host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    HostState,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)
from remotetune.view._safe import clean, clean_record

if TYPE_CHECKING:
    from remotetune.store import Store

EVENTS_READ = 50  # events read from the store per snapshot (the view shows the last few)


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame of the view shows. Immutable, so it can cross threads."""

    experiment: ExperimentRecord
    trials: tuple[TrialRecord, ...]
    hosts: tuple[HostState, ...]
    events: tuple[EventRecord, ...]  # oldest first
    now: float
    waiting_reason: str | None = None  # why the next trial is not placed (from the slot table)

    def __post_init__(self) -> None:
        # Text from users, trials and hosts is data: cleaned once, before any renderer.
        object.__setattr__(self, "experiment", clean_record(self.experiment))
        object.__setattr__(self, "trials", tuple(clean_record(t) for t in self.trials))
        object.__setattr__(self, "hosts", tuple(clean_record(h) for h in self.hosts))
        object.__setattr__(self, "events", tuple(clean_record(e) for e in self.events))
        if self.waiting_reason is not None:
            object.__setattr__(self, "waiting_reason", clean(self.waiting_reason))

    @classmethod
    def from_store(cls, store: Store, experiment_id: str, *, now: float | None = None) -> Snapshot:
        """Read one snapshot of ``experiment_id`` from ``store`` (reads only).

        Raises :class:`remotetune.errors.ExperimentNotFound` for an unknown id. The store
        does not record the slot table's reason, so a waiting reason is derived from the
        last known host states.
        """
        experiment = store.experiment(experiment_id)  # also resolves an id prefix
        trials = tuple(store.trials(experiment.id))
        hosts = tuple(store.host_states(experiment.id))
        events = tuple(store.events(experiment.id, limit=EVENTS_READ))
        return cls(
            experiment=experiment,
            trials=trials,
            hosts=hosts,
            events=events,
            now=time.time() if now is None else now,
            waiting_reason=derive_waiting_reason(experiment, trials, hosts),
        )

    # What the panels derive. Each is O(trials); the view calls them once per frame.

    def count(self, *statuses: TrialStatus) -> int:
        return sum(1 for t in self.trials if t.status in statuses)

    @property
    def done(self) -> int:
        """Trials that count toward ``maxTrialNumber``."""
        return sum(1 for t in self.trials if t.status.counts_as_done())

    @property
    def elapsed(self) -> float | None:
        exp = self.experiment
        start = exp.started_at if exp.started_at is not None else exp.created_at
        if start is None:
            return None
        end = exp.ended_at if exp.status.is_finished() and exp.ended_at is not None else self.now
        return max(0.0, end - start)

    def best(self) -> TrialRecord | None:
        """The trial with the best final metric (honouring the optimize mode), if any."""
        return best_by(self.trials, self.experiment.optimize_mode, final=True)

    def eta(self) -> float | None:
        """Seconds until ``maxTrialNumber`` trials are done, capped by the time budget.

        From the mean duration of finished trials and the current concurrency (running trials,
        at least 1, at most ``trialConcurrency`` when nothing runs). ``None`` when unknown.
        """
        exp = self.experiment
        if exp.status.is_finished():
            return None
        budget_left = None
        if exp.max_experiment_duration is not None and self.elapsed is not None:
            budget_left = max(0.0, exp.max_experiment_duration - self.elapsed)
        by_trials = None
        if exp.max_trial_number is not None:
            durations = [
                t.ended_at - t.started_at
                for t in self.trials
                if t.status.counts_as_done() and t.started_at is not None and t.ended_at is not None
            ]
            if durations:
                mean = sum(durations) / len(durations)
                remaining = max(0, exp.max_trial_number - self.done)
                concurrency = self.count(TrialStatus.RUNNING) or max(1, exp.trial_concurrency)
                by_trials = remaining * mean / concurrency
        if by_trials is None:
            return budget_left
        if budget_left is None:
            return by_trials
        return min(by_trials, budget_left)

    def ordered_trials(self) -> list[TrialRecord]:
        """Running first (oldest start first), then best final first, then the rest (newest
        first)."""
        return order_trials(self.trials, self.experiment.optimize_mode)


def best_by(
    trials: tuple[TrialRecord, ...] | list[TrialRecord], mode: OptimizeMode, *, final: bool
) -> TrialRecord | None:
    best: TrialRecord | None = None
    best_value = 0.0
    for trial in trials:
        value = trial.final if final else trial.best_intermediate
        if value is None:
            continue
        if best is None or mode.better(value, best_value):
            best, best_value = trial, value
    return best


def order_trials(
    trials: tuple[TrialRecord, ...] | list[TrialRecord], mode: OptimizeMode
) -> list[TrialRecord]:
    running = [t for t in trials if t.status is TrialStatus.RUNNING]
    running.sort(key=lambda t: (t.started_at or 0.0, t.sequence))
    scored = [t for t in trials if t.status is not TrialStatus.RUNNING and t.final is not None]
    sign = -1.0 if mode is OptimizeMode.MAXIMIZE else 1.0
    scored.sort(key=lambda t: (sign * (t.final or 0.0), t.sequence))
    rest = [t for t in trials if t.status is not TrialStatus.RUNNING and t.final is None]
    rest.sort(key=lambda t: (t.status is not TrialStatus.WAITING, -t.sequence))
    return running + scored + rest


def derive_waiting_reason(
    experiment: ExperimentRecord,
    trials: tuple[TrialRecord, ...],
    hosts: tuple[HostState, ...],
) -> str | None:
    """Why waiting trials are not placed, judged from the last known host states."""
    if experiment.status.is_finished():
        return None
    waiting = sum(1 for t in trials if t.status is TrialStatus.WAITING)
    if not waiting:
        return None
    if not hosts:
        return "no host has been reached yet"
    reachable = [h for h in hosts if h.reachable]
    if not reachable:
        return "every host is unreachable"
    running = sum(1 for t in trials if t.status is TrialStatus.RUNNING)
    if running >= experiment.trial_concurrency:
        return f"trialConcurrency reached ({running}/{experiment.trial_concurrency} running)"
    slots = sum(h.slots for h in reachable)
    busy = sum(h.running for h in reachable)
    if slots and busy >= slots:
        return f"all {slots} slots on reachable hosts are busy"
    return None
