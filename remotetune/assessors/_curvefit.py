"""Curvefitting: NNI's learning-curve extrapolation (Domhan et al., IJCAI 2015), simplified.

From ``start_step`` on, every ``gap`` steps, the trial's curve (as scores: negated when
minimizing, so curves rise) is fitted by least squares with a family of saturating
learning-curve models (pow3, exp3, log-linear, MMF, Janoschek, ilog2). The models that fit are
averaged, weighted by the inverse of their mean squared residual, to predict the score at step
``epoch_num``. The trial is stopped when that prediction is below ``threshold`` times the best
final of the succeeded trials (minimizing: above the best divided by ``threshold``). Without a
succeeded trial, or when no model fits, it continues. NNI weights the models by MCMC; a
weighted least-squares ensemble keeps the decision fast (a few ms) and deterministic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from remotetune.assessors._base import Assessor, TrialView, Verdict, float_arg, fmt, int_arg
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode, TrialStatus

Model = tuple[str, Callable[..., Any], tuple[float, ...]]


def _models() -> list[Model]:
    import numpy as np

    return [
        ("pow3", lambda x, c, a, alpha: c - a * np.power(x, -alpha), (1.0, 1.0, 0.5)),
        ("exp3", lambda x, c, a, b: c - np.exp(-a * x + b), (1.0, 0.5, 0.0)),
        ("loglinear", lambda x, a, b: a * np.log(x) + b, (0.1, 0.0)),
        ("mmf", lambda x, alpha, beta, kappa, delta:
            alpha - (alpha - beta) / (1.0 + np.power(np.abs(kappa) * x, delta)),
            (1.0, 0.0, 0.5, 1.0)),
        ("janoschek", lambda x, alpha, beta, kappa, delta:
            alpha - (alpha - beta) * np.exp(-np.abs(kappa) * np.power(x, delta)),
            (1.0, 0.0, 0.5, 1.0)),
        ("ilog2", lambda x, c, a: c - a / np.log(x + 1.0), (1.0, 0.5)),
    ]


def predict(values: Sequence[float], at: int) -> float | None:
    """The ensemble's prediction of the curve's value at step ``at`` (steps are 1-based)."""
    import numpy as np
    from scipy.optimize import curve_fit

    y = np.asarray(values, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return None
    x = np.arange(1, len(y) + 1, dtype=float)
    lo, span = float(y.min()), float(y.max() - y.min()) or 1.0
    yn = (y - lo) / span  # fit on a unit scale, so the start values suit every curve
    preds: list[tuple[float, float]] = []
    for _name, f, p0 in _models():
        if len(p0) >= len(y):
            continue
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                params, _ = curve_fit(f, x, yn, p0=p0, maxfev=200)
                fitted = f(x, *params)
                value = float(f(float(at), *params))
        except (RuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError):
            continue
        mse = float(np.mean((fitted - yn) ** 2))
        if not (math.isfinite(value) and math.isfinite(mse)):
            continue
        if abs(value) > 10.0:  # wildly off the observed range: not a plausible curve
            continue
        preds.append((value, 1.0 / (mse + 1e-6)))
    if not preds:
        return None
    total = sum(w for _, w in preds)
    return lo + span * sum(v * w for v, w in preds) / total


class CurvefittingAssessor(Assessor):
    def __init__(
        self,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        epoch_num: int = 20,
        start_step: int = 6,
        threshold: float = 0.95,
        gap: int = 1,
    ) -> None:
        super().__init__(optimize_mode)
        self.epoch_num = int_arg("Curvefitting", "epoch_num", epoch_num, 1)
        self.start_step = int_arg("Curvefitting", "start_step", start_step, 0)
        self.threshold = float_arg("Curvefitting", "threshold", threshold, 0.0, 1.0)
        self.gap = int_arg("Curvefitting", "gap", gap, 1)
        if self.start_step > self.epoch_num:
            raise AssessorError("Curvefitting: start_step must be <= epoch_num")
        import scipy.optimize  # noqa: F401 - paid here (about 1 s), not at the first decision

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        step = len(trial.points)
        if step < max(self.start_step, 3) or (step - self.start_step) % self.gap:
            return Verdict.keep(f"step {step}: not a step to assess")
        finals = [o.final for o in others
                  if o.status is TrialStatus.SUCCEEDED and o.final is not None
                  and math.isfinite(o.final)]
        if not finals:
            return Verdict.keep("no succeeded trial to compare with")
        best = max(finals, key=self.score)
        scores = [self.score(v) for v in trial.values]
        guess = predict(scores, self.epoch_num)
        if guess is None:
            return Verdict.keep("no learning-curve model fits yet")
        predicted = self.score(guess)
        maximize = self.optimize_mode is OptimizeMode.MAXIMIZE
        bar = self.threshold * best if maximize else best / max(self.threshold, 1e-12)
        if self.better(bar, predicted):
            sign = "<" if maximize else ">"
            return Verdict.halt(
                f"predicted {fmt(predicted)} at step {self.epoch_num} (from step {step}) {sign} "
                f"{self.threshold} x best {fmt(best)}"
            )
        return Verdict.keep(f"predicted {fmt(predicted)} at step {self.epoch_num}")
