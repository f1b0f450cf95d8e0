"""What the tuner learns from a trial an assessor stopped.

The rule (NNI's): an early-stopped trial's value for the tuner is its final result when it
reported one before it was stopped, else its last intermediate result, else None (then the
tuner sees a stopped trial without a value; TPE records it as pruned). The last intermediate
is the trial's quality at the budget it was given; it is usually worse than the trials that
ran on, which is what the tuner should learn. The controller calls :func:`value_for_tuner`
and passes the result to ``Tuner.observe(..., value, TrialStatus.EARLY_STOPPED)``.
"""

from __future__ import annotations

import math

from remotetune.assessors._base import TrialView
from remotetune.model import TrialStatus


def value_for_tuner(trial: TrialView) -> float | None:
    """The value ``Tuner.observe`` gets for a finished trial (see the module's rule)."""
    if trial.final is not None and math.isfinite(trial.final):
        return trial.final
    if trial.status is TrialStatus.EARLY_STOPPED and trial.points:
        return trial.points[-1].value
    return None
