"""Assessors: the contract for every built-in, each rule on its own, the config checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from remotetune.assessors import (
    BUILTIN_ASSESSORS,
    AshaAssessor,
    Assessor,
    CurvePoint,
    EarlyStopping,
    TrialView,
    Verdict,
    create_assessor,
    value_for_tuner,
)
from remotetune.config import load_experiment
from remotetune.errors import AssessorError, ConfigError
from remotetune.model import MetricKind, MetricPoint, OptimizeMode, TrialRecord, TrialStatus
from remotetune.testing.assessors import AssessorContract, Factory, history, newcomer

ROOT = Path(__file__).resolve().parent.parent

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


# --- each rule on its own ----------------------------------------------------------------------


def _view(tid: str, values: list[float], status: TrialStatus = TrialStatus.RUNNING,
          start: float = 0.0, final: float | None = None) -> TrialView:
    points = tuple(CurvePoint(i + 1, v, start + i) for i, v in enumerate(values))
    return TrialView(tid, {}, points, status, final, 0)


def test_medianstop_is_nni_rule_with_a_readable_reason() -> None:
    done = [_view(f"d{i}", [0.5 + 0.05 * i] * 6, TrialStatus.SUCCEEDED) for i in range(7)]
    medianstop = create_assessor("Medianstop", {"start_step": 5})
    early = medianstop.assess(_view("t", [0.1, 0.2, 0.3, 0.41]), done)
    assert not early.stop  # before start_step
    verdict = medianstop.assess(_view("t", [0.1, 0.2, 0.3, 0.41, 0.4]), done)
    assert verdict.stop
    assert verdict.reason == "best 0.41 at step 5 < median 0.65 of 7 trials"
    # only succeeded trials with at least that many steps count
    running = [_view(f"r{i}", [0.9] * 6) for i in range(3)]
    short = [_view(f"s{i}", [0.9] * 3, TrialStatus.SUCCEEDED) for i in range(3)]
    assert not medianstop.assess(_view("t", [0.1] * 5), running + short).stop


def test_asha_rungs_and_promotions_never_wait() -> None:
    asha = AshaAssessor(min_resource=2, eta=3, max_resource=50)
    assert [s for s in range(1, 60) if asha.rung_of(s) is not None] == [2, 6, 18]
    # the first trial at a rung always goes on, whatever its value
    assert not asha.assess(_view("first", [0.0, 0.0]), []).stop
    # later ones are ranked against those that reached the rung before them (by time)
    rivals = [_view(f"r{i}", [0.0, 0.1 * (i + 1)], start=float(i)) for i in range(5)]
    late = _view("late", [0.0, 0.55], start=100.0)
    assert not asha.assess(late, rivals).stop  # #1 of 6: top ceil(6/3) = 2
    worse = _view("late", [0.0, 0.35], start=100.0)
    verdict = asha.assess(worse, rivals)
    assert verdict.stop and "#3 of 6" in verdict.reason
    # a trial that reached the rung *later* is not held against an earlier one
    assert not asha.assess(_view("early", [0.0, 0.05], start=-10.0), rivals).stop
    assert not asha.assess(_view("between", [0.0, 0.2, 0.0]), rivals).stop  # not a rung


def test_curvefitting_extrapolates_the_curve() -> None:
    from remotetune.assessors._curvefit import predict

    values = [0.9 * (1 - 0.7 ** s) for s in range(1, 9)]
    guess = predict(values, 30)
    assert guess is not None and 0.8 < guess < 1.0
    assert predict([0.5, 0.6], 30) is None  # too short to fit
    cf = create_assessor("Curvefitting", {"epoch_num": 30, "start_step": 5, "gap": 2})
    # the curve ends at 0.9 * (1 - 0.7 ** 30) = 0.89998; 0.95 * best must be below that
    best = [_view("b", values, TrialStatus.SUCCEEDED, final=0.93)]
    assert not cf.assess(_view("t", values[:6]), best).stop  # step 6: not a step to assess
    assert not cf.assess(_view("t", values[:7]), best).stop  # predicts ~0.9 > 0.95 * 0.93
    assert cf.assess(_view("t", [v / 3 for v in values[:7]]), best).stop


def test_optuna_pruners_stay_fast_for_hundreds_of_trials() -> None:
    past = history(300)
    median = create_assessor("MedianPruner", {})
    median.restore(past)
    trial = newcomer(0.6)
    start = time.perf_counter()
    for step in range(1, 11):
        median.assess(trial.upto(step), past)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_value_for_tuner_rule() -> None:
    stopped = _view("s", [0.2, 0.4, 0.3], TrialStatus.EARLY_STOPPED)
    assert value_for_tuner(stopped) == 0.3  # the last intermediate, as NNI does
    assert value_for_tuner(replace(stopped, final=0.35)) == 0.35  # a final result wins
    assert value_for_tuner(_view("e", [], TrialStatus.EARLY_STOPPED)) is None
    assert value_for_tuner(_view("f", [0.9], TrialStatus.FAILED)) is None
    assert value_for_tuner(_view("ok", [0.9], TrialStatus.SUCCEEDED, final=0.8)) == 0.8


def test_view_from_store_records() -> None:
    record = TrialRecord(id="t1", experiment_id="e", sequence=1, parameters={"x": 1},
                         status=TrialStatus.RUNNING, parameter_id=4)
    metrics = [MetricPoint("t1", seq, kind, value, value, 10.0 + seq) for seq, kind, value in [
        (0, MetricKind.INTERMEDIATE, 0.1), (2, MetricKind.INTERMEDIATE, 0.3),
        (1, MetricKind.INTERMEDIATE, 0.2), (3, MetricKind.FINAL, 0.9)]]
    view = TrialView.of(record, metrics)
    assert view.values == (0.1, 0.2, 0.3) and view.last_step == 3 and view.parameter_id == 4
    assert view.time_at(2) == 11.0 and view.value_at(4) is None


class Stubborn(Assessor):
    def __init__(self, optimize_mode: Any = "maximize", *, after: int = 3) -> None:
        super().__init__(optimize_mode)
        self.after = after

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        if trial.last_step >= self.after:
            return Verdict.halt(f"step {trial.last_step} >= {self.after}")
        return Verdict.keep()


def test_custom_assessor_by_module_and_by_code_directory(tmp_path: Path) -> None:
    made = create_assessor(f"{__name__}:Stubborn", {"after": 2})
    assert made.assess(_view("t", [1, 2]), []).stop
    (tmp_path / "my_assessor.py").write_text(
        "from remotetune.assessors import Assessor, Verdict\n"
        "class Never(Assessor):\n"
        "    def assess(self, trial, others):\n"
        "        return Verdict.keep('never')\n"
        "class Nope:\n"
        "    pass\n"
    )
    never = create_assessor("my_assessor.Never", {}, code_directory=str(tmp_path))
    assert never.assess(_view("t", [1.0]), []).reason == "never"
    with pytest.raises(AssessorError, match="must be a class that subclasses"):
        create_assessor("my_assessor.Nope", {}, code_directory=str(tmp_path))
    with pytest.raises(AssessorError, match="has no class argument 'stop'"):
        create_assessor(f"{__name__}:Stubborn", {"stop": 1})


@pytest.mark.parametrize(("name", "args", "message"), [
    ("Medianstp", {}, "did you mean 'Medianstop'"),
    ("Medianstop", {"start_stp": 1}, "did you mean 'start_step'"),
    ("ASHA", {"eta": 1}, "'eta' must be an integer >= 2"),
    ("MedianPruner", {"n_startup": 1}, "did you mean 'n_startup_trials'"),
    ("PercentilePruner", {}, "percentile"),
    ("PatientPruner", {"wrapped_pruner": {"name": "NoPruner"}}, "unknown Optuna pruner"),
])
def test_bad_names_and_class_args(name: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(AssessorError, match=re.escape(message)):
        create_assessor(name, args)


# --- checked when the experiment file is loaded, and through the CLI ----------------------------

HEAD = """\
searchSpace:
  x: {_type: uniform, _value: [0, 1]}
