"""Curvefitting: NNI's learning-curve extrapolation (Domhan et al., IJCAI 2015).

From ``start_step`` on, every ``gap`` steps, the trial's curve (as scores: negated when
minimizing, so curves rise) is extrapolated to step ``epoch_num`` by a weighted ensemble of
learning-curve models whose parameters and weights are sampled by Markov chain Monte Carlo
(``_curves``: least-squares start, then Metropolis-Hastings; the prediction is the mean of the
sampled predictions). The trial is stopped when that prediction is below ``threshold`` times
the best final of the succeeded trials (minimizing: above the best divided by ``threshold``).
Without a succeeded trial, or when no model fits, it continues.

The sampler's random numbers are seeded from the curve itself, so a verdict is a pure
function of ``(trial, others)``: the same on every replay, and the assessor keeps no state.
Its work is fixed (9-10 ms of CPU a decision), run on the controller's assessor
thread.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

from remotetune.assessors import _curves
from remotetune.assessors._base import Assessor, TrialView, Verdict, float_arg, fmt, int_arg
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode, TrialStatus


def curve_seed(values: Sequence[float], at: int) -> int:
    """The sampler's seed for this curve and target: the same inputs, the same numbers."""
    text = ",".join(repr(float(v)) for v in values) + f"@{at}"
    return zlib.crc32(text.encode())


def predict(values: Sequence[float], at: int) -> float | None:
    """The ensemble's predicted value of the curve at step ``at`` (steps are 1-based), or
    None when it is too short or no model fits."""
    found = _curves.predict(values, at, seed=curve_seed(values, at))
    return None if found is None else found.mean


class CurvefittingAssessor(Assessor):
    def __init__(
        self,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        epoch_num: int = 20,
        start_step: int = 6,
        threshold: float = 0.95,
        gap: int = 1,
    ) -> None:
        super().__init__(optimize_mode)
        self.epoch_num = int_arg("Curvefitting", "epoch_num", epoch_num, 1)
        self.start_step = int_arg("Curvefitting", "start_step", start_step, 0)
        self.threshold = float_arg("Curvefitting", "threshold", threshold, 0.0, 1.0)
        self.gap = int_arg("Curvefitting", "gap", gap, 1)
        if self.start_step > self.epoch_num:
            raise AssessorError("Curvefitting: start_step must be <= epoch_num")
        import numpy  # noqa: F401 - paid here, not at the first decision

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        step = len(trial.points)
        if step < max(self.start_step, 3) or (step - self.start_step) % self.gap:
            return Verdict.keep(f"step {step}: not a step to assess")
        finals = [o.final for o in others
                  if o.status is TrialStatus.SUCCEEDED and o.final is not None
                  and math.isfinite(o.final)]
        if not finals:
            return Verdict.keep("no succeeded trial to compare with")
        best = max(finals, key=self.score)
        scores = [self.score(v) for v in trial.values]
        found = _curves.predict(scores, self.epoch_num, seed=curve_seed(scores, self.epoch_num))
        if found is None:
            return Verdict.keep("no learning-curve model fits yet")
        predicted = self.score(found.mean)
        maximize = self.optimize_mode is OptimizeMode.MAXIMIZE
        bar = self.threshold * best if maximize else best / max(self.threshold, 1e-12)
        if self.better(bar, predicted):
            sign = "<" if maximize else ">"
            return Verdict.halt(
                f"predicted {fmt(predicted)} (sd {fmt(found.sd)}) at step {self.epoch_num} "
                f"(from step {step}) {sign} {self.threshold} x best {fmt(best)}"
            )
        return Verdict.keep(f"predicted {fmt(predicted)} at step {self.epoch_num}")
