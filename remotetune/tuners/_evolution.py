"""Evolution: regularized (aging) evolution, Real et al. 2019, for NNI's ``Evolution``.

What it really is: the first ``population_size`` suggestions are random. After that each
suggestion takes ``sample_size`` random members of the population (the last
``population_size`` finished trials with a metric, oldest dropped first), copies the best and
mutates one of its active parameters. A number is drawn uniformly in a window of
``mutation_scale`` around it, in the prior's quantile space (``_unit.move``); a choice takes
another option (inside a nested choice, an inner parameter may mutate instead). Failed trials
never join the population. Class arguments: ``population_size`` (32, NNI's default),
``sample_size`` (default ``max(2, population_size // 4)``), ``mutation_scale`` (0.2).
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import ParamType, SearchSpace
from remotetune.tuners._base import Tuner, float_arg, int_arg
from remotetune.tuners._unit import leaves, move


class EvolutionTuner(Tuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        population_size: int = 32,
        sample_size: int | None = None,
        mutation_scale: float = 0.2,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self.population_size = int_arg("Evolution", "population_size", population_size, 2)
        if sample_size is None:
            sample_size = max(2, self.population_size // 4)
        self.sample_size = int_arg("Evolution", "sample_size", sample_size, 1)
        if self.sample_size > self.population_size:
            raise TunerError(
                f"Evolution: class argument 'sample_size' ({sample_size}) must not exceed "
                f"'population_size' ({population_size})"
            )
        self.mutation_scale = float_arg("Evolution", "mutation_scale", mutation_scale, 1e-6, 1.0)
        self._population: collections.deque[tuple[float, dict[str, Any]]] = collections.deque(
            maxlen=self.population_size
        )

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        if len(self._population) < self.population_size:
            return self.space.sample(self.rng)
        contenders = self.rng.sample(list(self._population), self.sample_size)
        parent = max(contenders, key=lambda member: member[0])[1]
        return self._mutate(parent)

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        if value is not None and self.space.contains(parameters):
            self._population.append((self.score(value), copy.deepcopy(dict(parameters))))

    def _mutate(self, parent: dict[str, Any]) -> dict[str, Any]:
        child = copy.deepcopy(parent)
        active = leaves(self.space.parameters, child)
        p, value = active[self.rng.randrange(len(active))]
        if p.type is ParamType.CHOICE and len(p.options) > 1:
            others = [o for o in p.options if not _is_option(o, value)]
            option = others[self.rng.randrange(len(others))]
            new: Any = (
                {"_name": option.name, **{q.name: q.sample(self.rng) for q in option.params}}
                if option.nested
                else copy.deepcopy(option.value)
            )
        else:
            new = move(p, value, self.rng, self.mutation_scale)
        _replace(child, self.space.parameters, p.path, new)
        return child


def _is_option(option: Any, value: Any) -> bool:
    if option.nested:
        return isinstance(value, dict) and value.get("_name") == option.name
    return bool(option.value == value)


def _replace(values: dict[str, Any], params: Any, path: str, new: Any) -> bool:
    """Set the parameter at ``path`` (dotted, nested ones included) to ``new``."""
    for p in params:
        if p.name not in values:
            continue
        if p.path == path:
            values[p.name] = new
            return True
        v = values[p.name]
        if p.type is ParamType.CHOICE and isinstance(v, dict) and "_name" in v:
            option = next((o for o in p.options if o.name == v["_name"]), None)
            if option is not None and _replace(v, option.params, path, new):
                return True
    return False
