"""Grid search, NNI-like: discrete parameters exactly, continuous ones refined epoch by epoch.

* ``choice`` (every option; a nested option with every combination of its inner parameters),
  ``randint`` (every integer), ``quniform`` and ``qloguniform`` (every reachable multiple of
  ``q``, clipped like sampling clips) are enumerated exactly, in order.
* ``uniform``, ``loguniform``, ``normal``, ``lognormal``, ``qnormal`` and ``qlognormal`` take
  the quantiles of their prior: epoch 0 the median (1/2), epoch 1 adds 1/4 and 3/4, epoch 2
  adds 1/8, 3/8, 5/8, 7/8, ... as NNI's GridSearch does; unlike NNI (which refines forever)
  the grid stops after epoch ``depth`` (class argument, default 2: 7 points per continuous
  parameter). Each epoch yields only the combinations it adds, so a short budget still covers
  every discrete combination at the continuous medians first.

When every configuration was issued, ``suggest`` returns ``None``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from remotetune.model import OptimizeMode, TrialRecord
from remotetune.space import Parameter, ParamType, SearchSpace
from remotetune.tuners._base import EnumeratingTuner, int_arg
from remotetune.tuners._unit import from_unit

_EXACT = frozenset({ParamType.RANDINT, ParamType.QUNIFORM, ParamType.QLOGUNIFORM})


class GridSearchTuner(EnumeratingTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        depth: int = 2,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self.depth = int_arg("GridSearch", "depth", depth, 0)
        self._configs = self._enumerate()

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        return self._next_unissued()

    def _enumerate(self) -> Iterator[dict[str, Any]]:
        params = self.space.parameters
        last = self.depth if _has_continuous(params) else 0
        for epoch in range(last + 1):
            for config, new in _combos(params, epoch):
                if new:
                    yield config


def _has_continuous(params: tuple[Parameter, ...]) -> bool:
    for p in params:
        if p.type is ParamType.CHOICE:
            if any(_has_continuous(o.params) for o in p.options):
                return True
        elif p.type not in _EXACT:
            return True
    return False


def _combos(params: tuple[Parameter, ...], epoch: int) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every combination of ``params`` at ``epoch``, and whether the epoch added it."""
    levels = [_levels(p, epoch) for p in params]
    for combo in itertools.product(*levels):
        yield {p.name: v for p, (v, _) in zip(params, combo, strict=True)}, any(n for _, n in combo)


def _levels(p: Parameter, epoch: int) -> list[tuple[Any, bool]]:
    first = epoch == 0
    if p.type is ParamType.CHOICE:
        out: list[tuple[Any, bool]] = []
        for option in p.options:
            if not option.nested:
                out.append((option.value, first))
                continue
            for inner, new in _combos(option.params, epoch):
                out.append(({"_name": option.name, **inner}, new))
        return out
    if p.type is ParamType.RANDINT:
        return [(v, first) for v in range(int(p.low), int(p.high))]
    if p.type in _EXACT:
        assert p.q is not None
        ks = range(round(p.low / p.q), round(p.high / p.q) + 1)
        return [(v, first) for v in dict.fromkeys(p.quantize(k * p.q) for k in ks)]
    older: dict[Any, None] = {}
    for e in range(epoch):
        older.update(dict.fromkeys(_points(p, e)))
    current = [v for v in dict.fromkeys(_points(p, epoch)) if v not in older]
    return [(v, False) for v in older] + [(v, True) for v in current]


def _points(p: Parameter, epoch: int) -> list[Any]:
    """The points epoch ``epoch`` adds: the prior's quantiles at odd multiples of 1/2^(e+1)."""
    denominator = 2 ** (epoch + 1)
    return [_tidy(from_unit(p, k / denominator)) for k in range(1, denominator, 2)]


def _tidy(value: Any) -> Any:
    """12 significant digits: ``0.001``, not ``0.0010000000000000002`` (exp of a log)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value
