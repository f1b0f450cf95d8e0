"""The trial book: the one owner of trial state.

It checks every status change against :data:`ALLOWED`, keeps the trials indexed by status
and by host, holds each trial's metric curve, and is the only caller of the store's trial
and metric writes. Every operation costs what it touches, not the number of trials ever
made. Readers on other threads (the live view) get copies under its lock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from remotetune.backends import TrialHandle
from remotetune.errors import RemotetuneError
from remotetune.metrics import MetricLineError, decode_metric_line
from remotetune.model import MetricKind, MetricPoint, OptimizeMode, TrialRecord, TrialStatus
from remotetune.store import Store

S = TrialStatus
_ENDED = (S.SUCCEEDED, S.FAILED, S.EARLY_STOPPED, S.USER_CANCELED, S.SYS_CANCELED)

# status -> the statuses it may move to (staying put is always allowed)
ALLOWED: dict[TrialStatus, frozenset[TrialStatus]] = {
    S.WAITING: frozenset({S.RUNNING, S.USER_CANCELED, S.SYS_CANCELED}),
    S.RUNNING: frozenset({S.WAITING, S.LOST, *_ENDED}),  # WAITING: never started, re-queued
    S.LOST: frozenset({S.FAILED}),  # its retry budget was spent
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.EARLY_STOPPED: frozenset(),
    S.USER_CANCELED: frozenset(),
    S.SYS_CANCELED: frozenset(),
}


class TransitionError(RemotetuneError):
    """A trial was asked to move between statuses that the table does not allow."""


@dataclass(frozen=True)
class BadLine:
    line: str
    error: str


class TrialBook:
    def __init__(self, store: Store, experiment_id: str, mode: OptimizeMode) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.mode = mode
        self._trials: dict[str, TrialRecord] = {}
        self._by_status: dict[TrialStatus, dict[str, None]] = {s: {} for s in TrialStatus}
        self._by_host: dict[str, dict[str, None]] = {}
        self._curves: dict[str, list[MetricPoint]] = {}
        self.queue: deque[str] = deque()  # WAITING trial ids, in launch order
        self.handles: dict[str, TrialHandle] = {}
        self.offsets: dict[str, int] = {}
        self.launching: set[str] = set()
        self.finalizing: set[str] = set()  # ended, tails not fetched yet
        self.kill_sent: set[str] = set()
        self.next_parameter_id = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._trials)

    def __getitem__(self, trial_id: str) -> TrialRecord:
        return self._trials[trial_id]

    def get(self, trial_id: str) -> TrialRecord | None:
        return self._trials.get(trial_id)

    def with_status(self, status: TrialStatus) -> list[TrialRecord]:
        return [self._trials[i] for i in self._by_status[status]]

    def count(self, status: TrialStatus) -> int:
        return len(self._by_status[status])

    def on_host(self, host: str, status: TrialStatus) -> list[TrialRecord]:
        ids = self._by_host.get(host, {})
        return [self._trials[i] for i in ids if self._trials[i].status is status]

    def counted(self) -> int:
        """Trials that count toward maxTrialNumber: every one but the LOST and the
        USER_CANCELED (stopped with the experiment; resume runs their parameters again)."""
        return len(self._trials) - self.count(S.LOST) - self.count(S.USER_CANCELED)

    def canceled_to_rerun(self) -> list[TrialRecord]:
        """USER_CANCELED trials that no later trial re-runs yet, oldest first."""
        rerun = {t.retry_of for t in self._trials.values() if t.retry_of}
        return sorted((t for t in self.with_status(S.USER_CANCELED) if t.id not in rerun),
                      key=lambda t: t.sequence)

    def history(self) -> tuple[TrialRecord, ...]:
        """Every trial, read-only (what a tuner sees)."""
        return tuple(self._trials.values())

    def snapshot(self) -> tuple[TrialRecord, ...]:
        """Every trial, for another thread."""
        with self._lock:
            return tuple(self._trials.values())

    def curve(self, trial_id: str) -> tuple[MetricPoint, ...]:
        """The trial's intermediate results, in order (what an assessor reads)."""
        return tuple(self._curves.get(trial_id, ()))

    def status_counts(self) -> dict[TrialStatus, int]:
        return {s: len(ids) for s, ids in self._by_status.items() if ids}

    # ------------------------------------------------------------------ loading

    def load(self, records: Iterable[TrialRecord]) -> None:
        """A resumed experiment's trials, as the store has them."""
        for rec in records:
            self._index(rec)
            self.next_parameter_id = max(self.next_parameter_id, rec.parameter_id + 1)
            if rec.status is S.RUNNING:
                self.offsets[rec.id] = self.store.metrics_offset(self.experiment_id, rec.id)
                self._curves[rec.id] = [
                    p for p in self.store.metrics(self.experiment_id, rec.id)
                    if p.kind is MetricKind.INTERMEDIATE]
            elif rec.status is S.WAITING:
                self.queue.append(rec.id)

    # ------------------------------------------------------------------ writing

    def add(self, trial: TrialRecord) -> TrialRecord:
        if trial.id in self._trials:
            raise TransitionError(f"trial {trial.id} is already in the book")
        self.store.save_trial(trial)
        self._index(trial)
        if trial.status is S.WAITING:
            self.queue.append(trial.id)
        return trial

    def update(self, trial_id: str, **changes: Any) -> TrialRecord:
        old = self._trials[trial_id]
        new = dataclasses.replace(old, **changes) if changes else old
        if new.status is not old.status and new.status not in ALLOWED[old.status]:
            raise TransitionError(
                f"trial {trial_id}: {old.status.value} -> {new.status.value} is not allowed")
        self.store.save_trial(new)
        self._index(new, old)
        return new

    def requeue_front(self, trial_id: str) -> None:
        self.queue.appendleft(trial_id)

    def _index(self, new: TrialRecord, old: TrialRecord | None = None) -> None:
        with self._lock:
            self._trials[new.id] = new
            if old is not None:
                self._by_status[old.status].pop(new.id, None)
                if old.host and old.host != new.host:
                    self._by_host.get(old.host, {}).pop(new.id, None)
            self._by_status[new.status][new.id] = None
            if new.host:
                self._by_host.setdefault(new.host, {})[new.id] = None

    def ingest(self, trial_id: str, lines: Iterable[str], offset: int,
               now: float) -> list[BadLine]:
        """Decode new metric lines, store them with the new offset, update the summary."""
        trial = self._trials[trial_id]
        curve = self._curves.setdefault(trial_id, [])
        points: list[MetricPoint] = []
        bad: list[BadLine] = []
        base = trial.intermediate_count + (1 if trial.final is not None else 0)
        final, best, latest = trial.final, trial.best_intermediate, trial.latest_intermediate
        count = trial.intermediate_count
        for n, line in enumerate(lines):
            try:
                point = decode_metric_line(line, trial_id, default_seq=base + n, now=now)
            except MetricLineError as exc:
                bad.append(BadLine(line, str(exc)))
                continue
            points.append(point)
            if point.kind is MetricKind.FINAL:
                final = point.value if final is None else final
                continue
            curve.append(point)
            count += 1
            latest = point.value
            if best is None or self.mode.better(point.value, best):
                best = point.value
        self.store.add_metrics(self.experiment_id, trial_id, points, offset)
        self.offsets[trial_id] = offset
        self.update(trial_id, final=final, best_intermediate=best,
                    latest_intermediate=latest, intermediate_count=count)
        return bad
