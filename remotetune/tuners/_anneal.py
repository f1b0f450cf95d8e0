"""Anneal: simulated annealing around the best trials, after hyperopt's ``anneal`` (NNI's
``Anneal``), on the priors' quantile scale (see ``_unit``).

What it really is: the first suggestion is random. Each later one picks a reference among
the finished trials, ranked best first, at index ``~ Exponential(mean=avg_best_idx)`` (so
usually the best or one of the next few), then moves every parameter. A number is drawn
uniformly in a window of width ``w = 1 / (1 + shrink_coef * n)`` around the reference, in
quantile space (``n`` = finished trials with a metric); a choice switches to a random option
with probability ``w``. The search narrows as results come in. Failed trials are ignored.
Class arguments: ``avg_best_idx`` (2.0), ``shrink_coef`` (0.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners._base import Tuner, float_arg
from remotetune.tuners._unit import move_all


class AnnealTuner(Tuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        avg_best_idx: float = 2.0,
        shrink_coef: float = 0.1,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self.avg_best_idx = float_arg("Anneal", "avg_best_idx", avg_best_idx, 1e-3, 1e6)
        self.shrink_coef = float_arg("Anneal", "shrink_coef", shrink_coef, 0.0, 1e6)
        self._results: list[tuple[float, int, dict[str, Any]]] = []  # (score, id, params)

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        if not self._results:
            return self.space.sample(self.rng)
        ranked = sorted(self._results, key=lambda r: (-r[0], r[1]))
        index = min(int(self.rng.expovariate(1.0 / self.avg_best_idx)), len(ranked) - 1)
        width = 1.0 / (1.0 + self.shrink_coef * len(ranked))
        return move_all(self.space.parameters, ranked[index][2], self.rng, width)

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        if value is not None and self.space.contains(parameters):
            self._results.append((self.score(value), parameter_id, dict(parameters)))
