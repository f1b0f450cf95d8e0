"""NNI custom tuners and assessors (``nni.tuner.Tuner``, ``nni.assessor.Assessor``) through
remotetune's adapters, with NNI absent: the contract suites run against the samples in
``tests/data/nni_user`` (written as NNI's docs show), then the edges of the adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from remotetune.assessors import Assessor, TrialView, create_assessor
from remotetune.assessors._nni import NniAssessor
from remotetune.errors import AssessorError, TunerError
from remotetune.model import OptimizeMode, TrialStatus
from remotetune.nni_classes import ensure_nni
from remotetune.space import SearchSpace
from remotetune.testing.assessors import AssessorContract, Factory
from remotetune.testing.tuners import MIXED, Case, TunerContract
from remotetune.tuners import create_tuner
from remotetune.tuners._nni import NniTuner
from tests.test_nni_trial_api import NNI_PYTHON, needs_nni

NNI_USER = Path(__file__).parent / "data" / "nni_user"
TUNER = "my_tuner.RandomNniTuner"
ASSESSOR = "my_assessor.MedianNniAssessor"
LINE = SearchSpace.parse({"x": {"_type": "uniform", "_value": [0.0, 1.0]}})


@pytest.fixture(params=[Case(TUNER, code_directory=str(NNI_USER))], ids=lambda c: c.name)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


class TestNniTunerContract(TunerContract):
    """The tuner contract, against an NNI tuner through :class:`NniTuner`."""


class TestNniAssessorContract(AssessorContract):
    @pytest.fixture
    def make_assessor(self) -> Factory:
        def make(mode: OptimizeMode) -> Assessor:
            return create_assessor(ASSESSOR, {"optimize_mode": mode.value, "start_step": 2},
                                   code_directory=str(NNI_USER))
        return make


def _events(log: Path) -> list[list[Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_nni_tuner_is_built_and_told_as_nni_does(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    tuner = create_tuner(TUNER, {"optimize_mode": "minimize", "budget": 3, "log": str(log)},
                         LINE, seed=1, code_directory=str(NNI_USER))
    assert isinstance(tuner, NniTuner) and tuner.optimize_mode is OptimizeMode.MINIMIZE
    first = tuner.suggest(0, ())
    second = tuner.suggest(1, ())
    assert first is not None and second is not None
    tuner.observe(0, first, 0.25, TrialStatus.SUCCEEDED)
    tuner.observe(1, second, None, TrialStatus.FAILED)
    tuner.observe(7, {"x": 0.5}, 0.5, TrialStatus.SUCCEEDED)  # not its own: import_data
    assert tuner.suggest(2, ()) is not None
    assert tuner.suggest(3, ()) is None  # NoMoreTrialError, a trial still pending: not now
    assert tuner.is_exhausted() is False
    tuner.observe(2, {"x": 0.1}, 0.1, TrialStatus.EARLY_STOPPED)
    assert tuner.suggest(3, ()) is None and tuner.is_exhausted() is True
    kinds = [(e[0], *e[1:2]) if e[0] != "update_search_space" else (e[0],)
             for e in _events(log)]
    assert kinds == [("update_search_space",), ("generate_parameters", 0),
                     ("generate_parameters", 1), ("receive_trial_result", 0), ("trial_end", 0),
                     ("trial_end", 1), ("import_data", [{"parameter": {"x": 0.5}, "value": 0.5}]),
                     ("generate_parameters", 2),
                     ("receive_trial_result", 2), ("trial_end", 2)]
    ends = {e[1]: e[2] for e in _events(log) if e[0] == "trial_end"}
    assert ends == {0: True, 1: False, 2: False}


def test_nni_tuner_errors_are_tuner_errors(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="classArgs do not fit its constructor.*'bogus'"):
        create_tuner(TUNER, {"bogus": 1}, LINE, code_directory=str(NNI_USER))
    (tmp_path / "odd.py").write_text(
        "from nni.tuner import Tuner\n"
        "class Listy(Tuner):\n"
        "    def update_search_space(self, s): pass\n"
        "    def generate_parameters(self, pid, **kw): return [1, 2]\n")
    tuner = create_tuner("odd.Listy", {}, LINE, code_directory=str(tmp_path))
    with pytest.raises(TunerError, match="needs a dict of parameters"):
        tuner.suggest(0, ())


def test_a_missing_dependency_is_named_and_nni_is_never_missing(tmp_path: Path) -> None:
    (tmp_path / "needs.py").write_text(
        "import nni\nfrom nni.tuner import Tuner\nimport no_such_package_xyz\n")
    with pytest.raises(TunerError) as err:
        create_tuner("needs.T", {}, LINE, code_directory=str(tmp_path))
    text = str(err.value)
    assert "imports 'no_such_package_xyz', which is not installed" in text
    assert "'nni'" not in text and "not found" not in text
    with pytest.raises(TunerError, match="module 'absent' not found"):
        create_tuner("absent.T", {}, LINE, code_directory=str(tmp_path))
    assert "needs" not in sys.modules


def test_the_nni_assessor_sees_numbers_and_ends(tmp_path: Path) -> None:
    (tmp_path / "rec.py").write_text(
        "from nni.assessor import Assessor, AssessResult\n"
        "class Rec(Assessor):\n"
        "    def __init__(self, log):\n"
        "        self.log = log\n"
        "    def _w(self, *e):\n"
        "        open(self.log, 'a').write(repr(e) + '\\n')\n"
        "    def assess_trial(self, trial_job_id, trial_history):\n"
        "        self._w('assess', trial_job_id, trial_history)\n"
        "        return len(trial_history) < 2\n"
        "    def trial_end(self, trial_job_id, success):\n"
        "        self._w('end', trial_job_id, success)\n")
    log = tmp_path / "log"
    assessor = create_assessor("rec.Rec", {"log": str(log)}, code_directory=str(tmp_path))
    assert isinstance(assessor, NniAssessor)
    view = TrialView("t1", {}, ()).upto(0)
    assert not assessor.assess(view, []).stop  # nothing reported: not asked
    from remotetune.assessors import CurvePoint
    points = (CurvePoint(1, 0.5, 1.0), CurvePoint(2, 0.25, 2.0))
    trial = TrialView("t1", {}, points)
    assert not assessor.assess(trial.upto(1), []).stop
    verdict = assessor.assess(trial, [])
    assert verdict.stop and "step 2" in verdict.reason
    assessor.trial_end(TrialView("t1", {}, points, TrialStatus.EARLY_STOPPED))
    assessor.trial_end(TrialView("t2", {}, (), TrialStatus.FAILED))  # never assessed: not told
    assert log.read_text().splitlines() == [
        "('assess', 't1', [0.5])", "('assess', 't1', [0.5, 0.25])", "('end', 't1', False)"]
    with pytest.raises(AssessorError, match="do not fit its constructor"):
        create_assessor("rec.Rec", {}, code_directory=str(tmp_path))


def test_nni_base_classes_are_nni_modules() -> None:
    ensure_nni()
    import nni
    import nni.assessor
    import nni.tuner
    import nni.utils

    assert nni.tuner.Tuner.__module__ == "nni.tuner"
    assert nni.assessor.AssessResult.Bad.value is False
    assert nni.utils.OptimizeMode("minimize") is nni.utils.OptimizeMode.Minimize
    assert nni.utils.extract_scalar_reward({"default": 2, "x": 1}) == 2
    with pytest.raises(RuntimeError):
        nni.utils.extract_scalar_reward({"loss": 1})
    assert issubclass(nni.NoMoreTrialError, Exception)


def test_the_sample_tuner_samples_every_type() -> None:
    tuner = create_tuner(TUNER, {}, MIXED, seed=3, code_directory=str(NNI_USER))
    for pid in range(30):
        params = tuner.suggest(pid, ())
        assert params is not None and MIXED.contains(params), params


REAL_NNI_CONTROLLER = textwrap.dedent("""
    import json, sys
    from remotetune.nni_classes import ensure_nni
    assert ensure_nni() is False  # NNI is installed: nothing is put in its place
    import nni
    from remotetune.assessors import CurvePoint, TrialView, create_assessor
    from remotetune.model import TrialStatus
    from remotetune.space import SearchSpace
    from remotetune.tuners import create_tuner
    space = SearchSpace.parse({"x": {"_type": "uniform", "_value": [0, 1]}})
    code = sys.argv[1]
    tuner = create_tuner("my_tuner.RandomNniTuner", {"budget": 2}, space, seed=1,
                         code_directory=code)
    a, b = tuner.suggest(0, ()), tuner.suggest(1, ())
    tuner.observe(0, a, 0.5, TrialStatus.SUCCEEDED)
    none, waiting = tuner.suggest(2, ()), not tuner.is_exhausted()
    assessor = create_assessor("my_assessor.MedianNniAssessor", {"start_step": 2},
                               code_directory=code)
    done = TrialView("d", {}, tuple(CurvePoint(s, 0.9, s) for s in (1, 2, 3)),
                     TrialStatus.SUCCEEDED)
    assessor.restore([done])
    bad = TrialView("b", {}, tuple(CurvePoint(s, 0.1, 10 + s) for s in (1, 2)))
    print(json.dumps({"nni": nni.__file__, "base": type(tuner.nni).__mro__[1].__module__,
                      "a": a, "none": none, "waiting": waiting,
                      "stop": assessor.assess(bad, [done]).stop}))
""")


@needs_nni
def test_with_nni_installed_on_the_controller_its_own_classes_are_used() -> None:
    path = os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                            sysconfig.get_paths()["purelib"]])
    result = subprocess.run([NNI_PYTHON, "-c", REAL_NNI_CONTROLLER, str(NNI_USER)],
                            env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert "site-packages" in out["nni"] and out["base"] == "nni.tuner"
    assert 0 <= out["a"]["x"] <= 1 and out["none"] is None and out["waiting"] is True
    assert out["stop"] is True
