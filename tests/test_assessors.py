"""Assessors: the contract for every built-in, each rule on its own, the config checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from remotetune.assessors import BUILTIN_ASSESSORS, Assessor, create_assessor
from remotetune.model import OptimizeMode
from remotetune.testing.assessors import AssessorContract, Factory

#: Every built-in with the class arguments the contract runs it with.
CASES: dict[str, Mapping[str, Any]] = {
    "Medianstop": {"start_step": 2},
    "Curvefitting": {"epoch_num": 20, "start_step": 4, "threshold": 0.9},
    "ASHA": {"min_resource": 1, "eta": 3},
    "MedianPruner": {"n_warmup_steps": 1},
    "PercentilePruner": {"percentile": 25.0},
    "SuccessiveHalvingPruner": {},
    "HyperbandPruner": {"min_resource": 1, "max_resource": 20},
    "ThresholdPruner": {"lower": 0.05},
    "PatientPruner": {"wrapped_pruner": {"name": "MedianPruner"}, "patience": 0},
    "WilcoxonPruner": {"p_threshold": 0.1},
}


def test_every_builtin_has_a_contract_case() -> None:
    assert set(CASES) == set(BUILTIN_ASSESSORS)


class TestBuiltins(AssessorContract):
    @pytest.fixture(params=sorted(CASES))
    def make_assessor(self, request: pytest.FixtureRequest) -> Factory:
        name = request.param

        def make(mode: OptimizeMode) -> Assessor:
            args = dict(CASES[name])
            if name == "ThresholdPruner" and mode is OptimizeMode.MINIMIZE:
                args = {"upper": -0.05}
            return create_assessor(name, args, optimize_mode=mode)

        return make
