"""Tuners: one contract suite run against every tuner, then each tuner's own behaviour.

Adding a tuner = one line in ``CASES``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners import (
    BUILTIN_TUNERS,
    BatchTuner,
    GridSearchTuner,
    RandomTuner,
    TpeTuner,
    Tuner,
    create_tuner,
)

# Every type, and a nested choice with a nested choice inside.
MIXED = SearchSpace.parse(
    {
        "act": {"_type": "choice", "_value": ["relu", "tanh", 3, None]},
        "layers": {"_type": "randint", "_value": [1, 5]},
        "dropout": {"_type": "uniform", "_value": [0.0, 0.5]},
        "bs": {"_type": "quniform", "_value": [16, 128, 16]},
        "lr": {"_type": "loguniform", "_value": [1e-5, 1e-1]},
        "width": {"_type": "qloguniform", "_value": [8, 512, 8]},
        "w": {"_type": "normal", "_value": [0.0, 1.0]},
        "wq": {"_type": "qnormal", "_value": [0.0, 2.0, 0.5]},
        "decay": {"_type": "lognormal", "_value": [-3.0, 1.0]},
        "steps": {"_type": "qlognormal", "_value": [3.0, 0.5, 10]},
        "model": {
            "_type": "choice",
            "_value": [
                {
                    "_name": "conv",
                    "kernel": {"_type": "choice", "_value": [3, 5]},
                    "pool": {
                        "_type": "choice",
                        "_value": [
                            {"_name": "max", "size": {"_type": "randint", "_value": [2, 4]}},
                            {"_name": "avg"},
                        ],
                    },
                },
                {"_name": "mlp", "hidden": {"_type": "uniform", "_value": [0.1, 0.9]}},
            ],
        },
    }
)
SMALL = SearchSpace.parse(  # 3 * 2 * 3 = 18 configurations
    {
        "a": {"_type": "choice", "_value": [1, 2, 3]},
        "b": {"_type": "randint", "_value": [0, 2]},
        "m": {
            "_type": "choice",
            "_value": [{"_name": "x", "k": {"_type": "choice", "_value": [1, 2]}}, {"_name": "y"}],
        },
    }
)
BATCH_CONFIGS = [{"lr": 0.1 * i, "opt": "adam" if i % 2 else "sgd"} for i in range(1, 7)]
BATCH = SearchSpace.parse({"combine_params": {"_type": "choice", "_value": BATCH_CONFIGS}})
LINE = SearchSpace.parse({"x": {"_type": "uniform", "_value": [-5.0, 5.0]}})


@dataclass(frozen=True)
class Case:
    name: str
    class_args: Mapping[str, Any] = field(default_factory=dict)
    learns: bool = False  # model-based: must beat random on a 1-D quadratic
    enumerates: bool = False  # finite, never re-issues (grid, batch)
    batch: bool = False  # takes BatchTuner's space

    def space(self, default: SearchSpace = MIXED) -> SearchSpace:
        return BATCH if self.batch else default

    def tuner(self, space: SearchSpace | None = None, seed: int | None = 0, **extra: Any) -> Tuner:
        args = {**self.class_args, **extra}
        return create_tuner(self.name, args, space or self.space(), seed=seed)

    def in_domain(self, space: SearchSpace, params: Mapping[str, Any]) -> bool:
        return dict(params) in BATCH_CONFIGS if self.batch else space.contains(params)


CASES = [
    Case("Random"),
    Case("GridSearch", enumerates=True),
    Case("Batch", enumerates=True, batch=True),
    Case("TPE", {"n_startup_trials": 10}, learns=True),
    Case("Anneal", learns=True),
    Case("Evolution", {"population_size": 8}, learns=True),
]
LEARNERS = [c for c in CASES if c.learns]


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def test_every_builtin_has_a_contract_case() -> None:
    assert {c.name for c in CASES} == set(BUILTIN_TUNERS)


# --- a tiny controller: suggest, run, observe, keep the history -------------------------------


def _record(pid: int, params: Mapping[str, Any], status: TrialStatus, final: float | None = None):
    return TrialRecord(
        id=f"t{pid}",
        experiment_id="exp",
        sequence=pid,
        parameters=params,
        status=status,
        parameter_id=pid,
        final=final,
    )


def drive(
    tuner: Tuner,
    objective: Callable[[Mapping[str, Any]], float | None],
    n: int,
    history: list[TrialRecord] | None = None,
) -> list[TrialRecord]:
    """Run ``n`` trials one after another; returns the whole history."""
    history = list(history or [])
    start = max((r.parameter_id for r in history), default=-1) + 1
    for pid in range(start, start + n):
        params = tuner.suggest(pid, tuple(history))
        if params is None:
            break
        history.append(_record(pid, params, TrialStatus.RUNNING))
        value = objective(params)
        status = TrialStatus.SUCCEEDED if value is not None else TrialStatus.FAILED
        tuner.observe(pid, params, value, status)
        history[-1] = replace(history[-1], status=status, final=value)
    return history


def _noise(seed: int) -> Callable[[Mapping[str, Any]], float | None]:
    rng = random.Random(seed)
    return lambda params: None if rng.random() < 0.2 else rng.random()


# --- the contract -------------------------------------------------------------------------------


def test_suggestions_lie_in_the_space(case: Case) -> None:
    space = case.space()
    history = drive(case.tuner(), _noise(1), 40)
    assert len(history) == (len(BATCH_CONFIGS) if case.batch else 40)
    for record in history:
        assert case.in_domain(space, record.parameters), record.parameters
        json.dumps(record.parameters)
    nested = {r.parameters["model"]["_name"] for r in history if not case.batch}
    assert nested == ({"conv", "mlp"} if not case.batch else set())


def test_failed_and_stopped_trials_do_not_crash(case: Case) -> None:
    tuner = case.tuner()
    statuses = [
        TrialStatus.FAILED,
        TrialStatus.EARLY_STOPPED,
        TrialStatus.USER_CANCELED,
        TrialStatus.SYS_CANCELED,
        TrialStatus.LOST,
    ]
    for pid, status in enumerate(statuses):
        params = tuner.suggest(pid, ())
        assert params is not None
        tuner.observe(pid, params, None, status)
    params = tuner.suggest(len(statuses), ())
    assert params is not None and case.in_domain(case.space(), params)


def test_observing_foreign_parameters_is_accepted(case: Case) -> None:
    tuner = case.tuner()
    space = case.space()
    foreign = BATCH_CONFIGS[0] if case.batch else space.sample(random.Random(5))
    tuner.observe(100, foreign, 0.5, TrialStatus.SUCCEEDED)
    tuner.observe(101, {"not": "in the space"}, 0.5, TrialStatus.SUCCEEDED)
    assert tuner.suggest(0, ()) is not None


def test_pending_suggestions_are_distinct(case: Case) -> None:
    tuner = case.tuner()
    drive(tuner, _noise(2), 3 if case.batch else 15)
    pending = [tuner.suggest(100 + i, ()) for i in range(3)]
    keys = [json.dumps(p, sort_keys=True) for p in pending]
    assert len(set(keys)) == 3


def test_deterministic_with_a_seed(case: Case) -> None:
    first = drive(case.tuner(seed=7), _noise(3), 30)
    second = drive(case.tuner(seed=7), _noise(3), 30)
    assert [r.parameters for r in first] == [r.parameters for r in second]
    if not case.enumerates:
        other = drive(case.tuner(seed=8), _noise(3), 30)
        assert [r.parameters for r in first] != [r.parameters for r in other]


def test_restore_continues_without_reissuing(case: Case) -> None:
    space = case.space(SMALL)
    before = drive(case.tuner(space), _noise(4), 4)
    # a trial was running when the controller stopped; the store still has it
    running = before[-1]
    history = before[:-1] + [replace(running, status=TrialStatus.RUNNING, final=None)]
    restored = case.tuner(space, seed=1)
    restored.restore(tuple(history))
    after = drive(restored, _noise(5), 40, history)[len(history) :]
    for record in after:
        assert case.in_domain(space, record.parameters)
    if case.enumerates:
        keys = [json.dumps(r.parameters, sort_keys=True) for r in history + after]
        assert len(keys) == len(set(keys)), "a configuration was issued twice"
        total = len(BATCH_CONFIGS) if case.batch else 18
        assert len(keys) == total
        assert restored.suggest(999, ()) is None
    else:
        assert len(after) == 40


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
    history = drive(_tpe(), _noise(6), 25)
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
        _record(i, MIXED.sample(rng), TrialStatus.SUCCEEDED, rng.random()) for i in range(1000)
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
