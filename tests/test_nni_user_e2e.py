"""NNI users' own files through ``remotetune run`` on the local machine: NNI's MNIST example
(``merge_parameter``, a report per epoch) with NNI absent and with the real NNI installed in
the trial's Python, and an NNI custom tuner with an NNI custom assessor (the assessor stops
some trials, the tuner is told every result). The files are in ``tests/data/nni_user``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from remotetune.model import ExperimentStatus, TrialStatus
from tests.test_nni_trial_api import NNI_PYTHON, needs_nni
from tests.test_run_local import only_experiment, open_store, run_cli

NNI_USER = Path(__file__).parent / "data" / "nni_user"
pytestmark = pytest.mark.timeout(300)

CURVE = '''
import time
import nni

params = nni.get_next_parameter()
x = params["x"]
for step in range(8):
    nni.report_intermediate_result(x * (0.5 + 0.05 * step))
    time.sleep(0.2)
nni.report_final_result(x)
'''


def user_files(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    shutil.copytree(NNI_USER, code)
    return code


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mnist_config(tmp_path: Path, python: str) -> Path:
    """NNI's own config of the example (v2), with the interpreter spelled out."""
    user_files(tmp_path)
    return write_config(tmp_path, {
        "searchSpaceFile": "code/search_space.json",
        "trialCommand": f"{python} mnist.py",
        "trialCodeDirectory": "code",
        "trialGpuNumber": 0,
        "trialConcurrency": 2,
        "maxTrialNumber": 4,
        "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}},
        "trainingService": {"platform": "local"},
        "pollInterval": 0.05,
    })


def check_mnist_run(tmp_path: Path, python: str) -> None:
    result = run_cli(tmp_path, "run", str(mnist_config(tmp_path, python)))
    assert result.returncode == 0, result.stderr + result.stdout
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        trials = store.trials(exp_id)
        assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 4
        for t in trials:
            points = store.metrics(exp_id, t.id)
            assert len(points) == 4  # 3 epochs (the argparse default) and the final
            assert t.final is not None and 0.0 <= t.final <= 100.0
            printed = Path(t.trial_dir, "stdout.log").read_text()
            assert f"'lr': {t.parameters['lr']}" in printed  # merged into the argparse args


def test_nni_mnist_example_runs_with_remotetunes_nni(tmp_path: Path) -> None:
    check_mnist_run(tmp_path, sys.executable)


@needs_nni
def test_nni_mnist_example_runs_with_the_real_nni_in_the_trials_python(tmp_path: Path) -> None:
    check_mnist_run(tmp_path, NNI_PYTHON)


def test_nni_custom_tuner_and_assessor_run_unchanged(tmp_path: Path) -> None:
    code = user_files(tmp_path)
    (code / "curve.py").write_text(CURVE)
    log = tmp_path / "tuner.jsonl"
    path = write_config(tmp_path, {
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": f"{sys.executable} curve.py",
        "trialCodeDirectory": "code",
        "trialConcurrency": 1,
        "maxTrialNumber": 10,
        "tuner": {"className": "my_tuner.RandomNniTuner", "codeDirectory": "code",
                  "classArgs": {"optimize_mode": "maximize", "seed": 2, "budget": 6,
                                "log": str(log)}},
        "assessor": {"className": "my_assessor.MedianNniAssessor", "codeDirectory": "code",
                     "classArgs": {"optimize_mode": "maximize", "start_step": 3}},
        "trainingService": {"platform": "local"},
        "pollInterval": 0.05,
    })
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stderr + result.stdout
    events = [json.loads(line) for line in log.read_text().splitlines()]
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        trials = sorted(store.trials(exp_id), key=lambda t: t.parameter_id)
    assert len(trials) == 6  # the tuner's budget: then NoMoreTrialError ends the experiment
    statuses = [t.status for t in trials]
    assert statuses[:2] == [TrialStatus.SUCCEEDED] * 2
    assert TrialStatus.EARLY_STOPPED in statuses[2:], statuses
    generated = {e[1]: e[2] for e in events if e[0] == "generate_parameters"}
    assert {t.parameter_id: dict(t.parameters) for t in trials} == generated
    results = {e[1]: e[3] for e in events if e[0] == "receive_trial_result"}
    ends = {e[1]: e[2] for e in events if e[0] == "trial_end"}
    for t in trials:
        assert ends[t.parameter_id] is (t.status is TrialStatus.SUCCEEDED)
        if t.status is TrialStatus.SUCCEEDED:
            assert results[t.parameter_id] == pytest.approx(t.parameters["x"])
        else:  # stopped: told its last intermediate result, NNI's rule
            assert results[t.parameter_id] < t.parameters["x"]
