"""Successive-halving brackets, shared by Hyperband and BOHB (NNI's formulas).

With ``eta`` and a largest budget ``R`` (BOHB: ``max_budget``, and ``R / min_budget`` sets the
number of brackets):

* ``s_max = floor(log_eta(R / min) + 1e-6)`` (Hyperband: ``min = 1``);
* bracket ``s`` (``s_max`` down to 0) starts ``n = ceil((s_max + 1) * eta**s / (s + 1) - 1e-6)``
  configurations at ``r = R / eta**s``;
* its round ``i`` (0..s) runs ``n_i = floor(n / eta**i + 1e-6)`` configurations with budget
  ``r_i = floor(r * eta**i + 1e-6)``: the best ``n_i`` of round ``i - 1`` (by their value;
  failed trials rank last), each restarted as a new trial with the larger budget.

A trial's budget is ``parameters["TRIAL_BUDGET"]``, as in NNI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EPS = 1e-6
BUDGET_KEY = "TRIAL_BUDGET"


def s_max(top: float, eta: int, bottom: float = 1.0) -> int:
    return max(0, math.floor(math.log(top / bottom, eta) + EPS))


def rounds(s: int, smax: int, eta: int, top: float) -> list[tuple[int, int]]:
    """``(n_i, r_i)`` for each round of bracket ``s``."""
    n = math.ceil((smax + 1) * eta**s / (s + 1) - EPS)
    r = top / eta**s
    return [(math.floor(n / eta**i + EPS), math.floor(r * eta**i + EPS)) for i in range(s + 1)]


@dataclass
class Bracket:
    """One successive-halving run: which configurations each round ran and how they did."""

    key: str  # "<hyperband iteration>-<s>"
    s: int
    plan: list[tuple[int, int]]
    configs: list[dict[int, dict[str, Any]]] = field(default_factory=list)  # round -> pid -> params
    scores: list[dict[int, float]] = field(default_factory=list)  # round -> pid -> score
    done: list[int] = field(default_factory=list)  # round -> trials finished

    @property
    def generated(self) -> bool:
        """Every round has been generated (NNI's ``is_completed``)."""
        return len(self.configs) > self.s

    @property
    def finished(self) -> bool:
        return self.generated and self.done[-1] >= self.plan[-1][0]

    def open_round(self) -> int:
        self.configs.append({})
        self.scores.append({})
        self.done.append(0)
        return len(self.configs) - 1

    def finish(self, round_: int, pid: int, score: float) -> list[dict[str, Any]] | None:
        """Record a finished trial; when its round is complete, the configurations promoted
        to the next round (without their budget), best first; else None."""
        if pid in self.scores[round_]:
            return None
        self.scores[round_][pid] = score
        self.done[round_] += 1
        if self.done[round_] < self.plan[round_][0] or round_ + 1 != len(self.configs):
            return None
        if round_ >= self.s:
            return None
        ranked = sorted(self.scores[round_].items(), key=lambda kv: (-kv[1], kv[0]))
        keep = self.plan[round_ + 1][0]
        return [strip_budget(self.configs[round_][pid]) for pid, _ in ranked[:keep]]


def strip_budget(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != BUDGET_KEY}


def score_of(value: float | None, maximize: bool) -> float:
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if maximize else -value
