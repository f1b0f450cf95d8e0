"""NNI's local mode through the real CLI: trials run in trialCodeDirectory itself (or in the
snapshot with ``localSnapshot: true``) and see the user's own PATH, not remotetune's venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from remotetune.model import TrialStatus
from remotetune.store import Store

ROOT = Path(__file__).resolve().parent.parent

# The trial an NNI user writes: it reads ./data (left out of uploads by .nniignore), and
# writes what it saw into its own trial directory.
TRIAL = """\
import json, os, shutil, sys
import nni

params = nni.get_next_parameter()
with open("data/train.txt") as f:
    rows = len(f.read().split())
seen = {"cwd": os.getcwd(), "path": os.environ["PATH"],
        "python3": shutil.which("python3"), "user_python": os.environ.get("USER_PYTHON"),
        "executable": sys.executable, "code_dir": os.environ["REMOTETUNE_CODE_DIR"]}
with open(os.path.join(os.environ["NNI_OUTPUT_DIR"], "seen.json"), "w") as f:
    json.dump(seen, f)
nni.report_final_result(rows * params["x"])
"""


def user_bin(tmp_path: Path) -> Path:
    """The user's own environment (a conda env, say): its python3 marks the trials it runs."""
    bin_dir = tmp_path / "userenv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    real = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert real is not None
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nUSER_PYTHON=1 exec {real} "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir


def nni_experiment(tmp_path: Path, **extra: object) -> Path:
    code = tmp_path / "code"
    (code / "data").mkdir(parents=True)
    (code / "data" / "train.txt").write_text("1 2 3 4\n")
    (code / ".nniignore").write_text("data/\n")
    (code / "trial.py").write_text(TRIAL)
    config = {
        "searchSpace": {"x": {"_type": "choice", "_value": [1, 2]}},
        "trialCommand": "python3 trial.py",
        "trialCodeDirectory": "code",
        "trialConcurrency": 1,
        "maxTrialNumber": 2,
        "tuner": {"name": "GridSearch"},
        "trainingService": {"platform": "local"},
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_as_user(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """`remotetune run` with remotetune's own interpreter nowhere on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{user_bin(tmp_path)}:/usr/local/bin:/usr/bin:/bin"
    env["REMOTETUNE_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "remotetune.cli", "run", "--plain",
                           str(config)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def seen_by_trials(tmp_path: Path) -> list[dict[str, str]]:
    with Store(tmp_path / "home" / "remotetune.db") as store:
        (exp,) = store.experiments()
        trials = store.trials(exp.id)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
    assert sorted(t.final for t in trials) == [4.0, 8.0]
    return [json.loads((Path(str(t.trial_dir)) / "seen.json").read_text()) for t in trials]


def test_local_trials_run_in_the_code_directory_with_the_users_path(tmp_path: Path) -> None:
    result = run_as_user(tmp_path, nni_experiment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    code = str((tmp_path / "code").resolve())
    venv_bin = os.path.dirname(sys.executable)
    for seen in seen_by_trials(tmp_path):
        assert os.path.realpath(seen["cwd"]) == code  # `cd $NNI_CODE_DIR`, as NNI does
        assert seen["code_dir"] == code
        assert seen["path"].startswith(str(tmp_path / "userenv" / "bin") + ":")
        assert venv_bin not in seen["path"].split(":")
        assert seen["python3"] == str(tmp_path / "userenv" / "bin" / "python3")
        assert seen["user_python"] == "1"  # the user's python3 ran the trial


def test_local_snapshot_runs_trials_in_the_immutable_snapshot(tmp_path: Path) -> None:
    config = nni_experiment(tmp_path, localSnapshot=True)
    result = run_as_user(tmp_path, config)
    # the snapshot leaves data/ out (.nniignore): the trial cannot find it there
    assert result.returncode == 1, result.stdout + result.stderr
    assert "data/train.txt" in result.stdout + result.stderr
    shutil.rmtree(tmp_path / "home")
    (tmp_path / "code" / ".nniignore").write_text("# nothing left out\n")
    result = run_as_user(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    snapshots = tmp_path / "home" / "host" / "snapshots"
    for seen in seen_by_trials(tmp_path):
        assert Path(seen["cwd"]).parent == snapshots
        assert seen["code_dir"] == seen["cwd"]
        assert seen["user_python"] == "1"
