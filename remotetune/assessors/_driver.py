"""``EarlyStopping``: the one object the controller talks to about early stopping.

It wraps an assessor with the bookkeeping the contract asks of its caller: every new
intermediate result is assessed once, in step order, and a trial already stopped is not
assessed again. It returns decisions (:class:`Stop`) and never acts: the controller kills the
trial through its backend, marks it EARLY_STOPPED, records ``stop.message`` as the event and
the trial's message, and later calls :meth:`finished`. Its own state (the last step assessed
per trial) is rebuilt by :meth:`restore` from the stored curves, with the assessor's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from remotetune.assessors._base import Assessor, TrialView, Verdict


@dataclass(frozen=True)
class Stop:
    """A decision to stop ``trial_id`` after ``step``; ``message`` is the event's text."""

    trial_id: str
    step: int
    verdict: Verdict
    message: str


class EarlyStopping:
    def __init__(self, assessor: Assessor, name: str) -> None:
        self.assessor = assessor
        self.name = name
        self._assessed: dict[str, int] = {}  # trial id -> last step assessed
        self._stopped: set[str] = set()

    def restore(self, history: Sequence[TrialView]) -> None:
        """After a restart, before anything else: the store's trials with their curves."""
        self.assessor.restore(history)
        for view in history:
            self._assessed[view.trial_id] = view.last_step

    def reported(self, trial: TrialView, others: Sequence[TrialView]) -> Stop | None:
        """``trial`` (running) has new intermediate results: assess each new step; the first
        stop decision, or None to let it run."""
        if trial.trial_id in self._stopped or trial.status.is_finished():
            return None
        done = self._assessed.get(trial.trial_id, 0)
        for point in trial.points:
            if point.step <= done:
                continue
            verdict = self.assessor.assess(trial.upto(point.step), others)
            self._assessed[trial.trial_id] = point.step
            if verdict.stop:
                self._stopped.add(trial.trial_id)
                return Stop(trial.trial_id, point.step, verdict,
                            f"stopped by {self.name}: {verdict.reason}")
        return None

    def finished(self, trial: TrialView) -> None:
        """``trial`` ended (any status, early-stopped included), with its whole curve."""
        self.assessor.trial_end(trial)
        self._assessed.pop(trial.trial_id, None)
        self._stopped.discard(trial.trial_id)
