"""NNI's other built-in tuner names: GP on Optuna's GPSampler, SMAC/Metis/DNGO/TPE_legacy/
RegularizedEvolution run as the closest built-in, PBT and PPOTuner refused at load time with
the closest built-in named."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from remotetune.errors import TunerError
from remotetune.space import SearchSpace
from remotetune.tuners import create_tuner, tuner_class
from remotetune.tuners._evolution import EvolutionTuner
from remotetune.tuners._gp import GpTuner
from remotetune.tuners._optuna import TpeTuner
from tests.test_config import check, exp_error, experiment, load_experiment

LINE = SearchSpace.parse({"x": {"_type": "uniform", "_value": [-5.0, 5.0]}})


@pytest.mark.parametrize(("name", "cls"), [
    ("GP", GpTuner), ("SMAC", TpeTuner), ("Metis", GpTuner), ("DNGO", GpTuner),
    ("TPE_legacy", TpeTuner), ("tpe-legacy", TpeTuner),
    ("RegularizedEvolution", EvolutionTuner),
])
def test_each_name_runs_as_the_closest_built_in(name: str, cls: type) -> None:
    assert tuner_class(name) is cls
    assert type(create_tuner(name, {"optimize_mode": "minimize"}, LINE, seed=1)) is cls


def test_nni_class_arguments_are_translated_or_ignored_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        legacy = create_tuner("TPE_legacy", {"parallel_optimize": False,
                                             "constant_liar_type": "min"}, LINE)
        metis = create_tuner("Metis", {"cold_start_num": 3, "no_resampling": True}, LINE)
        evo = create_tuner("RegularizedEvolution", {"population_size": 10, "sample_size": 3},
                           LINE)
        smac = create_tuner("SMAC", {"config_dedup": True, "optimize_mode": "maximize"}, LINE)
        gp = create_tuner("GP", {"utility": "ucb", "kappa": 2.0, "cold_start_num": 4}, LINE)
    assert isinstance(legacy, TpeTuner) and legacy.constant_liar is False
    assert isinstance(metis, GpTuner) and metis.cold_start_num == 3
    assert isinstance(evo, EvolutionTuner) and (evo.population_size, evo.sample_size) == (10, 3)
    assert isinstance(smac, TpeTuner) and isinstance(gp, GpTuner) and gp.cold_start_num == 4
    text = caplog.text
    for phrase in ("constant_liar_type is ignored", "no_resampling is ignored",
                   "config_dedup is ignored (SMAC runs as TPE)",
                   "utility has no counterpart", "kappa has no counterpart"):
        assert phrase in text
    with pytest.raises(TunerError, match="SMAC has no class argument 'gamma'"):
        create_tuner("SMAC", {"gamma": 1}, LINE)


@pytest.mark.parametrize(("name", "closest"), [("PBT", "Evolution"), ("PPOTuner", "Evolution")])
def test_refused_names_say_why_and_name_the_closest(tmp_path: Path, name: str,
                                                    closest: str) -> None:
    with pytest.raises(TunerError, match=f"closest built-in is {closest}"):
        create_tuner(name, {}, LINE)
    err = exp_error(tmp_path, f"""\
        trialCommand: python3 t.py
        trialConcurrency: 1
        tuner:
          name: {name}
        """)
    check(err, file="exp.yml", key="tuner.name", line=7, fix=f"write `name: {closest}`")


def test_class_arguments_of_a_stand_in_are_checked_at_load_time(tmp_path: Path) -> None:
    err = exp_error(tmp_path, """\
        trialCommand: python3 t.py
        trialConcurrency: 1
        tuner:
          name: SMAC
          classArgs: {optimize_mode: maximize, n_startup_trials: 3}
        """)
    check(err, file="exp.yml", key="tuner.classArgs.n_startup_trials", line=8,
          fix="SMAC has no class argument 'n_startup_trials'")
    good = load_experiment(experiment(tmp_path, """\
        trialCommand: python3 t.py
        trialConcurrency: 1
        tuner:
          name: GP
          classArgs: {optimize_mode: minimize, cold_start_num: 5, utility: ei}
        """, name="gp.yml"))
    assert good.tuner.name == "GP"


def test_gp_without_pytorch_is_a_load_time_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    err = exp_error(tmp_path, """\
        trialCommand: python3 t.py
        trialConcurrency: 1
        tuner:
          name: GP
        """)
    check(err, file="exp.yml", key="tuner.name", line=7, fix="needs PyTorch: pip install torch")
