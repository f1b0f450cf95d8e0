"""End to end on a real Slurm (docker/slurm) through the CLI, as a user runs it.

The cluster's login node is a `slurm:` entry of machines.yml; one test mixes it with a
loopback sshd host. Covered: GPUs assigned by Slurm (no overlap among concurrent jobs), a
failing job, a job past its time limit (TIMEOUT), a job pending for resources shown with
squeue's reason, Ctrl-C "kill" cancelling the jobs (scancel), and a controller SIGKILL
followed by `remotetune resume` (same job ids, every metric line once).

Needs Docker (marker ``docker``) and OpenSSH (marker ``ssh``). The time-limit test waits
for slurmctld's timeout sweep (up to ~90 s).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from slurm_cluster import SlurmCluster, slurm_fixture  # noqa: F401 - the `slurm` fixture
from sshd import SshServer
from test_run_ssh import (
    host_entry,
    open_store,
    run_cli,
    start_cli,
    the_experiment,
    wait_for,
)

from remotetune.model import ExperimentStatus, TrialRecord, TrialStatus

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.timeout(400)]

# One line with what it saw, STEPS intermediate results (also in reported.txt), then exit
# 3 for case "fail", else the final result.
TRIAL = """\
import os, sys, time
from remotetune import trial
p = trial.get_next_parameter()
case = p["case"]
kinds = {"fail": (5, 1.0), "timeout": (1, 600.0), "long": (12, 1.0)}
steps, pause = kinds.get(case.rstrip("0123456789"), (4, 1.0))
print("cuda", os.environ.get("CUDA_VISIBLE_DEVICES"), "host", os.environ.get("HOST_LABEL"),
      flush=True)
with open(os.path.join(os.environ["REMOTETUNE_TRIAL_DIR"], "reported.txt"), "a") as log:
    for i in range(steps):
        trial.report_intermediate_result(i + 1.0)
        log.write("%r\\n" % (i + 1.0))
        log.flush()
        time.sleep(pause)
if case == "fail":
    print("failing on purpose", file=sys.stderr)
    sys.exit(3)
