"""The Slurm backend's pure parts: job poll results as TrialPolls, sinfo's GPU count."""

from __future__ import annotations

from typing import Any

from remotetune.backends import RunState, TrialHandle
from remotetune.backends.slurm import JobEntry, JobPollResult, job_status
from remotetune.backends.slurm._polls import max_gpus, trial_poll
from remotetune.model import Placement

HANDLE = TrialHandle("t1", "hpc", 42)
PID = {"started": 100.0, "job_id": "42", "hostname": "node1"}


def result(state: str | None, *, reason: str | None = None, exit_file: dict[str, Any] | None
           = None, more: bool = False, pid: dict[str, Any] | None = None) -> JobPollResult:
    entry = None if state is None else JobEntry("42", state, reason)
    return JobPollResult("t1", job_status("42", entry, exit_file), ("l1",), 3, more, pid,
                         exit_file, True)


def test_pending_is_queued_with_squeue_reason() -> None:
    poll = trial_poll("hpc", HANDLE, result("PENDING", reason="Resources"))
    assert (poll.state, poll.reason, poll.started) == (
        RunState.QUEUED, "queued in Slurm (Resources)", None)


def test_running_carries_its_start_from_pid_json() -> None:
    poll = trial_poll("hpc", HANDLE, result("RUNNING", pid=PID))
    assert poll.state is RunState.RUNNING and poll.lines == ("l1",) and poll.offset == 3
    assert poll.started is not None and poll.started.started_at == 100.0
    assert poll.started.handle == HANDLE and poll.started.pid == 42


def test_ended_jobs() -> None:
    done = trial_poll("hpc", HANDLE, result("COMPLETED", exit_file={"code": 0, "ended": 9.0}))
    assert done.state is RunState.EXITED and done.exit is not None
    assert (done.exit.code, done.exit.ended, done.exit.reason) == (0, 9.0, None)
    failed = trial_poll("hpc", HANDLE, result("FAILED", exit_file={"code": 3}))
    assert failed.exit is not None and (failed.exit.code, failed.exit.reason) == (
        3, "exited with code 3")
    timeout = trial_poll("hpc", HANDLE, result("TIMEOUT", exit_file={"code": 0}))
    assert timeout.exit is not None and timeout.exit.code is None  # never "succeeded"
    assert timeout.exit.reason == "Slurm job 42 reached its time limit"
    stopped = trial_poll("hpc", HANDLE,
                         result("COMPLETED", exit_file={"code": None, "signal": 15,
                                                        "reason": "timeout"}))
    assert stopped.exit is not None and stopped.exit.timed_out
    cancelled = trial_poll("hpc", HANDLE, result("CANCELLED"))
    assert cancelled.exit is not None and cancelled.exit.cancelled


def test_more_lines_waiting_keep_an_ended_job_running() -> None:
    poll = trial_poll("hpc", HANDLE, result("COMPLETED", exit_file={"code": 0}, more=True))
    assert poll.state is RunState.RUNNING


def test_node_failure_and_forgotten_jobs_are_lost() -> None:
    poll = trial_poll("hpc", HANDLE, result("NODE_FAIL"))
    assert (poll.state, poll.reason) == (RunState.LOST, "Slurm job 42: its node failed")
    assert trial_poll("hpc", HANDLE, result(None)).state is RunState.LOST


def test_max_gpus_from_sinfo() -> None:
    assert max_gpus("gpu:4\n") == 4
    assert max_gpus("gpu:a100:8(S:0-1)\ngpu:2\n(null)\n") == 8
    assert max_gpus("gpu:a100:2,gpu:v100:4\n") == 4
    assert max_gpus("(null)\n") == 0
    assert max_gpus("") is None


def test_job_slots_follow_max_jobs_and_gpu_limits(tmp_path: Any) -> None:
    from remotetune.backends import OpenSpec
    from remotetune.backends.hostpool._workers import HostStatus
    from remotetune.backends.slurm import SlurmBackend
    from remotetune.model import HostSpec, SlurmSpec

    class NoSession:  # never connects: the test sets the clusters READY itself
        def __init__(self, spec: HostSpec) -> None:
            self.name = spec.name

        def open(self) -> None:
            raise OSError("not in this test")

        def close(self) -> None:
            pass

        def wake(self) -> None:  # HostSession's: ends a long poll in flight
            pass

    hosts = [HostSpec("a", slurm=SlurmSpec(max_jobs=1)), HostSpec("b", slurm=SlurmSpec()),
             HostSpec("plain")]
    backend = SlurmBackend(hosts, trial_gpu_number=2, default_max_jobs=2, poll_interval=0.1,
                           session_factory=NoSession)
    assert backend.hosts() == ("a", "b")
    backend.open(OpenSpec("e", None, tmp_path), lambda item: None)
    for cluster in backend.clusters.values():
        cluster.worker.status, cluster.max_gpus = HostStatus.READY, 4
    placed = [backend.place(t).placement for t in ("t1", "t2", "t3", "t4")]
    assert [p.host if p else None for p in placed] == ["a", "b", "b", None]
    last = backend.place("t5")
    assert last.ever and "maxJobs reached (2/2" in (last.reason or "")
    backend.set_concurrency(3)  # b has no maxJobs: it follows trialConcurrency; a keeps 1
    assert [backend.place(t).placement for t in ("t5", "t6")][1] is None
    backend.release("t1")
    assert backend.place("t7").placement == Placement("a")
    for cluster in backend.clusters.values():
        cluster.max_gpus = 1
    assert not backend.place("t8").ever and "no Slurm node" in (backend.impossible() or "")
    backend.close()
