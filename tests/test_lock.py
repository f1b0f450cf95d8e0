"""Issue 8 item 4: one controller per experiment, by a lock that dies with its process."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from remotetune.errors import ExperimentBusy
from remotetune.lock import ExperimentLock, lock_path
from remotetune.model import TrialStatus
from tests.test_run_local import (
    make_experiment,
    only_experiment,
    open_store,
    pid_alive,
    run_cli,
    running_trials,
    start_cli,
)


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path: Path) -> None:
    with ExperimentLock(tmp_path, "exp1"):
        with pytest.raises(ExperimentBusy) as info:
            ExperimentLock(tmp_path, "exp1").acquire()
        assert info.value.exit_code == 2
        text = str(info.value)
        assert f"experiment exp1 is being run by pid {os.getpid()} on {socket.gethostname()}"\
            in text
        assert "watch it with remotetune view exp1" in text
        with ExperimentLock(tmp_path, "exp2"):  # another experiment: its own lock
            pass
    ExperimentLock(tmp_path, "exp1").acquire().release()  # released: free again
    assert lock_path(tmp_path, "exp1").exists()


def test_resume_of_a_running_experiment_exits_2_until_its_controller_is_killed(
    tmp_path: Path,
) -> None:
    space = {
        "x": {"_type": "uniform", "_value": [0.1, 1.0]},
        "steps": {"_type": "choice", "_value": [20]},
        "sleep": {"_type": "choice", "_value": [0.1]},
    }
    path = make_experiment(tmp_path, space, maxTrialNumber=4)
    proc = start_cli(tmp_path, "run", str(path))
    first = running_trials(tmp_path, 2)
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
    second = run_cli(tmp_path, "resume", exp_id, "--plain")
    assert second.returncode == 2, second.stdout + second.stderr
    said = " ".join(second.stderr.split())
    assert (f"experiment {exp_id} is being run by pid {proc.pid} on {socket.gethostname()} "
            "since ") in said, said
    assert f"watch it with remotetune view {exp_id}" in said
    assert proc.poll() is None  # the first controller carries on untouched
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    for t in first:
        assert pid_alive(t.pid)  # its trials outlived it
    time.sleep(0.2)
    result = run_cli(tmp_path, "resume", exp_id, "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        trials = store.trials(exp_id)
    assert len(trials) == 4
    assert all(t.status is TrialStatus.SUCCEEDED for t in trials)