trial.report_final_result(float(steps))
"""


def slurm_entry(slurm: SlurmCluster, **keys: Any) -> dict[str, Any]:
    return {"name": "hpc", "host": "127.0.0.1", "port": slurm.port, "user": "trial",
            "identityFile": str(slurm.identity_file),
            "knownHostsFile": str(slurm.known_hosts_file), "useAgent": False,
            "workdir": f"/home/trial/rt-e2e-{uuid.uuid4().hex[:6]}",
            "env": {"HOST_LABEL": "hpc"}, "slurm": {"partition": "gpu", **keys}}


def write(tmp_path: Path, machines: list[dict[str, Any]], cases: list[str],
          **overrides: Any) -> tuple[Path, Path]:
    code = tmp_path / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "trial.py").write_text(TRIAL)
    config: dict[str, Any] = {
        "experimentName": "slurm-e2e", "trialCommand": "python3 trial.py",
        "trialCodeDirectory": "code", "searchSpace": {"case": {"_type": "choice",
                                                               "_value": cases}},
        "tuner": {"name": "GridSearch"}, "trialConcurrency": 2,
        "maxTrialNumber": len(cases), "pollInterval": 0.2,
    }
    config.update(overrides)
    experiment = tmp_path / "experiment.yml"
    experiment.write_text(yaml.safe_dump(config))
    machines_file = tmp_path / "machines.yml"
    machines_file.write_text(yaml.safe_dump({"machines": machines}))
    return experiment, machines_file


def run(tmp_path: Path, experiment: Path, machines: Path, *more: str) -> Any:
    return start_cli(tmp_path, "run", str(experiment), "--machines", str(machines),
                     "--plain", *more)


def seen_cuda(trial: TrialRecord) -> str | None:
    """CUDA_VISIBLE_DEVICES as the trial printed it (its stdout tail)."""
    for line in (trial.stdout_tail or "").splitlines():
        words = line.split()
        if words[:1] == ["cuda"]:
            return words[1]
    return None


def reported(slurm: SlurmCluster, trial: TrialRecord) -> list[float]:
    assert trial.trial_dir is not None
    if trial.host != "hpc":
        path = Path(trial.trial_dir) / "reported.txt"
        return [float(v) for v in path.read_text().split()] if path.exists() else []
    out = slurm.exec(f"cat {trial.trial_dir}/reported.txt", check=False).stdout
    return [float(v) for v in out.split()]


def stored_metrics(tmp_path: Path, exp_id: str, trial_id: str) -> list[Any]:
    with open_store(tmp_path) as store:
        return [p.value for p in store.metrics(exp_id, trial_id)]


def trials_now(tmp_path: Path) -> list[TrialRecord]:
    db = tmp_path / "home" / "remotetune.db"
    if not db.exists():
        return []
    with open_store(tmp_path) as store:
        exps = store.experiments()
        return store.trials(exps[0].id) if exps else []


def started(tmp_path: Path, n: int) -> Callable[[], list[TrialRecord]]:
    def check() -> list[TrialRecord]:
        found = [t for t in trials_now(tmp_path)
                 if t.status is TrialStatus.RUNNING and t.started_at is not None and t.pid]
        return found if len(found) >= n else []
    return check


def job_state(slurm: SlurmCluster, job_id: int) -> str:
    out = slurm.exec(f"scontrol --oneliner show job {job_id}", check=False).stdout
    fields = dict(w.partition("=")[::2] for w in out.split() if "=" in w)
    return fields.get("JobState", "")


def test_mixed_experiment_slurm_gpus_do_not_overlap(
    slurm: SlurmCluster, sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    host = sshd_factory()  # two idle fake GPUs
    machines = [host_entry(host, "h"), slurm_entry(slurm, maxJobs=2)]
    experiment, machines_file = write(tmp_path, machines, ["a", "b", "c", "d", "e"],
                                      trialGpuNumber=2, trialConcurrency=3)
    proc = run(tmp_path, experiment, machines_file)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err + out
    exp_id, trials = the_experiment(tmp_path)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 5, trials
    on_slurm = [t for t in trials if t.host == "hpc"]
    assert {t.host for t in trials} == {"h", "hpc"} and len(on_slurm) >= 2
    for t in trials:
        assert t.final == 4.0
        assert stored_metrics(tmp_path, exp_id, t.id)[:4] == reported(slurm, t) == [
            1.0, 2.0, 3.0, 4.0]
    for t in on_slurm:  # Slurm chose the GPUs; remotetune set none
        assert t.gpus == () and t.pid and job_state(slurm, t.pid) == "COMPLETED"
        cuda = seen_cuda(t)
        assert cuda is not None and len(cuda.split(",")) == 2, t.stdout_tail
    for a in on_slurm:
        for b in on_slurm:
            overlap = (a.id < b.id and a.started_at and b.started_at and a.ended_at
                       and b.ended_at and a.started_at < b.ended_at
                       and b.started_at < a.ended_at)
            if overlap:
                assert not set(seen_cuda(a).split(",")) & set(seen_cuda(b).split(","))  # type: ignore[union-attr]
    assert any(
        a.id < b.id and a.started_at < b.ended_at and b.started_at < a.ended_at  # type: ignore[operator]
        for a in on_slurm for b in on_slurm), "no two Slurm jobs ran at once"


def test_failing_job_time_limit_and_pending_reason(slurm: SlurmCluster, tmp_path: Path) -> None:
    # 3 GPUs a job on a 4-GPU node: the second job waits for the first (Resources).
    experiment, machines_file = write(tmp_path, [slurm_entry(slurm, timeLimit="1m")],
                                      ["fail", "timeout"], trialGpuNumber=3)
    proc = run(tmp_path, experiment, machines_file)
    wait_for(lambda: any(t.status is TrialStatus.RUNNING and t.started_at is None
                         and (t.message or "").startswith("queued in Slurm (")
                         for t in trials_now(tmp_path)), timeout=60)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "all 2 trials failed" in err, err + out
    exp_id, trials = the_experiment(tmp_path)
    by_case = {dict(t.parameters)["case"]: t for t in trials}
    fail, timeout = by_case["fail"], by_case["timeout"]
    assert fail.status is TrialStatus.FAILED and fail.exit_code == 3
    assert fail.message == "exited with code 3"
    assert "failing on purpose" in (fail.stderr_tail or "")
    assert stored_metrics(tmp_path, exp_id, fail.id) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert timeout.status is TrialStatus.FAILED
    assert timeout.message == f"Slurm job {timeout.pid} reached its time limit"
    assert job_state(slurm, timeout.pid or 0) == "TIMEOUT"


def test_sigkill_then_resume_then_ctrl_c_kill_cancels_jobs(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    experiment, machines_file = write(tmp_path, [slurm_entry(slurm)], ["long", "long2"])
    proc = run(tmp_path, experiment, machines_file)
    first = wait_for(started(tmp_path, 2), timeout=90)
    wait_for(lambda: all(len(reported(slurm, t)) >= 2 for t in first), timeout=60)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    exp_id, _ = the_experiment(tmp_path)
    result = run_cli(tmp_path, "resume", exp_id, "--plain", timeout=200)
    assert result.returncode == 0, result.stderr + result.stdout
    exp_id, trials = the_experiment(tmp_path)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
    by_id = {t.id: t for t in trials}
    for t in first:  # the same jobs, not resubmitted; every line once
        assert by_id[t.id].pid == t.pid
        assert stored_metrics(tmp_path, exp_id, t.id)[:12] == reported(slurm, t) == [
            float(i) for i in range(1, 13)]

    # Ctrl-C with "kill": the running jobs are cancelled with scancel.
    other = tmp_path / "kill"
    experiment, machines_file = write(other, [slurm_entry(slurm)], ["long", "long2"])
    proc = run(other, experiment, machines_file, "--on-interrupt", "kill")
    jobs = wait_for(started(other, 2), timeout=90)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err + out
    exp_id, trials = the_experiment(other)
    with open_store(other) as store:
        assert store.experiment(exp_id).status is ExperimentStatus.STOPPED
    assert {t.status for t in trials} == {TrialStatus.USER_CANCELED}
    for t in jobs:
        assert job_state(slurm, t.pid or 0) == "CANCELLED"


def test_budgets_stop_jobs(slurm: SlurmCluster, tmp_path: Path) -> None:
    # maxExperimentDuration: the controller cancels the running jobs (scancel, one each).
    experiment, machines_file = write(tmp_path, [slurm_entry(slurm)], ["timeout", "timeout2"],
                                      maxExperimentDuration="20s")
    proc = run(tmp_path, experiment, machines_file)
    out, err = proc.communicate(timeout=150)
    _, trials = the_experiment(tmp_path)
    assert {t.status for t in trials} == {TrialStatus.SYS_CANCELED}, err + out
    for t in trials:  # scancel sent before the controller ended (then Slurm's KillWait)
        assert t.pid
        wait_for(lambda t=t: job_state(slurm, t.pid) == "CANCELLED", timeout=30)

    # maxTrialDuration: the launcher in the job stops the trial (EARLY_STOPPED); the job's
    # --time is maxTrialDuration + 5 minutes, so Slurm's own limit does not come first.
    other = tmp_path / "late"
    experiment, machines_file = write(other, [slurm_entry(slurm)], ["timeout"],
                                      maxTrialDuration="8s")
    proc = run(other, experiment, machines_file)
    out, err = proc.communicate(timeout=150)
    _, (trial,) = the_experiment(other)
    assert trial.status is TrialStatus.EARLY_STOPPED, err + out
    assert trial.message == "ran past maxTrialDuration"
    assert trial.pid and job_state(slurm, trial.pid) in ("COMPLETED", "FAILED")
    limit = slurm.exec(f"scontrol --oneliner show job {trial.pid}").stdout
    assert "TimeLimit=00:06:00" in limit
