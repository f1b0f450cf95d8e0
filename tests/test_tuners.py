"""Tuners: one contract suite (``remotetune.testing.tuners``) run against every tuner, then
each tuner's own behaviour.

Adding a tuner = one line in ``CASES`` (in ``remotetune.testing.tuners``).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import replace
from typing import Any

import pytest

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialStatus
from remotetune.space import SearchSpace
from remotetune.testing.tuners import (
    BATCH,
    BATCH_CONFIGS,
    CASES,
    LEARNERS,
    LINE,
    MIXED,
    SMALL,
    Case,
    TunerContract,
    drive,
    noise,
    record,
)
from remotetune.tuners import (
    BUILTIN_TUNERS,
    BatchTuner,
    GridSearchTuner,
    RandomTuner,
    TpeTuner,
    Tuner,
    create_tuner,
)


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def test_every_builtin_has_a_contract_case() -> None:
    assert {c.name for c in CASES} == set(BUILTIN_TUNERS)


class TestBuiltinTuners(TunerContract):
    """The contract (suggestions in the space, failures, determinism, restore...)."""


# --- optimize_mode is honoured (model-based tuners vs random, tolerant margin) -----------------

_TARGET = 1.0

def _distance_late(case: Case, mode: OptimizeMode, sign: float, seed: int) -> float:
    """Mean |x - 1| over the last 20 of 40 trials, the objective being sign * (x - 1)^2."""
    tuner = case.tuner(LINE, seed=seed, optimize_mode=mode.value)
    history = drive(tuner, lambda p: sign * (p["x"] - _TARGET) ** 2, 40)
    return statistics.mean(abs(r.parameters["x"] - _TARGET) for r in history[20:])


_RANDOM_DISTANCE = 2.6  # E|x - 1| for x ~ U(-5, 5)


@pytest.mark.parametrize("case", LEARNERS, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", list(OptimizeMode), ids=lambda m: m.value)
def test_optimize_mode_moves_toward_the_optimum(case: Case, mode: OptimizeMode) -> None:
    toward = -1.0 if mode is OptimizeMode.MAXIMIZE else 1.0  # best at x = 1 in this mode
    seeds = (0, 1, 2)
    good = statistics.mean(_distance_late(case, mode, toward, s) for s in seeds)
    random_tuner = Case("Random")
    baseline = statistics.mean(_distance_late(random_tuner, mode, toward, s) for s in seeds)
    assert good < 0.6 * baseline, (good, baseline)
    assert good < 0.6 * _RANDOM_DISTANCE
    # the same objective under the other mode must drive it away from x = 1
    away = statistics.mean(_distance_late(case, mode, -toward, s) for s in seeds)
    assert away > baseline * 1.1, (away, baseline)


# --- create_tuner -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", TpeTuner),
        ("TPE", TpeTuner),
        ("Random", RandomTuner),
        ("random_search", RandomTuner),
        ("gridsearch", GridSearchTuner),
        ("Grid_Search", GridSearchTuner),
        ("BatchTuner", BatchTuner),
        ("batch", BatchTuner),
    ],
)
def test_names_are_case_insensitive_and_nni_compatible(name: str, cls: type[Tuner]) -> None:
    space = BATCH if cls is BatchTuner else SMALL
    assert type(create_tuner(name, {}, space)) is cls


def test_optimize_mode_and_seed_come_from_class_args() -> None:
    tuner = create_tuner("Anneal", {"optimize_mode": "Minimize", "seed": 3}, SMALL, seed=9)
    assert tuner.optimize_mode is OptimizeMode.MINIMIZE
    assert tuner.seed == 3
    assert create_tuner("Anneal", {}, SMALL).optimize_mode is OptimizeMode.MAXIMIZE


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("tpee", {}, "did you mean 'TPE'"),
        ("grid_serch", {}, "did you mean 'GridSearch'"),
        ("nothing", {}, "built-in tuners: Random, GridSearch"),
        ("TPE", {"n_startup": 5}, "'n_startup' (did you mean 'n_startup_trials'"),
        ("TPE", {"n_startup_trials": -1}, "'n_startup_trials' must be an integer >= 0"),
        ("TPE", {"multivariate": "yes"}, "'multivariate' must be true or false"),
        ("TPE", {"tpe_args": {"n_startup": 3}}, "unknown key 'n_startup' in class argument"),
        ("TPE", {"optimize_mode": "max"}, "'optimize_mode' must be 'maximize' or 'minimize'"),
        ("Evolution", {"population_size": 1}, "'population_size' must be an integer >= 2"),
        ("Evolution", {"population_size": 4, "sample_size": 5}, "'sample_size' (5) must not"),
        ("Anneal", {"shrink_coef": -1}, "'shrink_coef' must be a number"),
        ("GridSearch", {"depth": "2"}, "'depth' must be an integer"),
        ("Random", {"population_size": 3}, "RandomTuner has no class argument 'population_size'"),
        ("Random", {"seed": "x"}, "seed must be an integer"),
    ],
)
def test_bad_names_and_class_args(name: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(TunerError) as info:
        create_tuner(name, args, SMALL)
    assert message in str(info.value)


def test_batch_needs_a_single_choice_of_configurations() -> None:
    with pytest.raises(TunerError, match="single choice parameter"):
        create_tuner("Batch", {}, SMALL)


CUSTOM = """
from remotetune.tuners import Tuner
from helper import STEP


