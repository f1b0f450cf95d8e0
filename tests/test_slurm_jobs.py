"""Slurm's answers read into job states (pure parsing, on real captured outputs), and the
job script and sbatch command built for a trial."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from remotetune import slurm_commands
from remotetune.backends.slurm import (
    JobEntry,
    JobPhase,
    accounting_disabled,
    job_status,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
    phase_of,
)
from remotetune.model import SlurmSpec, TrialStatus

DATA = Path(__file__).parent / "data" / "slurm"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_squeue_states_reasons_and_wait_statuses() -> None:
    jobs = parse_squeue(read("squeue.txt"))
    assert set(jobs) == {str(i) for i in range(1, 12)}
    assert jobs["9"] == JobEntry("9", "PENDING", "Resources", 0, None)
    assert jobs["7"] == JobEntry("7", "RUNNING", None, 0, None)
    assert jobs["1"] == JobEntry("1", "COMPLETED", None, 0, None)
    assert jobs["4"] == JobEntry("4", "FAILED", "NonZeroExitCode", 3, None)
    assert jobs["5"] == JobEntry("5", "TIMEOUT", "TimeLimit", None, 15)
    assert jobs["6"] == JobEntry("6", "CANCELLED", None, None, 15)
    assert jobs["11"] == JobEntry("11", "FAILED", "JobLaunchFailure", None, 9)


def test_squeue_empty_and_garbage() -> None:
    assert parse_squeue("") == {}
    assert parse_squeue("slurm_load_jobs error: Invalid job id specified\n") == {}


@pytest.mark.parametrize(("name", "expected"), [
    ("scontrol_failed.txt", JobEntry("4", "FAILED", "NonZeroExitCode", 3, None)),
    ("scontrol_timeout.txt", JobEntry("5", "TIMEOUT", "TimeLimit", 0, 15)),
    ("scontrol_cancelled.txt", JobEntry("6", "CANCELLED", None, 0, 15)),
    ("scontrol_pending.txt", JobEntry("9", "PENDING", "Resources", 0, None)),
    ("scontrol_signal.txt", JobEntry("11", "FAILED", "JobLaunchFailure", 0, 9)),
])
def test_scontrol_show_job(name: str, expected: JobEntry) -> None:
    assert parse_scontrol_job(read(name)) == expected


def test_scontrol_unknown_job() -> None:
    assert parse_scontrol_job("") is None
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified") is None


def test_sacct_disabled_and_enabled() -> None:
    assert accounting_disabled(read("sacct_disabled.stderr"))
    assert not accounting_disabled("sacct: error: Problem talking to the database")
    # Not captured (no slurmdbd in the test cluster): sacct's documented --parsable2 form.
    jobs = parse_sacct(read("sacct_enabled.txt") + "102.batch|FAILED|3:0|\n")
    assert jobs["101"] == JobEntry("101", "COMPLETED", None, 0, None)
    assert jobs["102"] == JobEntry("102", "FAILED", "NonZeroExitCode", 3, None)
    assert jobs["104"].state == "CANCELLED"
    assert "102.batch" not in jobs
    assert phase_of(jobs["106"].state) is JobPhase.LOST


@pytest.mark.parametrize(("state", "phase"), [
    ("PENDING", JobPhase.QUEUED), ("REQUEUED", JobPhase.QUEUED),
    ("RUNNING", JobPhase.RUNNING), ("COMPLETING", JobPhase.RUNNING),
    ("COMPLETED", JobPhase.EXITED), ("FAILED", JobPhase.EXITED),
    ("TIMEOUT", JobPhase.EXITED), ("OUT_OF_MEMORY", JobPhase.EXITED),
    ("NODE_FAIL", JobPhase.LOST), ("PREEMPTED", JobPhase.LOST),
    ("CANCELLED", JobPhase.CANCELLED), ("CANCELLED by 1000", JobPhase.CANCELLED),
    ("CANCELLED+", JobPhase.CANCELLED), ("SOMETHING_NEW", None),
])
def test_phase_of(state: str, phase: JobPhase | None) -> None:
    assert phase_of(state) is phase


def test_job_status_mapping_on_real_squeue() -> None:
    jobs = parse_squeue(read("squeue.txt"))

    def status(job_id: str, exit_file: dict[str, object] | None = None):  # noqa: ANN202
        return job_status(job_id, jobs.get(job_id), exit_file)

    pending = status("9")
    assert (pending.phase, pending.trial_status, pending.reason) == (
        JobPhase.QUEUED, TrialStatus.WAITING, "Resources")
    assert pending.message == "queued in Slurm (Resources)" and not pending.finished
    assert status("7").trial_status is TrialStatus.RUNNING
    ok = status("1", {"code": 0, "signal": None, "reason": None})
    assert (ok.phase, ok.trial_status, ok.message) == (JobPhase.EXITED, TrialStatus.SUCCEEDED,
                                                        None)
    failed = status("4")
    assert (failed.trial_status, failed.exit_code, failed.message) == (
        TrialStatus.FAILED, 3, "exited with code 3")
    timeout = status("5", {"code": 143, "signal": 15, "reason": "terminated by Slurm (signal 15)"})
    assert (timeout.trial_status, timeout.state) == (TrialStatus.FAILED, "TIMEOUT")
    assert timeout.message == "Slurm job 5 reached its time limit"
    cancelled = status("6")
    assert (cancelled.phase, cancelled.trial_status) == (JobPhase.CANCELLED,
                                                          TrialStatus.USER_CANCELED)
    killed = status("11")
    assert (killed.trial_status, killed.signal, killed.message) == (
        TrialStatus.FAILED, 9, "killed by signal 9")


def test_job_status_lost_and_forgotten() -> None:
    lost = job_status("106", JobEntry("106", "NODE_FAIL", "NodeDown"), None)
    assert (lost.phase, lost.trial_status) == (JobPhase.LOST, TrialStatus.LOST)
    assert "node failed" in (lost.message or "")
    preempted = job_status("7", JobEntry("7", "PREEMPTED"), None)
    assert preempted.trial_status is TrialStatus.LOST
    # Past MinJobAge without accounting: the launcher's exit file is the only record.
    gone = job_status("8", None, {"code": 2, "signal": None, "reason": None})
    assert (gone.phase, gone.trial_status, gone.exit_code) == (JobPhase.EXITED,
                                                                TrialStatus.FAILED, 2)
    vanished = job_status("8", None, None)
    assert (vanished.phase, vanished.trial_status) == (JobPhase.LOST, TrialStatus.LOST)
    oom = job_status("105", JobEntry("105", "OUT_OF_MEMORY", None, 0, 125), None)
    assert oom.message == "Slurm job 105 ran out of memory"
    early = job_status("3", JobEntry("3", "FAILED", "NonZeroExitCode", 143),
                       {"code": 143, "signal": 15, "reason": "timeout"})
    assert (early.trial_status, early.message) == (TrialStatus.EARLY_STOPPED,
                                                   "ran past maxTrialDuration")
    setup = job_status("3", JobEntry("3", "FAILED", "NonZeroExitCode", 254), None)
    assert setup.message == "setup failed"


def test_sbatch_argv() -> None:
    spec = SlurmSpec(partition="gpu", account="proj42", qos="normal",
                     sbatch_args=("--mem=16G", "--constraint=a100"))
    argv = slurm_commands.sbatch_argv(spec, trial_dir="/scratch/a b/t%1", job_name="rt-e-t1",
                                      gpus=2, time_limit=90)
    assert argv == ["sbatch", "--parsable", "--job-name=rt-e-t1", "--chdir=/scratch/a b/t%1",
                    "--output=/scratch/a b/t%%1/slurm.out", "--open-mode=append",
                    "--no-requeue", "--gres=gpu:2", "--partition=gpu", "--account=proj42",
                    "--qos=normal", "--time=0-00:02:00", "--mem=16G", "--constraint=a100"]
    bare = slurm_commands.sbatch_argv(SlurmSpec(), trial_dir="/t", job_name="j", gpus=0,
                                      time_limit=None)
    assert not any(a.startswith(("--gres", "--time", "--partition")) for a in bare)


def test_durations_and_time_limits() -> None:
    assert slurm_commands.slurm_duration(1) == "0-00:01:00"
    assert slurm_commands.slurm_duration(3600) == "0-01:00:00"
    assert slurm_commands.slurm_duration(2 * 86400 + 61) == "2-00:02:00"
    assert slurm_commands.time_limit_seconds(SlurmSpec(time_limit=60.0), 7200) == 60.0
    assert slurm_commands.time_limit_seconds(SlurmSpec(), 600) == 600 + \
        slurm_commands.TIME_LIMIT_MARGIN
    assert slurm_commands.time_limit_seconds(SlurmSpec(), None) is None


def test_job_script_quotes_every_value() -> None:
    script = slurm_commands.job_script(python="/opt/py thon/bin/python3", lib_dir="/w/lib/x",
                                       trial_dir="/w/t'1", setup=("module load cuda/12",))
    assert script.startswith("#!/bin/bash\n")
    assert "module load cuda/12\nrc=$?" in script
    last = script.strip().splitlines()[-1]
    words = shlex.split(last)
    assert words == ["PYTHONPATH=/w/lib/x", "exec",
                     "/opt/py thon/bin/python3", "-u", "/w/lib/x/remotetune/_host/slurmops.py",
                     "run", "/w/t'1"]
