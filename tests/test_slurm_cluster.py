"""Trials as sbatch jobs on a real Slurm (docker/slurm: slurmctld, slurmd and munge, four
fake GPUs as gres, no slurmdbd), driven over SSH through remotetune's own HostSession and
agent, as the Slurm backend will drive it.

Needs a Docker engine; the first run builds the image (about a minute on 2 cores after the
offline base). The time-limit test waits for slurmctld's timeout sweep (up to ~90 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from slurm_cluster import SlurmCluster, slurm_fixture  # noqa: F401 - the `slurm` fixture

from remotetune import commands
from remotetune.backends.hostpool._session import HostSession, launch_files
from remotetune.backends.slurm import (
    JobPhase,
    JobPollItem,
    JobPollResult,
    cancel_jobs,
    poll_jobs,
    submit_job,
)
from remotetune.errors import SlurmError
from remotetune.model import SlurmSpec, TrialStatus

pytestmark = pytest.mark.docker

# Prints the GPUs Slurm gave the job, reports one metric line, then runs $SLEEP and exits
# with $CODE (both from launch.json's env).
TRIAL = (
    'echo "CVD=$CUDA_VISIBLE_DEVICES"\n'
    "python3 -c 'import remotetune.trial as t; t.report_final_result(1.5)'\n"
    'sleep "${SLEEP:-0}"\n'
    'exit "${CODE:-0}"'
)


@pytest.fixture(scope="module")
def session(slurm: SlurmCluster) -> Iterator[HostSession]:
    s = HostSession(slurm.host_spec())
    s.open()
    try:
        yield s
    finally:
        s.close()


class Jobs:
    """Submits trials of one experiment and polls them as a backend would."""

    def __init__(self, session: HostSession, spec: SlurmSpec | None = None) -> None:
        self.session = session
        self.spec = spec or SlurmSpec()
        self.experiment = uuid.uuid4().hex[:8]
        self.items: dict[str, JobPollItem] = {}

    def submit(self, trial_id: str, *, gpus: int = 0, sleep: float = 0, code: int = 0,
               time_limit: float | None = None, setup: Sequence[str] = ()) -> str:
        trial_dir = self.session.trial_dir(self.experiment, trial_id)
        absolute = self.session.absolute(trial_dir)
        env = {"REMOTETUNE_TRIAL_ID": trial_id, "REMOTETUNE_TRIAL_DIR": absolute,
               "REMOTETUNE_METRICS_FILE": f"{absolute}/metrics.jsonl",
               "SLEEP": str(sleep), "CODE": str(code)}
        files = launch_files(parameters={"x": 1}, parameter_id=0,
                             script=commands.trial_script(tuple(setup), TRIAL), cwd=absolute,
                             env=env, prepend_env={"PYTHONPATH": self.session.lib_dir},
                             max_duration=None, kill_grace=5.0)
        job = submit_job(self.session, trial_dir=trial_dir, files=files, spec=self.spec,
                         job_name=f"rt-{self.experiment}-{trial_id}", gpus=gpus,
                         time_limit=time_limit)
        assert job.job_id.isdigit() and not job.existing
        self.items[trial_id] = JobPollItem(trial_id, job.job_id, trial_dir, 0)
        return job.job_id

    def poll(self) -> dict[str, JobPollResult]:
        snapshot = poll_jobs(self.session, list(self.items.values()))
        assert snapshot.accounting in (None, False)  # no slurmdbd in the test cluster
        return {r.trial_id: r for r in snapshot.results}

    def wait(self, predicate, *, timeout: float, what: str) -> dict[str, JobPollResult]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        results = self.poll()
        while not predicate(results):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: "
                                     f"{[(r.trial_id, r.status) for r in results.values()]}")
            time.sleep(1.0)
            results = self.poll()
        return results

    def wait_finished(self, *, timeout: float = 60.0) -> dict[str, JobPollResult]:
        return self.wait(lambda rs: all(r.status.finished for r in rs.values()),
                         timeout=timeout, what="every job to finish")

    def cat(self, trial_id: str, name: str, slurm: SlurmCluster) -> str:
        path = self.session.absolute(f"{self.items[trial_id].trial_dir}/{name}")
        return str(slurm.exec(f"cat {path}").stdout)


def test_jobs_get_the_gpus_slurm_assigns(session: HostSession, slurm: SlurmCluster) -> None:
    jobs = Jobs(session, SlurmSpec(partition="gpu"))
    jobs.submit("a", gpus=2, sleep=4)  # long enough to run at once
    jobs.submit("b", gpus=2, sleep=4)
    jobs.submit("c", gpus=0)
    results = jobs.wait_finished()
    seen = []
    for trial_id in ("a", "b"):
        r = results[trial_id]
        assert (r.status.phase, r.status.state, r.status.trial_status) == (
            JobPhase.EXITED, "COMPLETED", TrialStatus.SUCCEEDED)
        assert r.exit is not None and r.exit["code"] == 0
        assert [json.loads(line)["value"] for line in r.lines] == [1.5]
        out = jobs.cat(trial_id, "stdout.log", slurm).strip()
        devices = out.removeprefix("CVD=").split(",")
        assert len(devices) == 2, out
        assert r.pid is not None and r.pid["cuda_visible_devices"] == ",".join(devices)
        assert r.pid["job_id"] == jobs.items[trial_id].job_id
        seen += devices
    assert sorted(seen) == ["0", "1", "2", "3"]  # both jobs ran at once, on disjoint GPUs
    assert jobs.cat("c", "stdout.log", slurm).strip() == "CVD="  # no gres, no GPU


def test_failing_job_and_failing_setup(session: HostSession) -> None:
    jobs = Jobs(session, SlurmSpec(setup=("true",)))
    jobs.submit("bad", code=3)
    jobs.submit("nosetup", setup=("false",))
    results = jobs.wait_finished()
    bad = results["bad"].status
    assert (bad.state, bad.trial_status, bad.exit_code, bad.message) == (
        "FAILED", TrialStatus.FAILED, 3, "exited with code 3")
    assert bad.reason == "NonZeroExitCode"
    nosetup = results["nosetup"].status
    assert (nosetup.trial_status, nosetup.message) == (TrialStatus.FAILED, "setup failed")


def test_pending_job_shows_the_queue_reason_then_runs(session: HostSession) -> None:
    jobs = Jobs(session)
    for name in ("p1", "p2", "p3"):
        jobs.submit(name, gpus=2, sleep=4)
    results = jobs.wait(lambda rs: any(r.status.phase is JobPhase.QUEUED for r in rs.values())
                        and sum(r.status.phase is JobPhase.RUNNING for r in rs.values()) == 2,
                        timeout=30, what="two running jobs and one queued")
    (queued,) = [r.status for r in results.values() if r.status.phase is JobPhase.QUEUED]
    assert queued.trial_status is TrialStatus.WAITING
    assert queued.reason in ("Resources", "Priority")
    assert queued.message == f"queued in Slurm ({queued.reason})"
    results = jobs.wait_finished(timeout=60)
    assert {r.status.trial_status for r in results.values()} == {TrialStatus.SUCCEEDED}


def test_scancel_of_a_running_job(session: HostSession) -> None:
    jobs = Jobs(session)
    job_id = jobs.submit("long", sleep=300)
    jobs.wait(lambda rs: rs["long"].status.phase is JobPhase.RUNNING and rs["long"].pid,
              timeout=30, what="the job to run")
    cancel_jobs(session, [job_id])
    results = jobs.wait_finished(timeout=30)
    status = results["long"].status
    assert (status.phase, status.state, status.trial_status) == (
        JobPhase.CANCELLED, "CANCELLED", TrialStatus.USER_CANCELED)
    exit_info = results["long"].exit
    assert exit_info is not None and exit_info["signal"] == 15  # the launcher saw SIGTERM
    cancel_jobs(session, [job_id])  # again: Slurm still knows it, nothing to do


def test_job_past_its_time_limit(session: HostSession) -> None:
    jobs = Jobs(session, SlurmSpec(time_limit=60.0))
    jobs.submit("slow", sleep=600, time_limit=60.0)
    results = jobs.wait_finished(timeout=180)
    status = results["slow"].status
    assert (status.state, status.reason, status.trial_status) == (
        "TIMEOUT", "TimeLimit", TrialStatus.FAILED)
    assert status.message == f"Slurm job {jobs.items['slow'].job_id} reached its time limit"
    exit_info = results["slow"].exit
    assert exit_info is not None
    assert exit_info["reason"] == "terminated by Slurm (signal 15)"


def test_resubmit_returns_the_first_job_and_sbatch_errors_are_slurm_errors(
    session: HostSession,
) -> None:
    jobs = Jobs(session)
    job_id = jobs.submit("once")
    item = jobs.items["once"]
    again = submit_job(session, trial_dir=item.trial_dir, files={}, spec=SlurmSpec(),
                       job_name="x", gpus=0, time_limit=None)
    assert (again.job_id, again.existing) == (job_id, True)
    jobs.wait_finished()
    with pytest.raises(SlurmError) as info:
        Jobs(session, SlurmSpec(partition="nope")).submit("never")
    assert "invalid partition" in str(info.value).lower()
    with pytest.raises(SlurmError):
        Jobs(session).submit("toomany", gpus=8)  # more GPUs than the node has


def test_jobs_outlive_the_session_and_a_new_one_reattaches_by_job_id(
    slurm: SlurmCluster,
) -> None:
    first = HostSession(slurm.host_spec())
    first.open()
    jobs = Jobs(first)
    job_id = jobs.submit("survivor", sleep=3)
    first.close()  # the controller goes away: SSH session and agent gone
    second = HostSession(slurm.host_spec())
    second.open()
    try:
        jobs.session = second  # a resumed controller knows only the job id and the trial dir
        results = jobs.wait_finished(timeout=60)
        r = results["survivor"]
        assert (r.status.job_id, r.status.trial_status) == (job_id, TrialStatus.SUCCEEDED)
        assert [json.loads(line)["value"] for line in r.lines] == [1.5]
    finally:
        second.close()
