"""A budget that stops trials (maxExperimentDuration) ends the experiment only once the
kills were carried out: no trial process outlives `remotetune run`."""

from __future__ import annotations

import time
from pathlib import Path

from remotetune.backends.hostpool._host.agent import group_alive
from remotetune.model import TrialStatus
from tests.test_run_local import make_experiment, only_experiment, open_store, run_cli

HANG = {
    "x": {"_type": "uniform", "_value": [0.1, 1.0]},
    "steps": {"_type": "choice", "_value": [1]},
    "hang": {"_type": "choice", "_value": [120]},
}


def test_max_experiment_duration_kills_before_the_run_ends(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, HANG, maxTrialNumber=2, trialConcurrency=2,
                           maxExperimentDuration="4s", killGracePeriod=2)
    result = run_cli(tmp_path, "run", str(path), "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        trials = store.trials(only_experiment(store))
    assert [t.status for t in trials] == [TrialStatus.SYS_CANCELED] * 2
    groups = [t.pid for t in trials if t.pid]
    assert len(groups) == 2
    deadline = time.monotonic() + 5  # TERM was sent before `run` exited; let it land
    while any(group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [g for g in groups if group_alive(g)]
    assert not alive, f"trial process groups {alive} outlived the experiment"
