"""Medianstop: NNI's median stopping rule.

At step ``t >= start_step`` a trial is stopped when its best value so far is worse than the
median, over the trials that *succeeded* with at least ``t`` intermediate results, of their
running average at step ``t`` (NNI's rule; Golovin et al., "Google Vizier", 2017). With no such
trial yet it continues.
"""

from __future__ import annotations

from collections.abc import Sequence

from remotetune.assessors._base import Assessor, TrialView, Verdict, fmt, int_arg
from remotetune.model import OptimizeMode, TrialStatus


class MedianstopAssessor(Assessor):
    def __init__(
        self, optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE, *, start_step: int = 0
    ) -> None:
        super().__init__(optimize_mode)
        self.start_step = int_arg("Medianstop", "start_step", start_step, 0)

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        step = len(trial.points)
        if step == 0 or step < self.start_step:
            return Verdict.keep(f"step {step} < start_step {self.start_step}")
        averages = sorted(
            sum(o.values[:step]) / step
            for o in others
            if o.status is TrialStatus.SUCCEEDED and len(o.points) >= step
        )
        if not averages:
            return Verdict.keep(f"no succeeded trial has reached step {step}")
        maximize = self.optimize_mode is OptimizeMode.MAXIMIZE
        best = max(trial.values) if maximize else min(trial.values)
        # NNI's median: the lower middle when maximizing, the upper one when minimizing
        median = averages[(len(averages) - 1) // 2] if maximize else averages[len(averages) // 2]
        n = len(averages)
        if self.better(median, best):
            sign = "<" if maximize else ">"
            return Verdict.halt(
                f"best {fmt(best)} at step {step} {sign} median {fmt(median)} of {n} trials"
            )
        return Verdict.keep(f"best {fmt(best)} at step {step} vs median {fmt(median)} of {n}")
