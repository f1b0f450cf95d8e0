"""Curvefitting's learning-curve ensemble (``remotetune.assessors._curves``): its predictions
on curves from known models, its determinism and cost, and the verdicts they lead to."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import pytest

from remotetune.assessors import CurvePoint, TrialView, _curves, create_assessor
from remotetune.assessors._curvefit import curve_seed
from remotetune.model import TrialStatus

TARGET = 20

# Curves of the families in the ensemble and one outside it (a saturating exponential with an
# offset, as accuracy curves start above 0), each with its true value at step TARGET.
KNOWN: dict[str, Callable[[float], float]] = {
    "pow3": lambda x: 0.9 - 0.5 * x ** -0.7,
    "exp3": lambda x: 0.85 * (1 - math.exp(-0.2 * x)),
    "weibull": lambda x: 0.9 - 0.8 * math.exp(-((0.15 * x) ** 1.5)),
    "mmf": lambda x: 0.9 - 0.7 / (1 + (0.3 * x) ** 1.2),
    "offset-exp": lambda x: 0.1 + 0.75 * (1 - math.exp(-0.25 * x)),
}


def noisy(f: Callable[[float], float], n: int, seed: int, sd: float = 0.005) -> list[float]:
    rng = random.Random(seed)
    return [f(s) + rng.gauss(0.0, sd) for s in range(1, n + 1)]


def view(tid: str, values: list[float], status: TrialStatus = TrialStatus.RUNNING,
         final: float | None = None) -> TrialView:
    points = tuple(CurvePoint(i + 1, v, float(i)) for i, v in enumerate(values))
    return TrialView(tid, {}, points, status, final)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_the_prediction_is_close_to_the_true_final(name: str) -> None:
    f = KNOWN[name]
    for seed in range(3):
        values = noisy(f, 12, seed)
        found = _curves.predict(values, TARGET, seed=curve_seed(values, TARGET))
        assert found is not None and found.models
        assert abs(found.mean - f(TARGET)) < 0.05, (name, seed, found, f(TARGET))


def test_more_points_predict_better() -> None:
    errors = {n: [] for n in (8, 16)}  # type: dict[int, list[float]]
    for f in KNOWN.values():
        for seed in range(3):
            for n in errors:
                values = noisy(f, n, seed)
                found = _curves.predict(values, TARGET, seed=seed)
                assert found is not None
                errors[n].append(abs(found.mean - f(TARGET)))
    mean = {n: sum(e) / len(e) for n, e in errors.items()}
    assert mean[16] < mean[8] and mean[16] < 0.015, mean


def test_the_same_curve_and_seed_give_the_same_prediction() -> None:
    values = noisy(KNOWN["exp3"], 10, 0)
    a = _curves.predict(values, TARGET, seed=5)
    b = _curves.predict(values, TARGET, seed=5)
    c = _curves.predict(values, TARGET, seed=6)
    assert a == b and a is not None and c is not None
    assert a != c and abs(a.mean - c.mean) < 0.02  # other draws, about the same answer


def test_short_flat_and_non_finite_curves() -> None:
    assert _curves.predict([0.5, 0.6], TARGET) is None
    assert _curves.predict([0.5, float("nan"), 0.6, 0.7], TARGET) is None
    flat = _curves.predict([0.4] * 6, TARGET)
    assert flat is not None and flat.mean == 0.4
    # an accuracy-like curve is not predicted above 1 (the prior's bound)
    steep = _curves.predict([0.1, 0.3, 0.5, 0.7, 0.9], TARGET)
    assert steep is None or steep.mean <= 1.0


def test_a_loss_curve_is_extrapolated_as_scores() -> None:
    """Minimizing: the assessor negates the values, so the ensemble sees a rising curve."""
    loss = [1.5 * math.exp(-0.2 * s) + 0.3 for s in range(1, 11)]
    found = _curves.predict([-v for v in loss], TARGET, seed=1)
    assert found is not None and abs(-found.mean - (1.5 * math.exp(-4.0) + 0.3)) < 0.05


def test_a_poor_curve_is_stopped_and_a_good_one_continues() -> None:
    cf = create_assessor("Curvefitting", {"epoch_num": TARGET, "start_step": 6,
                                          "threshold": 0.95})
    best = [view("best", noisy(KNOWN["exp3"], TARGET, 9), TrialStatus.SUCCEEDED, final=0.84)]
    good = noisy(lambda x: 0.88 * (1 - math.exp(-0.15 * x)), 8, 1)  # ends at 0.83 > 0.798
    poor = noisy(lambda x: 0.6 * (1 - math.exp(-0.3 * x)), 8, 2)  # ends at 0.60
    verdict = cf.assess(view("good", good), best)
    assert not verdict.stop, verdict
    verdict = cf.assess(view("poor", poor), best)
    assert verdict.stop and "< 0.95 x best 0.84" in verdict.reason, verdict
    # a slow starter that ends high is not mistaken for a poor one
    slow = noisy(lambda x: 0.95 * (1 - math.exp(-0.12 * x)), 8, 3)  # 0.36 at 6, 0.86 at 20
    assert not cf.assess(view("slow", slow), best).stop


def test_minimizing_stops_a_loss_that_ends_high() -> None:
    cf = create_assessor("Curvefitting", {"epoch_num": TARGET, "start_step": 6},
                         optimize_mode="minimize")
    best = [view("best", [0.5] * TARGET, TrialStatus.SUCCEEDED, final=0.30)]
    high = [1.0 * math.exp(-0.3 * s) + 0.8 for s in range(1, 9)]  # ends at 0.80
    low = [1.0 * math.exp(-0.3 * s) + 0.2 for s in range(1, 9)]  # ends at 0.20
    assert cf.assess(view("high", high), best).stop
    assert not cf.assess(view("low", low), best).stop


def test_a_decision_takes_milliseconds() -> None:
    """The work per decision is fixed (chains x sweeps x models): the median CPU time over
    20 curves (about 10 ms here) stays far below the controller's poll interval. CPU time,
    not wall time, so that other processes on a loaded machine do not count."""
    _curves.predict(noisy(KNOWN["mmf"], 10, 0), TARGET)  # imports
    times = []
    for seed in range(20):
        values = noisy(KNOWN["mmf"], 6 + seed % 14, seed)
        start = time.process_time()
        _curves.predict(values, TARGET, seed=seed)
        times.append(time.process_time() - start)
    times.sort()
    assert times[len(times) // 2] < 0.05, times