trialCommand: python3 -c 1
trialConcurrency: 1
"""


@pytest.mark.parametrize(("body", "where", "fix"), [
    ("tuner:\n  name: TPEE\n", "exp.yml:6: tuner.name:", "did you mean 'TPE'?"),
    ("tuner:\n  name: TPE\n  classArgs:\n    optimze_mode: maximize\n",
     "exp.yml:8: tuner.classArgs.optimze_mode:", "did you mean optimize_mode?"),
    ("tuner:\n  name: Evolution\n  classArgs: {population_size: 0}\n",
     "exp.yml:7: tuner.classArgs.population_size:", ">= "),
    ("assessor:\n  name: NoSuchAssessor\n  classArgs: {foo: bar}\n",
     "exp.yml:6: assessor.name:", "built-in assessors"),
    ("assessor:\n  name: Medianstop\n  classArgs: {foo: bar}\n",
     "exp.yml:7: assessor.classArgs.foo:", "it accepts: optimize_mode, start_step"),
    ("assessor:\n  name: Curvefitting\n  classArgs: {threshold: 2}\n",
     "exp.yml:7: assessor.classArgs.threshold:", "[0.0, 1.0]"),
    ("advisor:\n  name: Hyperbnd\n", "exp.yml:6: advisor.name:", "did you mean 'Hyperband'?"),
    ("advisor:\n  name: TPE\n", "exp.yml:6: advisor.name:", "not an advisor"),
    ("advisor:\n  name: BOHB\n  classArgs: {max_budgett: 9}\n",
     "exp.yml:7: advisor.classArgs.max_budgett:", "did you mean max_budget?"),
    ("advisor:\n  name: BOHB\nassessor:\n  name: Medianstop\n", "exp.yml:7: assessor:",
     "takes no assessor"),
    ("tuner:\n  name: Hyperband\nassessor:\n  name: ASHA\n", "exp.yml:8: assessor.name:",
     "takes no assessor"),
])
def test_config_errors_at_load_time(tmp_path: Path, body: str, where: str, fix: str) -> None:
    path = tmp_path / "exp.yml"
    path.write_text(HEAD + body)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = str(info.value)
    assert where in text and fix in text, text


def test_nni2_advisor_and_nni3_tuner_placement_both_load(tmp_path: Path) -> None:
    for key in ("advisor", "tuner"):
        path = tmp_path / f"{key}.yml"
        path.write_text(HEAD + f"{key}:\n  name: Hyperband\n  classArgs: {{R: 27, eta: 3}}\n")
        cfg = load_experiment(path)
        assert cfg.tuner.name == "Hyperband" and cfg.tuner.class_args == {"R": 27, "eta": 3}
        assert cfg.raw[key]["name"] == "Hyperband"
    path = tmp_path / "ok.yml"
    path.write_text(HEAD + "assessor:\n  name: Medianstop\n  classArgs: {start_step: 3}\n")
    assert load_experiment(path).assessor is not None


CUSTOM = """\
import pathlib
from remotetune.assessors import Assessor, Verdict

