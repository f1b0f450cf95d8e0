"""``remotetune update`` and ``resume --max-trials`` through the CLI: real controller
processes, real trials on the local machine, real SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from remotetune.change_requests import pending, requests_dir
from remotetune.model import ExperimentStatus, TrialStatus
from remotetune.view import Snapshot, render
from tests.test_run_local import (
    cli_env,
    make_experiment,
    only_experiment,
    open_store,
    run_cli,
    running_trials,
    start_cli,
)
from tests.test_view import text_of

SLOW = {  # each trial runs about 2 s
    "x": {"_type": "uniform", "_value": [0.1, 1.0]},
    "steps": {"_type": "choice", "_value": [20]},
    "sleep": {"_type": "choice", "_value": [0.1]},
}


def _update_and_time_it(tmp_path: Path, exp_id: str, *flags: str) -> tuple[str, float]:
    """Run ``update`` and return its output and the seconds from its request's appearing
    in the requests directory to the store's showing the new limits."""
    directory = requests_dir(tmp_path / "home", exp_id)
    proc = subprocess.Popen([sys.executable, "-m", "remotetune.cli", "update", exp_id, *flags],
                            env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    seen_request = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = time.monotonic()
        if seen_request is None and pending(directory):
            seen_request = now
        with open_store(tmp_path) as store:
            exp = store.experiment(exp_id)
        if (exp.max_trial_number, exp.trial_concurrency) == (6, 1):
            break
        time.sleep(0.01)
    applied = time.monotonic()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert seen_request is not None, "never saw the request file"
    return out, applied - seen_request


def test_update_changes_a_running_experiment_within_2_s(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, SLOW, maxTrialNumber=4, trialConcurrency=2)
    proc = start_cli(tmp_path, "run", str(path), "--plain")
    try:
        running_trials(tmp_path, 2)
        with open_store(tmp_path) as store:
            exp_id = only_experiment(store)
        out, latency = _update_and_time_it(
            tmp_path, exp_id, "--max-trials", "6", "--concurrency", "1")
        print(f"update applied {latency:.3f} s after its request was written")
        assert latency < 2.0
        assert f"experiment {exp_id}: applied maxTrialNumber 6, trialConcurrency 1" in out
        with open_store(tmp_path) as store:
            shown = text_of(render(Snapshot.from_store(store, exp_id)))
        assert "/6 trials" in shown and "1 at a time" in shown  # what `view EXP` draws
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stdout + stderr
    assert "limits changed by remotetune update: maxTrialNumber 4 -> 6, trialConcurrency " \
        "2 -> 1" in stdout
    with open_store(tmp_path) as store:
        trials = store.trials(exp_id)
        exp = store.experiment(exp_id)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 6
    first_two_end = max(t.ended_at or 0 for t in trials[:2])
    later = trials[2:]  # one at a time, once the first two were done
    assert all((t.started_at or 0) >= first_two_end - 0.5 for t in later)
    for a, b in zip(later, later[1:], strict=False):
        assert (b.started_at or 0) >= (a.ended_at or 0) - 0.5
    assert (exp.config["maxTrialNumber"], exp.config["trialConcurrency"]) == (6, 1)


def test_update_of_an_experiment_that_is_not_running_exits_2(tmp_path: Path) -> None:
    space = {"x": {"_type": "uniform", "_value": [0.1, 1.0]}}
    path = make_experiment(tmp_path, space, maxTrialNumber=1)
    assert run_cli(tmp_path, "run", str(path), "--plain").returncode == 0
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
    result = run_cli(tmp_path, "update", exp_id, "--max-trials", "5")
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert (f"experiment {exp_id} is not running; use remotetune resume {exp_id} "
            "--max-trials N to extend it") in said
    assert pending(requests_dir(tmp_path / "home", exp_id)) == []
    bad = run_cli(tmp_path, "update", exp_id, "--concurrency", "0")
    assert bad.returncode == 2 and "trialConcurrency" in bad.stderr
    assert run_cli(tmp_path, "update", "nosuch", "--max-trials", "3").returncode == 2


def test_resume_max_trials_extends_a_finished_experiment(tmp_path: Path) -> None:
    space = {"x": {"_type": "choice", "_value": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]},
             "steps": {"_type": "choice", "_value": [1]}}
    path = make_experiment(tmp_path, space, maxTrialNumber=3,
                           tuner={"name": "GridSearch"})
    assert run_cli(tmp_path, "run", str(path), "--plain").returncode == 0
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        before = store.trials(exp_id)
    assert len(before) == 3
    result = run_cli(tmp_path, "resume", exp_id, "--max-trials", "6", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resumed with 3 trials in the store" in result.stdout
    with open_store(tmp_path) as store:
        after = store.trials(exp_id)
        exp = store.experiment(exp_id)
    assert exp.status is ExperimentStatus.DONE and exp.max_trial_number == 6
    assert [t.id for t in after[:3]] == [t.id for t in before]  # finished ones not re-run
    assert [t.status for t in after] == [TrialStatus.SUCCEEDED] * 6
    assert [t.parameter_id for t in after] == list(range(6))  # ids continue
    assert len({t.id for t in after}) == 6
    # The grid tuner was restored from the history: no configuration ran twice.
    assert sorted(t.parameters["x"] for t in after) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_raising_concurrency_starts_more_trials_at_once(tmp_path: Path) -> None:
    """The local machine (no machines file) follows trialConcurrency: 1 -> 3 runs 3 at once."""
    path = make_experiment(tmp_path, SLOW, maxTrialNumber=5, trialConcurrency=1)
    proc = start_cli(tmp_path, "run", str(path), "--plain")
    try:
        running_trials(tmp_path, 1)
        with open_store(tmp_path) as store:
            exp_id = only_experiment(store)
        done = run_cli(tmp_path, "update", exp_id, "--concurrency", "3")
        assert done.returncode == 0, done.stdout + done.stderr
        running_trials(tmp_path, 3)  # waits until three run at the same time
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stdout + stderr
