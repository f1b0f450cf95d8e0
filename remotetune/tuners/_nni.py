"""NNI custom tuners (subclasses of ``nni.tuner.Tuner``) behind remotetune's :class:`Tuner`.

The NNI tuner is built as NNI builds it: ``Class(**classArgs)`` (``optimize_mode``
included), then ``update_search_space(search_space)``. Then:

* ``suggest`` calls ``generate_multiple_parameters([parameter_id])``; an empty list, None
  or ``nni.NoMoreTrialError`` means nothing to propose: exhausted when no trial it proposed
  is still running, else *not now* (asked again after the next result, as NNI asks again
  when a trial ends).
* ``observe`` of a trial it proposed: ``receive_trial_result(parameter_id, parameters,
  value)`` when the trial has a final value, then ``trial_end(parameter_id, success)``. A
  trial it did not propose (restored after a restart, imported) goes to ``import_data``,
  as NNI does when an experiment resumes.
* The experiment's ``seed`` is passed as ``seed=`` to a constructor that has such a parameter
  (and no ``seed`` is in classArgs).

Parameters must be a dict (JSON object); numpy numbers in them are turned into Python ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.nni_classes import is_no_more_trials
from remotetune.space import SearchSpace
from remotetune.trial import _plain
from remotetune.tuners._base import Tuner, parse_optimize_mode


class NniTuner(Tuner):
    """Adapter base; :func:`nni_tuner_class` makes one subclass per NNI tuner class."""

    nni_class: ClassVar[type]
    spec: ClassVar[str] = ""

    def __init__(self, space: SearchSpace, optimize_mode: OptimizeMode | str, *,
                 seed: int | None = None, nni_tuner: Any = None) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self.nni = nni_tuner
        self._pending: set[int] = set()

    @classmethod
    def class_arg_names(cls) -> frozenset[str]:
        return frozenset(_init_params(cls.nni_class))

    @classmethod
    def create(cls, space: SearchSpace, class_args: Mapping[str, Any],
               seed: int | None) -> NniTuner:
        """Build the NNI tuner from its classArgs, as NNI would, and wrap it."""
        args = dict(class_args)
        mode = parse_optimize_mode(args.get("optimize_mode", OptimizeMode.MAXIMIZE))
        params = _init_params(cls.nni_class)
        if seed is not None and "seed" not in args and "seed" in params:
            args["seed"] = seed
        try:
            inspect.signature(cls.nni_class).bind(**args)
        except TypeError as exc:
            raise TunerError(f"tuner {cls.spec}: classArgs do not fit its constructor: {exc} "
                             f"(it takes: {', '.join(params) or 'no arguments'})") from None
        try:
            instance = cls.nni_class(**args)
            instance.update_search_space(_plain(dict(space.raw)))
        except Exception as exc:
            raise TunerError(f"tuner {cls.spec} could not be created: "
                             f"{type(exc).__name__}: {exc}") from exc
        return cls(space, mode, seed=seed, nni_tuner=instance)

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        try:
            out = self.nni.generate_multiple_parameters([parameter_id])
        except Exception as exc:
            if is_no_more_trials(exc):
                return None
            raise
        if not out or out[0] is None:
            return None
        params = _plain(out[0])
        if not isinstance(params, dict):
            raise TunerError(f"tuner {self.spec} returned {type(params).__name__} "
                             f"{params!r:.80}; remotetune needs a dict of parameters")
        self._pending.add(parameter_id)
        return params

    def is_exhausted(self) -> bool:
        return not self._pending

    def observe(self, parameter_id: int, parameters: Mapping[str, Any], value: float | None,
                status: TrialStatus) -> None:
        if status is TrialStatus.LOST or not status.is_finished():
            return  # retried under the same parameter_id
        params = dict(parameters)
        if parameter_id not in self._pending:
            if value is not None:
                self.nni.import_data([{"parameter": params, "value": value}])
            return
        self._pending.discard(parameter_id)
        if value is not None:
            self.nni.receive_trial_result(parameter_id, params, value)
        self.nni.trial_end(parameter_id, status is TrialStatus.SUCCEEDED)


def _init_params(cls: type) -> list[str]:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def nni_tuner_class(cls: type, spec: str) -> type[NniTuner]:
    """The adapter class for the NNI tuner ``cls`` (written ``spec`` in the config)."""
    return type(f"Nni{cls.__name__}", (NniTuner,), {"nni_class": cls, "spec": spec,
                                                    "__module__": __name__})