with open(pathlib.Path(__file__).with_name("imported.txt"), "a") as seen:
    seen.write("imported\\n")


class Mine(Assessor):
    def __init__(self, optimize_mode, threshold=0.5):
        super().__init__(optimize_mode)
        self.threshold = threshold

    def assess(self, trial, others):
        return Verdict.CONTINUE


class NotOne:
    pass
"""


@pytest.mark.parametrize(("body", "where", "fix"), [
    ("assessor:\n  name: nosuchmodule:Assess\n", "exp.yml:6: assessor.name:", "not found"),
    ("assessor:\n  className: mine.NotOne\n  codeDirectory: .\n",
     "exp.yml:6: assessor.className:", "must be a class that subclasses"),
    ("assessor:\n  className: mine.Mine\n  codeDirectory: .\n  classArgs: {threshhold: 1}\n",
     "exp.yml:8: assessor.classArgs.threshhold:", "did you mean 'threshold'?"),
    ("tuner:\n  className: mine.Mine\n  codeDirectory: .\n", "exp.yml:6: tuner.className:",
     "subclasses remotetune.tuners.Tuner"),
])
def test_custom_classes_are_built_at_load_time_for_run_only(
        tmp_path: Path, body: str, where: str, fix: str) -> None:
    """`run` loads with import_custom: a custom class that fails does so at its line, before
    anything is stored. Without it (convert, check) the user's module is never imported."""
    (tmp_path / "mine.py").write_text(CUSTOM)
    path = tmp_path / "exp.yml"
    path.write_text(HEAD + body)
    load_experiment(path)
    assert not (tmp_path / "imported.txt").exists()
    with pytest.raises(ConfigError) as info:
        load_experiment(path, import_custom=True)
    text = str(info.value)
    assert where in text and fix in text, text


