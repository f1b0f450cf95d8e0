"""TPE: Optuna's ``TPESampler`` through the ask/tell API on an in-memory study (the same
:class:`OptunaTuner` runs GP on ``GPSampler``, ``_gp``).

How NNI's space maps onto Optuna, define-by-run, one Optuna parameter per dotted path
(``model[conv].kernel``), so nested choices are conditional parameters:

* ``choice``: categorical over the option indexes; a nested option then asks its inner ones.
* ``randint``: an integer in ``[low, high - 1]`` (ordered, unlike NNI's TPE).
* ``uniform``/``loguniform`` and their q-versions: a float (``log=True`` for the log types),
  quantized and clipped afterwards the NNI way.
* ``normal``/``lognormal`` and their q-versions: the prior's quantile ``u`` in (0, 1) as a
  float, mapped through the inverse CDF (so the random start-up trials follow NNI's priors).

Concurrency: ``constant_liar`` (on by default) makes running trials count as bad ones, so
concurrent suggestions spread out. ``restore`` re-adds finished trials (and running ones as
pending) with ``optuna.trial.create_trial`` so TPE keeps learning after a restart.

Class arguments: ``n_startup_trials`` (default 20, NNI's ``n_startup_jobs``; random trials
before TPE starts), ``n_ei_candidates`` (24), ``multivariate`` (true, Optuna 5's default;
nested spaces then use ``group``), ``constant_liar`` (true), and NNI's ``tpe_args`` dict:
``constant_liar_type`` (``None`` turns the liar off; Optuna has one kind of lie, so
best/worst/mean all turn it on), ``n_startup_jobs``, ``n_ei_candidates``. NNI's
``linear_forgetting``, ``prior_weight`` and ``gamma`` are accepted and ignored with a warning:
Optuna deprecated their counterparts in 4.9 and drops them in 6.0.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import Option, Parameter, ParamType, SearchSpace
from remotetune.tuners._base import Tuner, bool_arg, int_arg
from remotetune.tuners._unit import EPS, from_unit, to_unit

if TYPE_CHECKING:  # optuna is imported when a TPE tuner is built, not with the package
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution
    from optuna.trial import TrialState

logger = logging.getLogger(__name__)

_TPE_ARGS = {
    "constant_liar_type",
    "n_startup_jobs",
    "n_ei_candidates",
    "linear_forgetting",
    "prior_weight",
    "gamma",
}
_IGNORED_TPE_ARGS = frozenset({"linear_forgetting", "prior_weight", "gamma"})
_LIARS = (None, "best", "worst", "mean")


class OptunaTuner(Tuner):
    """A tuner on an Optuna sampler: an in-memory study driven through ask/tell."""

    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        import optuna

        super().__init__(space, optimize_mode, seed=seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction=self.optimize_mode.value, sampler=sampler)
        self._pending: dict[int, int] = {}  # parameter_id -> optuna trial number

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask()
            params = _ask(trial, self.space.parameters)
        self._pending[parameter_id] = trial.number
        return params

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        if status is TrialStatus.LOST or not status.is_finished():
            return  # retried under the same parameter_id; stays pending
        state, value = _state(value, status)
        number = self._pending.pop(parameter_id, None)
        if number is not None:
            self.study.tell(number, value, state=state)
        else:
            self._add(parameters, state, value)

    def restore(self, history: Sequence[TrialRecord]) -> None:
        from optuna.trial import TrialState

        latest: dict[int, TrialRecord] = {}
        for record in sorted(history, key=lambda r: (r.parameter_id, r.attempt, r.sequence)):
            latest[record.parameter_id] = record
        for pid, record in latest.items():
            status = record.status
            if status.is_finished() and status is not TrialStatus.LOST:
                state, value = _state(record.final, status)
                self._add(record.parameters, state, value)
            else:
                number = self._add(record.parameters, TrialState.RUNNING, None)
                if number is not None:
                    self._pending[pid] = number

    def _add(
        self, parameters: Mapping[str, Any], state: TrialState, value: float | None
    ) -> int | None:
        import optuna

        internal: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        if not _encode(self.space.parameters, parameters, internal, dists):
            logger.warning(
                "%s: ignoring a trial whose parameters are not in the space: %r",
                type(self).__name__, parameters
            )
            return None
        trial = optuna.trial.create_trial(
            state=state, value=value, params=internal, distributions=dists
        )
        self.study.add_trial(trial)
        return len(self.study.get_trials(deepcopy=False)) - 1


class TpeTuner(OptunaTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        n_startup_trials: int = 20,
        n_ei_candidates: int = 24,
        multivariate: bool = True,
        constant_liar: bool = True,
        tpe_args: Mapping[str, Any] | None = None,
    ) -> None:
        import optuna

        if tpe_args is not None:
            constant_liar, n_startup_trials, n_ei_candidates = _nni_tpe_args(
                tpe_args, constant_liar, n_startup_trials, n_ei_candidates
            )
        self.n_startup_trials = int_arg("TPE", "n_startup_trials", n_startup_trials, 0)
        self.n_ei_candidates = int_arg("TPE", "n_ei_candidates", n_ei_candidates, 1)
        self.multivariate = bool_arg("TPE", "multivariate", multivariate)
        self.constant_liar = bool_arg("TPE", "constant_liar", constant_liar)
        nested = any(o.nested for p in space.parameters for o in p.options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                n_startup_trials=self.n_startup_trials,
                n_ei_candidates=self.n_ei_candidates,
                multivariate=self.multivariate,
                # conditional (nested) parameters get their own groups when multivariate
                group=self.multivariate and nested,
                constant_liar=self.constant_liar,
                seed=seed,
            )
        super().__init__(space, optimize_mode, seed=seed, sampler=sampler)


def _state(value: float | None, status: TrialStatus) -> tuple[TrialState, float | None]:
    from optuna.trial import TrialState

    if value is not None and math.isfinite(value):
        return TrialState.COMPLETE, float(value)
    if status is TrialStatus.EARLY_STOPPED:
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


def _nni_tpe_args(
    tpe_args: Any, constant_liar: bool, n_startup: int, n_ei: int
) -> tuple[bool, int, int]:
    """NNI's ``tpe_args`` onto Optuna's arguments (liar on/off, start-up and EI counts)."""
    if not isinstance(tpe_args, Mapping):
        raise TunerError(f"TPE: class argument 'tpe_args' must be a mapping, got {tpe_args!r}")
    unknown = sorted(set(tpe_args) - _TPE_ARGS)
    if unknown:
        raise TunerError(
            f"TPE: unknown key {unknown[0]!r} in class argument 'tpe_args' "
            f"(it accepts: {', '.join(sorted(_TPE_ARGS))})"
        )
    liar = tpe_args.get("constant_liar_type", "best" if constant_liar else None)
    if liar not in _LIARS:
        raise TunerError(f"TPE: tpe_args.constant_liar_type must be one of {_LIARS}, got {liar!r}")
    for key in sorted(_IGNORED_TPE_ARGS & set(tpe_args)):
        logger.warning("TPE: tpe_args.%s has no counterpart in Optuna's TPE; ignored", key)
    return (
        liar is not None,
        tpe_args.get("n_startup_jobs", n_startup),
        tpe_args.get("n_ei_candidates", n_ei),
    )


def _float_dist(p: Parameter) -> FloatDistribution:
    from optuna.distributions import FloatDistribution

    if p.type.bounded:
        return FloatDistribution(float(p.low), float(p.high), log=p.type.log)
    return FloatDistribution(EPS, 1.0 - EPS)


def _ask(trial: optuna.Trial, params: tuple[Parameter, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        if p.type is ParamType.CHOICE:
            index = trial.suggest_categorical(p.path, list(range(len(p.options))))
            option = p.options[index]
            out[p.name] = _option_value(trial, option)
        elif p.type is ParamType.RANDINT:
            out[p.name] = trial.suggest_int(p.path, int(p.low), int(p.high) - 1)
        elif p.type.bounded:
            d = _float_dist(p)
            out[p.name] = p.quantize(trial.suggest_float(p.path, d.low, d.high, log=d.log))
        else:
            out[p.name] = from_unit(p, trial.suggest_float(p.path, EPS, 1.0 - EPS))
    return out


def _option_value(trial: optuna.Trial, option: Option) -> Any:
    if option.nested:
        return {"_name": option.name, **_ask(trial, option.params)}
    return copy.deepcopy(option.value)


def _encode(
    params: tuple[Parameter, ...],
    values: Any,
    internal: dict[str, Any],
    dists: dict[str, BaseDistribution],
) -> bool:
    """Optuna's view of ``values`` (the inverse of ``_ask``); False when they do not fit."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if not isinstance(values, Mapping):
        return False
    for p in params:
        if p.name not in values:
            return False
        v = values[p.name]
        if p.type is ParamType.CHOICE:
            index = next((i for i, o in enumerate(p.options) if _matches(o, v)), None)
            if index is None:
                return False
            internal[p.path] = index
            dists[p.path] = CategoricalDistribution(list(range(len(p.options))))
            option = p.options[index]
            if option.nested and not _encode(option.params, v, internal, dists):
                return False
        elif p.type is ParamType.RANDINT:
            if not p.contains(v):
                return False
            internal[p.path] = int(v)
            dists[p.path] = IntDistribution(int(p.low), int(p.high) - 1)
        else:
            d = _float_dist(p)
            x = float(v) if p.type.bounded else to_unit(p, v)
            if x is None or not p.contains(v):
                return False
            internal[p.path] = min(max(x, d.low), d.high)
            dists[p.path] = d
    return True


def _matches(option: Option, value: Any) -> bool:
    if option.nested:
        return isinstance(value, Mapping) and value.get("_name") == option.name
    return isinstance(value, bool) == isinstance(option.value, bool) and bool(value == option.value)
