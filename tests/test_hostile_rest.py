"""Issue 8's remaining items: a trial that exits 0 with no final result, canceled trials and
``maxTrialNumber`` across resume, gpuIndices a host lacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remotetune.model import TrialStatus
from remotetune.store import Store
from tests.test_run_local import (
    ROOT,
    cli_env,
    make_experiment,
    only_experiment,
    open_store,
    run_cli,
    running_trials,
    start_cli,
)

NO_FINAL = "exited 0 without reporting a final result"


def test_a_trial_that_exits_0_without_a_final_result_is_marked(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "nofinal.py").write_text(
        "from remotetune import trial\n"
        "trial.get_next_parameter()\n"
        "trial.report_intermediate_result(0.25)\n")
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]}},
                           maxTrialNumber=1, trialConcurrency=1,
                           trialCommand=f"{sys.executable} nofinal.py")
    result = run_cli(tmp_path, "run", str(path), "--plain")
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert NO_FINAL in " ".join(said.split()), said
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        (t,) = store.trials(exp_id)
        events = store.events(exp_id)
    assert t.status is TrialStatus.SUCCEEDED and t.final is None, t
    assert t.message == NO_FINAL and t.latest_intermediate == 0.25
    (warning,) = [e for e in events if NO_FINAL in e.message]
    assert warning.level == "warning" and warning.trial_id == t.id
    shown = run_cli(tmp_path, "trials", exp_id, "--json")
    assert NO_FINAL in shown.stdout


def test_trials_canceled_by_sigterm_run_again_on_resume_within_max_trial_number(
    tmp_path: Path,
) -> None:
    hold = tmp_path / "hold"
    hold.write_text("")
    code = tmp_path / "code"
    code.mkdir()
    (code / "held.py").write_text(
        "import os, time\n"
        "from remotetune import trial\n"
        "p = trial.get_next_parameter()\n"
        f"while os.path.exists({str(hold)!r}):\n"
        "    time.sleep(0.05)\n"
        "trial.report_final_result(p['x'])\n")
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]}},
                           maxTrialNumber=3, trialConcurrency=2,
                           trialCommand=f"{sys.executable} held.py")
    proc = start_cli(tmp_path, "run", str(path), "--plain")
    first = running_trials(tmp_path, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hold.unlink()
    resumed = run_cli(tmp_path, "resume", first[0].experiment_id, "--plain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        trials = store.trials(exp_id)
    canceled = [t for t in trials if t.status is TrialStatus.USER_CANCELED]
    done = [t for t in trials if t.status is TrialStatus.SUCCEEDED]
    assert sorted(t.id for t in canceled) == sorted(t.id for t in first)
    assert len(done) == 3 and len(trials) == 5, [(t.id, t.status) for t in trials]
    reruns = {t.retry_of: t for t in done if t.retry_of}
    assert set(reruns) == {t.id for t in canceled}  # their parameters ran again
    for t in canceled:
        assert reruns[t.id].parameters == t.parameters
        assert reruns[t.id].parameter_id == t.parameter_id


ONE_GPU = '[{"name": "Fake", "memory_total": 1000, "memory_used": 0, "utilization": 0}]'


def test_gpu_indices_naming_a_gpu_the_local_host_lacks_fails_run(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]}},
                           maxTrialNumber=1, trialGpuNumber=1)
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump({"machines": [
        {"name": "here", "local": True, "gpuIndices": [0, 5]}]}))
    env = dict(cli_env(tmp_path), FAKE_NVIDIA_SMI_GPUS=ONE_GPU,
               PATH=str(ROOT / "tests" / "bin") + os.pathsep + os.environ["PATH"])
    result = subprocess.run(
        [sys.executable, "-m", "remotetune.cli", "run", str(path), "--machines",
         str(machines), "--plain"], env=env, capture_output=True, text=True, timeout=120,
        cwd=tmp_path)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert "here" in said and "gpuIndices names GPU 5" in said and "GPUs 0" in said, said
    with open_store(tmp_path) as store:
        assert store.trials(only_experiment(store)) == []


@pytest.mark.ssh
@pytest.mark.timeout(180)
def test_gpu_indices_naming_a_gpu_an_ssh_host_lacks_fails_run(
    ssh_host: Any, tmp_path: Path
) -> None:
    from tests.test_run_ssh import host_entry, run_experiment, write_files

    # one host that fits is not enough: a machines entry that does not fit its host is bad input
    experiment, machines = write_files(
        tmp_path, [host_entry(ssh_host, "fine", gpuIndices=[0]),
                   host_entry(ssh_host, "gpubox", gpuIndices=[1, 3])],
        {"x": {"_type": "uniform", "_value": [0.1, 1.0]}}, trialGpuNumber=1, maxTrialNumber=1)
    result = run_experiment(tmp_path, experiment, machines)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert "gpubox: gpuIndices names GPU 3" in said and "GPUs 0, 1" in said, said
    assert "fine:" not in said, said
    with open_store(tmp_path) as store:
        assert store.trials(only_experiment(store)) == []


@pytest.mark.ssh
@pytest.mark.timeout(240)
def test_two_experiments_never_share_a_gpu_on_one_host(sshd_factory: Any, tmp_path: Path) -> None:
    """Two controllers, one host, gpuIndices [0]: the agent's reservation files keep their
    trials apart in time on GPU 0 (from the trials' own records), and both finish."""
    from tests.test_run_ssh import gpu, host_entry

    server = sshd_factory(gpus=[gpu(), gpu()])
    check_two_experiments(tmp_path, host_entry(server, "box", gpuIndices=[0]), {})


@pytest.mark.timeout(240)
def test_two_local_experiments_never_share_a_gpu(tmp_path: Path) -> None:
    """The same with the local machine: both controllers use $REMOTETUNE_HOME/host."""
    home = str(tmp_path / "home")
    env = {"REMOTETUNE_HOME": home, "FAKE_NVIDIA_SMI_GPUS": ONE_GPU,
           "PATH": str(ROOT / "tests" / "bin") + os.pathsep + os.environ["PATH"]}
    check_two_experiments(tmp_path, {"name": "box", "local": True, "gpuIndices": [0],
                                     "env": {"HOST_LABEL": "box"}}, env)


def check_two_experiments(tmp_path: Path, entry: dict[str, Any], env: dict[str, str]) -> None:
    import json
    import time

    from tests.test_run_ssh import cli_env, write_files

    procs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        experiment, machines = write_files(
            run_dir, [entry], {"hold": {"_type": "choice", "_value": [1.5]}},
            trialGpuNumber=1, maxTrialNumber=2, trialConcurrency=1, experimentName=name)
        procs.append((run_dir, subprocess.Popen(
            [sys.executable, "-m", "remotetune.cli", "run", str(experiment), "--machines",
             str(machines), "--plain"], env=cli_env(run_dir, env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=run_dir, start_new_session=True)))
        time.sleep(0.3)
    spans, waits = [], []
    for run_dir, proc in procs:
        out, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, out + err
        with Store(Path(env.get("REMOTETUNE_HOME", run_dir / "home")) / "remotetune.db") as store:
            exp_id = next(e.id for e in store.experiments() if e.name == run_dir.name)
            trials = store.trials(exp_id)
            waits += [e.message for e in store.events(exp_id) if "waits" in e.message]
        assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2, trials
        for t in trials:
            record = json.loads((Path(t.trial_dir) / "record.json").read_text())
            assert record["cuda"] == "0", record
            spans.append((record["start"], record["end"], run_dir.name, t.id))
    spans.sort()
    for (s1, e1, x1, t1), (s2, e2, x2, t2) in zip(spans, spans[1:], strict=False):
        assert e1 <= s2, f"{x1}/{t1} [{s1}, {e1}] overlaps {x2}/{t2} [{s2}, {e2}]"
    assert {x for _, _, x, _ in spans} == {"a", "b"}
    assert any("box: GPU 0 reserved by experiment" in m for m in waits), waits


def test_a_refused_launch_waits_first_in_line_and_runs_later(tmp_path: Path) -> None:
    """The controller side of LAUNCH_REFUSED (fake backend): the trial goes back to WAITING
    at the front of the queue, an event says why, and it runs once the host takes it."""
    from remotetune.backends import LaunchSpec, Report, ReportKind
    from remotetune.testing.backend import FakeBackend
    from tests.test_controller import Rig

    class Refusing(FakeBackend):
        refusals = 2

        def launch(self, spec: LaunchSpec) -> None:
            if self.refusals:
                self.refusals -= 1
                self.placed.pop(spec.trial.id, None)
                self._report(Report(ReportKind.LAUNCH_REFUSED, spec.placement.host,
                                    spec.trial.id, message="a: GPU 0 reserved by experiment X"))
                return
            super().launch(spec)

    rig = Rig(tmp_path, {"a": 1}, maxTrialNumber=2, trialConcurrency=1)
    rig.backend = Refusing({"a": 1}, rig.backend.behaviour, rig.clock)
    controller, trials = rig.run()
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
    assert [t.sequence for t in trials] == sorted(t.sequence for t in trials)
    assert rig.backend.launches == [trials[0].id, trials[1].id]
    events = rig.store.events(trials[0].experiment_id)
    waits = [e for e in events if "waits" in e.message]
    assert len(waits) == 2 and all(e.trial_id == trials[0].id for e in waits)
    assert "GPU 0 reserved by experiment X" in waits[0].message


@pytest.mark.parametrize("name", ["Hyperband", "BOHB"])
def test_brackets_restore_with_canceled_trials_rerun_later(name: str) -> None:
    """A canceled trial's re-run (same parameter id, created at resume) takes the bracket slot
    its first attempt had, so the brackets rebuild as they were."""
    import dataclasses

    from remotetune.tuners import create_tuner
    from tests.test_multifidelity import SPACE, drive

    args = {"R": 9, "eta": 3} if name == "Hyperband" else {"max_budget": 9, "eta": 3}
    original = create_tuner(name, args, SPACE, seed=5)
    _, history = drive(original, 11, concurrency=3)
    running = [r for r in history if r.status is TrialStatus.RUNNING]
    assert running
    later = max(r.created_at or 0 for r in history) + 100
    resumed_history = [dataclasses.replace(r, status=TrialStatus.USER_CANCELED)
                       if r in running else r for r in history]
    resumed_history += [dataclasses.replace(r, id=r.id + "-rerun", status=TrialStatus.WAITING,
                                            attempt=r.attempt + 1, retry_of=r.id,
                                            sequence=r.sequence + 1000, created_at=later + i)
                        for i, r in enumerate(running)]
    resumed = create_tuner(name, args, SPACE, seed=99)
    resumed.restore(resumed_history)
    assert resumed.brackets == original.brackets