def test_a_good_custom_assessor_loads_for_run(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(CUSTOM)
    path = tmp_path / "exp.yml"
    path.write_text(HEAD + "assessor:\n  className: mine.Mine\n  codeDirectory: .\n"
                    "  classArgs: {threshold: 0.7}\n")
    config = load_experiment(path, import_custom=True)
    assert (tmp_path / "imported.txt").read_text() == "imported\n"
    spec = config.assessor
    assert spec is not None and spec.class_args == {"threshold": 0.7}
    built = create_assessor(spec.name, spec.class_args, code_directory=spec.code_directory)
    assert type(built).__name__ == "Mine" and built.threshold == 0.7
    assert (tmp_path / "imported.txt").read_text() == "imported\n"  # as the run builds it


def _cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REMOTETUNE_HOME=str(home),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "remotetune.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("body", "where"), [
    ("tuner:\n  name: TPEE\n", "bad.yml:6"),
    ("tuner:\n  name: TPE\n  classArgs:\n    optimze_mode: maximize\n", "bad.yml:8"),
    ("assessor:\n  name: NoSuchAssessor\n  classArgs: {foo: bar}\n", "bad.yml:6"),
    ("assessor:\n  name: nosuchmodule:Assess\n", "bad.yml:6"),
    ("tuner:\n  className: nosuchmodule.MyTuner\n", "bad.yml:6"),
])
def test_cli_run_with_a_typo_exits_2_and_stores_nothing(tmp_path: Path, body: str,
                                                        where: str) -> None:
    (tmp_path / "bad.yml").write_text("experimentName: typo\n" + HEAD.replace(
        "searchSpace", "searchSpace", 1) + body)
    # the name line shifts every line by one
    line = int(where.split(":")[1]) + 1
    done = _cli(tmp_path / "home", tmp_path, "run", "bad.yml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"bad.yml:{line}" in done.stderr.replace("\n", " "), done.stderr
    listed = _cli(tmp_path / "home", tmp_path, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


# --- the early-stopping benchmark's parts ----------------------------------------------------


def _bench_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_early_stop",
                                                  ROOT / "bench" / "bench_early_stop.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_early_stop"] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    return bench


def test_bench_simulation_and_the_curve_trial(tmp_path: Path, capsys: Any) -> None:
    bench = _bench_module()
    assert bench.main(["--mode", "sim", "--trials", "16", "--epochs", "9",
                       "--concurrency", "2"]) == 0
    out = capsys.readouterr().out
    for policy in ("none", "Medianstop", "ASHA", "Hyperband"):
        assert f"\n{policy} " in out
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "trials" / "curves" / "curve_trial.py"),
                           "--epoch-seconds", "0"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("periodical metric") == 20  # no parameters given: 20 epochs


def test_the_lr_sweep_workload_diverges_above_its_learning_rate() -> None:
    sys.path.insert(0, str(ROOT / "trials" / "curves"))
    import curves

    good = {"lr": 0.1, "width": 64, "dropout": 0.2}
    wild = {"lr": 0.5, "width": 64, "dropout": 0.2}
    assert curves.value(good, 20, "lr-sweep") == curves.value(good, 20) > 0.8
    assert curves.value(wild, 20) > 0.6  # the smooth workload: it learns
    assert all(abs(curves.value(wild, e, "lr-sweep") - curves.CHANCE) < 0.05
               for e in range(1, 21))
    with pytest.raises(ValueError, match="unknown workload"):
        curves.value(good, 1, "nope")


def test_bench_real_mode_runs_the_cli_and_reads_the_store(capsys: Any) -> None:
    """The real benchmark on a tiny workload, without NNI: one CLI run per policy."""
    bench = _bench_module()
    argv = ["--trials", "3", "--epochs", "2", "--epoch", "0.01", "--concurrency", "2",
            "--policies", "none,Medianstop", "--no-nni"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("none ", "Medianstop "))}
    assert rows["none"][1:3] == ["3", "0"] and rows["Medianstop"][1] == "3"
    assert float(rows["none"][3]) >= 3 * 2 * 0.01  # trial-seconds: at least the sleeps
    assert "NNI 3.0 skipped (--no-nni)" in out
    nni = sys.modules["_nni"]  # the NNI helper's REST decoding (JSON inside a JSON string)
    assert nni.final_value({"finalMetricData": [{"data": '"0.93"'}]}) == 0.93
    assert nni.final_value({"finalMetricData": [{"data": '{"default": 0.5}'}]}) == 0.5
    assert nni.final_value({"finalMetricData": []}) is None


def test_early_stopping_assesses_each_new_result_once_in_order() -> None:
    seen: list[int] = []

    class Recorder(Assessor):
        def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
            seen.append(trial.last_step)
            return Verdict.halt("step 4") if trial.last_step == 4 else Verdict.keep()

    driver = EarlyStopping(Recorder(), "Recorder")
    assert driver.reported(_view("t", [0.1, 0.2]), []) is None
    stop = driver.reported(_view("t", [0.1, 0.2, 0.3, 0.4, 0.5]), [])  # a poll brought three
    assert stop is not None and stop.step == 4 and stop.message == "stopped by Recorder: step 4"
    assert driver.reported(_view("t", [0.1] * 6), []) is None  # stopped: not assessed again
    assert seen == [1, 2, 3, 4]
    driver.finished(_view("t", [0.1] * 4, TrialStatus.EARLY_STOPPED))
    resumed = EarlyStopping(Recorder(), "Recorder")
    resumed.restore([_view("u", [0.1, 0.2, 0.3])])
    seen.clear()
    assert resumed.reported(_view("u", [0.1, 0.2, 0.3, 0.4]), []) is not None
    assert seen == [4]  # steps assessed before the restart are not assessed again
