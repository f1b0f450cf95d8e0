"""``nni.assessor``: the base class of NNI's custom assessors and their verdict.

remotetune drives a subclass through :class:`remotetune.assessors._nni.NniAssessor`:
``assess_trial(trial_job_id, trial_history)`` after each intermediate result (the history
holds the metrics' numbers, oldest first), ``trial_end(trial_job_id, success)`` when an
assessed trial ends. ``AssessResult.Bad`` (or False) stops the trial.
"""

from __future__ import annotations

import enum
from typing import List

from .recoverable import Recoverable
from .typehint import TrialMetric

__all__ = ["AssessResult", "Assessor"]


class AssessResult(enum.Enum):
    Good = True
    Bad = False


class Assessor(Recoverable):
    """Override ``assess_trial``; ``trial_end`` is optional."""

    def assess_trial(self, trial_job_id: str, trial_history: List[TrialMetric]) -> AssessResult:
        raise NotImplementedError("Assessor: assess_trial not implemented")

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        return None

    def _on_exit(self) -> None:
        return None

    def _on_error(self) -> None:
        return None