class Counter(Tuner):
    def __init__(self, space, optimize_mode="maximize", *, seed=None, start=0):
        super().__init__(space, optimize_mode, seed=seed)
        self.next = start

    def suggest(self, parameter_id, history):
        self.next += STEP
        return {"a": 1, "b": self.next % 2, "m": {"_name": "y"}}


class NotATuner:
    pass
"""


def test_custom_tuner_from_the_code_directory(tmp_path: Any) -> None:
    (tmp_path / "my_tuner.py").write_text(CUSTOM)
    (tmp_path / "helper.py").write_text("STEP = 3\n")
    for spec in ("my_tuner:Counter", "my_tuner.Counter"):
        tuner = create_tuner(spec, {"start": 1}, SMALL, code_directory=str(tmp_path))
        assert tuner.suggest(0, ()) == {"a": 1, "b": 0, "m": {"_name": "y"}}
    with pytest.raises(TunerError, match="must be a class that subclasses"):
        create_tuner("my_tuner:NotATuner", {}, SMALL, code_directory=str(tmp_path))
    with pytest.raises(TunerError, match="has no 'Missing'"):
        create_tuner("my_tuner:Missing", {}, SMALL, code_directory=str(tmp_path))
    with pytest.raises(TunerError, match="has no class argument 'stop'"):
        create_tuner("my_tuner:Counter", {"stop": 1}, SMALL, code_directory=str(tmp_path))
    with pytest.raises(TunerError, match="not found"):
        create_tuner("no_such_module:Tuner", {}, SMALL, code_directory=str(tmp_path))
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(TunerError, match="failed to import: RuntimeError: boom"):
        create_tuner("broken:X", {}, SMALL, code_directory=str(tmp_path))


def test_custom_tuner_importable_module() -> None:
    tuner = create_tuner("remotetune.tuners:RandomTuner", {}, SMALL, seed=1)
    assert isinstance(tuner, RandomTuner)


# --- grid and batch -----------------------------------------------------------------------------


def _all(tuner: Tuner) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while (params := tuner.suggest(len(out), ())) is not None:
        out.append(params)
    return out


def test_grid_enumerates_discrete_types_exactly() -> None:
    configs = _all(create_tuner("GridSearch", {}, SMALL))
    assert len(configs) == 18
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 18
    q = SearchSpace.parse({"q": {"_type": "quniform", "_value": [1, 10, 3]}})
    assert [c["q"] for c in _all(create_tuner("GridSearch", {}, q))] == [1, 3, 6, 9]


def test_grid_refines_continuous_parameters_epoch_by_epoch() -> None:
    space = SearchSpace.parse(
        {
            "x": {"_type": "uniform", "_value": [0, 1]},
            "c": {"_type": "choice", "_value": ["a", "b"]},
        }
    )
    configs = _all(create_tuner("GridSearch", {}, space))
    xs = [c["x"] for c in configs]
    assert xs[:2] == [0.5, 0.5]  # epoch 0: every choice at the median
    assert sorted(set(xs[2:6])) == [0.25, 0.75]
    assert sorted(set(xs)) == [k / 8 for k in range(1, 8)]
    assert len(configs) == 14
    assert len(_all(create_tuner("GridSearch", {"depth": 0}, space))) == 2
    normal = SearchSpace.parse({"w": {"_type": "normal", "_value": [10, 2]}})
    ws = [c["w"] for c in _all(create_tuner("GridSearch", {"depth": 1}, normal))]
    assert ws[0] == pytest.approx(10) and ws[1] == pytest.approx(10 - 2 * 0.6745, abs=1e-3)


def test_batch_yields_each_configuration_once_in_order() -> None:
    assert _all(create_tuner("BatchTuner", {}, BATCH)) == BATCH_CONFIGS
    scalars = SearchSpace.parse({"lr": {"_type": "choice", "_value": [0.1, 0.01]}})
    assert _all(create_tuner("Batch", {}, scalars)) == [{"lr": 0.1}, {"lr": 0.01}]


# --- TPE ----------------------------------------------------------------------------------------


def _tpe(space: SearchSpace = MIXED, **args: Any) -> TpeTuner:
    tuner = create_tuner("TPE", args, space, seed=0)
    assert isinstance(tuner, TpeTuner)
    return tuner


def test_tpe_restore_readds_trials_so_it_keeps_learning() -> None:
    history = drive(_tpe(), noise(6), 25)
    history[-1] = replace(history[-1], status=TrialStatus.RUNNING, final=None)
    lost = replace(history[0], status=TrialStatus.LOST, final=None, parameter_id=500)
    restored = _tpe()
    restored.restore((*history, lost))
    trials = restored.study.get_trials(deepcopy=False)
    assert len(trials) == 26
    states = [t.state.name for t in trials]
    assert states.count("RUNNING") == 2  # the running trial and the lost one awaiting its retry
    assert states.count("COMPLETE") == sum(r.final is not None for r in history)
    # the pending trial is told when it finishes
    restored.observe(history[-1].parameter_id, history[-1].parameters, 0.3, TrialStatus.SUCCEEDED)
    assert [t.state.name for t in restored.study.get_trials()].count("RUNNING") == 1
    nested = {k for t in trials for k in t.params if k.startswith("model[")}
    assert "model[conv].kernel" in nested and "model[conv].pool[max].size" in nested


def test_tpe_maps_nni_tpe_args() -> None:
    tuner = _tpe(tpe_args={"constant_liar_type": None, "n_startup_jobs": 5, "gamma": 0.3})
    assert (tuner.constant_liar, tuner.n_startup_trials) == (False, 5)


def test_tpe_suggest_latency_after_1000_trials() -> None:
    rng = random.Random(0)
    history = [
        record(i, MIXED.sample(rng), TrialStatus.SUCCEEDED, rng.random()) for i in range(1000)
    ]
    tuner = _tpe()
    tuner.restore(history)
    latencies = []
    for pid in range(1000, 1004):
        start = time.perf_counter()
        params = tuner.suggest(pid, history)
        latencies.append(time.perf_counter() - start)
        assert params is not None and MIXED.contains(params)
    assert statistics.median(latencies) < 1.0, latencies
