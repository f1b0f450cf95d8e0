"""NNI's BatchTuner: the space is one ``choice`` whose options are whole configurations.

``{"combine_params": {"_type": "choice", "_value": [{"lr": 0.1, "bs": 8}, {"lr": 0.2}]}}``
yields ``{"lr": 0.1, "bs": 8}`` then ``{"lr": 0.2}`` (the option itself, as NNI does, not
wrapped in ``combine_params``), each once, in order, then ``None``. An option that is not a dict
is yielded as ``{"combine_params": option}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord
from remotetune.space import ParamType, SearchSpace
from remotetune.tuners._base import EnumeratingTuner

_EXAMPLE = '{"combine_params": {"_type": "choice", "_value": [{"lr": 0.1}, {"lr": 0.01}]}}'


class BatchTuner(EnumeratingTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        params = space.parameters
        if len(params) != 1 or params[0].type is not ParamType.CHOICE:
            raise TunerError(
                "BatchTuner needs a search space with a single choice parameter whose options "
                f"are the configurations to run, e.g. {_EXAMPLE}; got {list(space.names)}"
            )
        param = params[0]
        if any(o.nested for o in param.options):
            raise TunerError(
                f"BatchTuner: the options of {param.name!r} must be plain configurations "
                "(dicts without _name)"
            )
        self.configs: tuple[dict[str, Any], ...] = tuple(
            dict(o.value) if isinstance(o.value, Mapping) else {param.name: o.value}
            for o in param.options
        )
        self._configs = iter(self.configs)

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        config = self._next_unissued()
        return copy.deepcopy(config) if config is not None else None
