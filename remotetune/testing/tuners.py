"""The tuner contract tests, shipped with the package (as optuna ships its sampler tests).

Use them for a tuner of your own::

    import pytest
    from remotetune.testing.tuners import Case, TunerContract

    @pytest.fixture(params=[Case("my_module.MyTuner")], ids=lambda c: c.name)
    def case(request):
        return request.param

    class TestMyTuner(TunerContract):
        pass

A tuner written for NNI (``nni.tuner.Tuner``) is checked the same way, through its adapter:
``Case("my_tuner.MyTuner", code_directory="path/to/its/directory")``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from remotetune.model import TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners import Tuner, create_tuner

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
    code_directory: str | None = None  # where a custom tuner's module lies

    def space(self, default: SearchSpace = MIXED) -> SearchSpace:
        return BATCH if self.batch else default

    def tuner(self, space: SearchSpace | None = None, seed: int | None = 0, **extra: Any) -> Tuner:
        args = {**self.class_args, **extra}
        return create_tuner(self.name, args, space or self.space(), seed=seed,
                            code_directory=self.code_directory)

    def in_domain(self, space: SearchSpace, params: Mapping[str, Any]) -> bool:
        return dict(params) in BATCH_CONFIGS if self.batch else space.contains(params)


CASES = [
    Case("Random"),
    Case("GridSearch", enumerates=True),
    Case("Batch", enumerates=True, batch=True),
    Case("TPE", {"n_startup_trials": 10}, learns=True),
    Case("Anneal", learns=True),
    Case("Evolution", {"population_size": 8}, learns=True),
    Case("GP", {"cold_start_num": 25}, learns=True),  # fewer GP fits: each takes ~0.3 s
]
LEARNERS = [c for c in CASES if c.learns]



# --- a tiny controller: suggest, run, observe, keep the history -------------------------------


def record(pid: int, params: Mapping[str, Any], status: TrialStatus, final: float | None = None):
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
        history.append(record(pid, params, TrialStatus.RUNNING))
        value = objective(params)
        status = TrialStatus.SUCCEEDED if value is not None else TrialStatus.FAILED
        tuner.observe(pid, params, value, status)
        history[-1] = replace(history[-1], status=status, final=value)
    return history


def noise(seed: int) -> Callable[[Mapping[str, Any]], float | None]:
    rng = random.Random(seed)
    return lambda params: None if rng.random() < 0.2 else rng.random()


# --- the contract -------------------------------------------------------------------------------


class TunerContract:
    """The tuner contract, as a pytest mixin: subclass it in a test module that provides a
    ``case`` fixture (a :class:`Case` per tuner under test). Every test here must pass for
    every tuner; adding a tuner = one more :class:`Case`."""

    def test_suggestions_lie_in_the_space(self, case: Case) -> None:
        space = case.space()
        history = drive(case.tuner(), noise(1), 40)
        assert len(history) == (len(BATCH_CONFIGS) if case.batch else 40)
        for record in history:
            assert case.in_domain(space, record.parameters), record.parameters
            json.dumps(record.parameters)
        nested = {r.parameters["model"]["_name"] for r in history if not case.batch}
        assert nested == ({"conv", "mlp"} if not case.batch else set())

    def test_failed_and_stopped_trials_do_not_crash(self, case: Case) -> None:
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

    def test_observing_foreign_parameters_is_accepted(self, case: Case) -> None:
        tuner = case.tuner()
        space = case.space()
        foreign = BATCH_CONFIGS[0] if case.batch else space.sample(random.Random(5))
        tuner.observe(100, foreign, 0.5, TrialStatus.SUCCEEDED)
        tuner.observe(101, {"not": "in the space"}, 0.5, TrialStatus.SUCCEEDED)
        assert tuner.suggest(0, ()) is not None

    def test_pending_suggestions_are_distinct(self, case: Case) -> None:
        tuner = case.tuner()
        drive(tuner, noise(2), 3 if case.batch else 15)
        pending = [tuner.suggest(100 + i, ()) for i in range(3)]
        keys = [json.dumps(p, sort_keys=True) for p in pending]
        assert len(set(keys)) == 3

    def test_deterministic_with_a_seed(self, case: Case) -> None:
        first = drive(case.tuner(seed=7), noise(3), 30)
        second = drive(case.tuner(seed=7), noise(3), 30)
        assert [r.parameters for r in first] == [r.parameters for r in second]
        if not case.enumerates:
            other = drive(case.tuner(seed=8), noise(3), 30)
            assert [r.parameters for r in first] != [r.parameters for r in other]

    def test_restore_continues_without_reissuing(self, case: Case) -> None:
        space = case.space(SMALL)
        before = drive(case.tuner(space), noise(4), 4)
        # a trial was running when the controller stopped; the store still has it
        running = before[-1]
        history = before[:-1] + [replace(running, status=TrialStatus.RUNNING, final=None)]
        restored = case.tuner(space, seed=1)
        restored.restore(tuple(history))
        after = drive(restored, noise(5), 40, history)[len(history) :]
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
