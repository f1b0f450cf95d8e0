"""End to end on the local machine: real controller processes, real trials, real SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from remotetune.model import ExperimentStatus, TrialStatus
from remotetune.store import Store

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def make_experiment(tmp_path: Path, space: dict, **overrides: object) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(DATA / "trial_basic.py", code / "trial.py")
    config = {
        "experimentName": "local-test",
        "searchSpace": space,
        "trialCommand": f"{sys.executable} trial.py",
        "trialCodeDirectory": "code",
        "trialConcurrency": 2,
        "maxTrialNumber": 4,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "pollInterval": 0.02,
    }
    config.update(overrides)
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["REMOTETUNE_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "remotetune.cli", *args],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def start_cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "remotetune.cli", *args],
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home" / "remotetune.db")


def only_experiment(store: Store) -> str:
    exps = store.experiments()
    assert len(exps) == 1
    return exps[0].id


def reported_lines(trial_dir: str) -> list[str]:
    path = Path(trial_dir) / "reported.txt"
    return path.read_text().split() if path.exists() else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


UNIFORM = {"x": {"_type": "uniform", "_value": [0.1, 1.0]}}


def test_run_completes_and_every_metric_reaches_the_store(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, UNIFORM, maxTrialNumber=5)
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stderr + result.stdout
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        exp = store.experiment(exp_id)
        assert exp.status is ExperimentStatus.DONE
        trials = store.trials(exp_id)
        assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 5
        for t in trials:
            points = store.metrics(exp_id, t.id)
            written = reported_lines(t.trial_dir)
            assert [p.value for p in points] == [float(v) for v in written]
            assert t.final == pytest.approx(t.parameters["x"])
            assert t.intermediate_count == 3
            assert t.pid and t.started_at and t.ended_at and t.exit_code == 0
            assert "params" in (t.stdout_tail or "")
        best = store.best_trial(exp_id)
        assert best is not None
        assert best.final == max(t.final for t in trials)
    # the plain (non-terminal) output has one line per trial event and names the experiment
    assert exp_id in result.stdout
    assert result.stdout.count("succeeded") >= 5


def test_failing_and_garbage_trials_are_recorded_and_the_experiment_carries_on(
    tmp_path: Path,
) -> None:
    space = {
        "x": {"_type": "choice", "_value": [0.5]},
        "fail": {"_type": "choice", "_value": [0, 1]},
        "garbage": {"_type": "choice", "_value": [1]},
    }
    # seeded: unseeded, all 6 draws fail one time in 64, and an all-failed run exits 1
    path = make_experiment(tmp_path, space, maxTrialNumber=6, seed=7)
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        trials = store.trials(exp_id)
        assert len(trials) == 6
        for t in trials:
            if t.parameters["fail"]:
                assert t.status is TrialStatus.FAILED
                assert t.exit_code == 3
                assert "something went wrong on purpose" in (t.stderr_tail or "")
            else:
                assert t.status is TrialStatus.SUCCEEDED
        events = [e.message for e in store.events(exp_id, limit=None)]
        assert any("cannot read" in m and "this is not json" in m for m in events)
        # garbage lines are skipped, real ones all arrive exactly once
        for t in trials:
            values = [p.value for p in store.metrics(exp_id, t.id)]
            assert values == [float(v) for v in reported_lines(t.trial_dir)]


def test_trial_past_max_trial_duration_is_early_stopped(tmp_path: Path) -> None:
    space = {"hang": {"_type": "choice", "_value": [60]}}
    path = make_experiment(
        tmp_path, space, maxTrialNumber=2, maxTrialDuration="1s", killGracePeriod=1
    )
    t0 = time.monotonic()
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - t0 < 30
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        trials = store.trials(exp_id)
        assert [t.status for t in trials] == [TrialStatus.EARLY_STOPPED] * 2
        for t in trials:
            assert not pid_alive(t.pid)


def test_bad_experiment_file_is_a_clear_error(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, UNIFORM, trialConcurency=2)
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 2
    assert "experiment.yml" in result.stderr
    assert "trialConcurrency" in result.stderr  # the "did you mean"
    missing = run_cli(tmp_path, "run", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "nope.yml" in missing.stderr


def test_loguniform_over_zero_is_refused_with_a_hint(tmp_path: Path) -> None:
    space = {"grad_clip": {"_type": "loguniform", "_value": [0, 10]}}
    path = make_experiment(tmp_path, space)
    result = run_cli(tmp_path, "run", str(path))
    assert result.returncode == 2
    assert "grad_clip" in result.stderr and "choice" in result.stderr


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def running_trials(tmp_path: Path, n: int) -> list:
    def check() -> list:
        db = tmp_path / "home" / "remotetune.db"
        if not db.exists():
            return []
        with Store(db) as store:
            exps = store.experiments()
            if not exps:
                return []
            trials = [
                t for t in store.trials(exps[0].id) if t.status is TrialStatus.RUNNING and t.pid
            ]
            return trials if len(trials) >= n else []

    return wait_for(check)


def test_sigterm_stops_cleanly_with_no_orphans(tmp_path: Path) -> None:
    space = {"hang": {"_type": "choice", "_value": [60]}}
    path = make_experiment(tmp_path, space, maxTrialNumber=4)
    proc = start_cli(tmp_path, "run", str(path))
    trials = running_trials(tmp_path, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        assert store.experiment(exp_id).status is ExperimentStatus.STOPPED
        for t in trials:
            assert store.trial(exp_id, t.id).status is TrialStatus.USER_CANCELED
    for t in trials:
        wait_for(lambda t=t: not pid_alive(t.pid), timeout=15)


@pytest.mark.parametrize("how", ["leave", "sigkill"])
def test_resume_reattaches_to_running_trials_without_losing_a_line(
    tmp_path: Path, how: str
) -> None:
    space = {
        "x": {"_type": "uniform", "_value": [0.1, 1.0]},
        "steps": {"_type": "choice", "_value": [20]},
        "sleep": {"_type": "choice", "_value": [0.1]},
    }
    path = make_experiment(tmp_path, space, maxTrialNumber=4)
    if how == "leave":
        proc = start_cli(tmp_path, "run", str(path), "--on-interrupt", "leave")
    else:
        proc = start_cli(tmp_path, "run", str(path))
    first = running_trials(tmp_path, 2)
    time.sleep(0.3)
    if how == "leave":
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 130
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    for t in first:  # the trials outlived the controller
        assert pid_alive(t.pid)
    time.sleep(0.5)  # metric lines are written while no controller runs
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
    result = run_cli(tmp_path, "resume", exp_id)
    assert result.returncode == 0, result.stderr + result.stdout
    with open_store(tmp_path) as store:
        trials = store.trials(exp_id)
        assert sum(t.status is TrialStatus.SUCCEEDED for t in trials) == 4
        assert len(trials) == 4
        by_id = {t.id: t for t in trials}
        for t in first:  # same processes, not restarted
            assert by_id[t.id].pid == t.pid
        for t in trials:
            values = [p.value for p in store.metrics(exp_id, t.id)]
            assert values == [float(v) for v in reported_lines(t.trial_dir)]
            assert len(values) == 21


def test_query_commands_json(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, UNIFORM, maxTrialNumber=3)
    assert run_cli(tmp_path, "run", str(path)).returncode == 0
    ls = json.loads(run_cli(tmp_path, "ls", "--json").stdout)
    assert len(ls) == 1 and ls[0]["status"] == "DONE"
    exp_id = ls[0]["id"]
    trials = json.loads(run_cli(tmp_path, "trials", exp_id, "--json").stdout)
    assert len(trials) == 3
    for t in trials:
        assert {"id", "status", "parameters", "final"} <= set(t)
    best = json.loads(run_cli(tmp_path, "best", exp_id, "--json").stdout)
    assert best["final"] == max(t["final"] for t in trials)
    shown = json.loads(run_cli(tmp_path, "show", exp_id, best["id"], "--json").stdout)
    assert len(shown["metrics"]) == 4
    unknown = run_cli(tmp_path, "trials", "nosuchexp")
    assert unknown.returncode == 2 and "nosuchexp" in unknown.stderr
