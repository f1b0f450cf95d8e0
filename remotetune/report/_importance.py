"""Parameter importance with ``optuna.importance`` over the finished trials.

An in-memory optuna study is built from the store's trials (never the tuner's study): each
flattened parameter becomes a float distribution when every value is a number, else a
categorical one over the values seen. Parameters with one value only are left out.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.report._data import flatten_parameters, is_number

logger = logging.getLogger(__name__)

MIN_TRIALS = 3  # fewer finished trials with a final: no importance is computed


@dataclass(frozen=True)
class Importance:
    """Importances by parameter (summing to 1, highest first), or why there are none."""

    values: tuple[tuple[str, float], ...] = ()
    note: str | None = None


def parameter_importance(trials: Sequence[TrialRecord], mode: OptimizeMode) -> Importance:
    done = [
        t for t in trials
        if t.status is TrialStatus.SUCCEEDED and t.final is not None and math.isfinite(t.final)
    ]
    if len(done) < MIN_TRIALS:
        return Importance(note=f"needs {MIN_TRIALS} succeeded trials with a final metric, "
                               f"has {len(done)}")
    flat = [flatten_parameters(t.parameters) for t in done]
    distributions = _distributions(flat)
    if not distributions:
        return Importance(note="no parameter takes more than one value")
    try:
        values = _evaluate(done, flat, distributions, mode)
    except Exception as exc:  # noqa: BLE001 - optuna raises many types; the report goes on
        logger.debug("parameter importance failed", exc_info=True)
        return Importance(note=f"could not be computed: {type(exc).__name__}: {exc}")
    if not values:
        return Importance(note="no parameter is shared by all finished trials")
    return Importance(values=tuple(values))


def _distributions(flat: list[dict[str, Any]]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    seen: dict[str, list[Any]] = {}
    for params in flat:
        for key, value in params.items():
            seen.setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for key, values in seen.items():
        if all(is_number(v) and math.isfinite(v) for v in values):
            low, high = float(min(values)), float(max(values))
            if low < high:
                out[key] = FloatDistribution(low, high)
            continue
        choices = sorted({_category(v) for v in values})
        if len(choices) > 1:
            out[key] = CategoricalDistribution(choices)
    return out


def _category(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


@contextmanager
def _without_sklearn() -> Iterator[None]:
    """Import ``optuna.importance`` without scikit-learn.

    optuna imports scikit-learn eagerly (when installed) for its fANOVA and MDI evaluators.
    That takes 1.5-7 s of the report's 5 s budget, and PED-ANOVA does not need it.
    scikit-learn is not a remotetune dependency, so for the length of that first import it
    is made to look absent. The side effect: in this process, optuna's fANOVA and MDI
    evaluators then say scikit-learn is missing. Nothing in remotetune uses them. When
    scikit-learn or ``optuna.importance`` is already imported, nothing is changed.
    """
    if "optuna.importance" in sys.modules or "sklearn" in sys.modules:
        yield
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]


def _evaluate(
    done: list[TrialRecord],
    flat: list[dict[str, Any]],
    distributions: dict[str, Any],
    mode: OptimizeMode,
) -> list[tuple[str, float]]:
    import optuna
    from optuna.distributions import FloatDistribution

    with _without_sklearn():
        from optuna.importance import PedAnovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as the optuna tuners do
    study = optuna.create_study(direction=mode.value)
    for trial, params in zip(done, flat, strict=True):
        kept = {k: v for k, v in params.items() if k in distributions}
        values = {
            k: float(v) if isinstance(distributions[k], FloatDistribution) else _category(v)
            for k, v in kept.items()
        }
        study.add_trial(optuna.trial.create_trial(
            params=values,
            distributions={k: distributions[k] for k in values},
            value=float(trial.final),  # type: ignore[arg-type]
        ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the evaluator is marked experimental
        result = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator()
        )
    return [(k, float(v)) for k, v in result.items()]
