"""ASHA: asynchronous successive halving as an assessor (Li et al., MLSys 2020).

Rungs sit at ``min_resource * eta**k`` steps (k = 0, 1, ...; below ``max_resource`` when it is
given). When a trial reports the step of a rung it is ranked against every trial that reached
that rung *before it* (by the time of their report at that rung); it goes on only when it is in
the top ``ceil(n / eta)`` of those ``n`` values (itself included). The first trial at a rung
always goes on, so promotions never wait for a rung to fill and no GPU sits idle. Between rungs
it always continues. Verdicts are a pure function of the curves (the report times order them),
so nothing needs restoring after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from remotetune.assessors._base import Assessor, TrialView, Verdict, fmt, int_arg
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode


class AshaAssessor(Assessor):
    def __init__(
        self,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        min_resource: int = 1,
        eta: int = 3,
        max_resource: int | None = None,
    ) -> None:
        super().__init__(optimize_mode)
        self.min_resource = int_arg("ASHA", "min_resource", min_resource, 1)
        self.eta = int_arg("ASHA", "eta", eta, 2)
        self.max_resource = (
            None if max_resource is None else int_arg("ASHA", "max_resource", max_resource, 1)
        )
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise AssessorError("ASHA: max_resource must be >= min_resource")

    def rung_of(self, step: int) -> int | None:
        """The rung index whose step is ``step``, or None when ``step`` is not a rung."""
        if step < self.min_resource or (self.max_resource and step >= self.max_resource):
            return None
        k, at = 0, self.min_resource
        while at < step:
            k, at = k + 1, at * self.eta
        return k if at == step else None

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        step = trial.last_step
        rung = self.rung_of(step)
        if rung is None:
            return Verdict.keep(f"step {step} is not a rung")
        mine = trial.points[-1]
        rivals = []
        for o in others:
            value, when = o.value_at(step), o.time_at(step)
            if value is not None and when is not None and (when, o.trial_id) < (
                mine.time, trial.trial_id
            ):
                rivals.append(value)
        n = len(rivals) + 1
        keep = math.ceil(n / self.eta)
        rank = sum(1 for v in rivals if self.better(v, mine.value))  # ties favour this trial
        where = f"rung {rung} (step {step})"
        if rank < keep:
            return Verdict.keep(f"{fmt(mine.value)} is #{rank + 1} of {n} at {where}")
        return Verdict.halt(
            f"{fmt(mine.value)} at {where} is #{rank + 1} of {n}, not in the top {keep} "
            f"(1/{self.eta})"
        )
