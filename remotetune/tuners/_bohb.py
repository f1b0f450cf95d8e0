"""BOHB (Falkner et al., ICML 2018) with NNI's brackets and Optuna's TPE as its model.

Brackets as NNI's BOHB: ``s_max = floor(log_eta(max_budget / min_budget))``, bracket ``s``
starts ``ceil((s_max + 1) * eta**s / (s + 1))`` configurations at ``max_budget / eta**s``, and
the next bracket opens only when the current one has finished (``suggest`` returns None with
``is_exhausted() == False`` meanwhile).

A new configuration is drawn at random with probability ``random_fraction``, or while no
budget has ``min_points_in_model`` results (default: the number of parameters + 1); otherwise
from Optuna's TPE fitted on the results of the *largest* budget that has that many, with
``num_samples`` candidates for the expected improvement. NNI's ``top_n_percent``,
``bandwidth_factor`` and ``min_bandwidth`` tune its own KDE; Optuna's TPE has no counterpart
(its ``gamma`` is deprecated since Optuna 4.9), so they are accepted and ignored with a
warning when set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners._base import float_arg, int_arg
from remotetune.tuners._hyperband import BracketTuner

logger = logging.getLogger(__name__)


class BohbTuner(BracketTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        min_budget: int = 1,
        max_budget: int = 3,
        eta: int = 3,
        min_points_in_model: int | None = None,
        top_n_percent: int | None = None,
        num_samples: int = 64,
        random_fraction: float = 1 / 3,
        bandwidth_factor: float | None = None,
        min_bandwidth: float | None = None,
    ) -> None:
        low = int_arg("BOHB", "min_budget", min_budget, 1)
        high = int_arg("BOHB", "max_budget", max_budget, 1)
        if high < low:
            raise TunerError("BOHB: max_budget must be >= min_budget")
        super().__init__(space, optimize_mode, seed=seed, top=high,
                         eta=int_arg("BOHB", "eta", eta, 2), bottom=low, wait_for="finished")
        self.min_points_in_model = len(space.parameters) + 1 if min_points_in_model is None \
            else int_arg("BOHB", "min_points_in_model", min_points_in_model, 1)
        self.num_samples = int_arg("BOHB", "num_samples", num_samples, 1)
        self.random_fraction = float_arg("BOHB", "random_fraction", random_fraction, 0.0, 1.0)
        for name, value in (("top_n_percent", top_n_percent),
                            ("bandwidth_factor", bandwidth_factor),
                            ("min_bandwidth", min_bandwidth)):
            if value is not None:
                logger.warning("BOHB: %s has no counterpart in Optuna's TPE; ignored", name)
        self.results: dict[int, list[tuple[dict[str, Any], float]]] = {}  # budget -> results

    def learn(self, params: Mapping[str, Any], budget: int, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.results.setdefault(budget, []).append((dict(params), float(value)))

    def model_budget(self) -> int | None:
        """The largest budget with enough results for a model, or None."""
        ready = [b for b, r in self.results.items() if len(r) >= self.min_points_in_model]
        return max(ready) if ready else None

    def sample(self, budget: int) -> dict[str, Any]:
        model = self.model_budget()
        if model is None or self.rng.random() < self.random_fraction:
            return self.space.sample(self.rng)
        return self._tpe(self.results[model])

    def _tpe(self, results: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
        from remotetune.tuners._optuna import TpeTuner

        tpe = TpeTuner(self.space, self.optimize_mode, seed=self.rng.randrange(2**31),
                       n_startup_trials=0, n_ei_candidates=self.num_samples,
                       constant_liar=False)
        tpe.restore([
            TrialRecord(id=f"b{i}", experiment_id="bohb", sequence=i, parameters=p,
                        status=TrialStatus.SUCCEEDED, parameter_id=i, final=v)
            for i, (p, v) in enumerate(results)
        ])
        params = tpe.suggest(len(results), ())
        return params if params is not None else self.space.sample(self.rng)
