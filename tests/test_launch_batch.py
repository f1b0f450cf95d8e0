"""A host's first trials, over a real loopback sshd (issue 12).

The agent forks every launcher of a ``launches`` request before it reads their reports, so
a host's first fill (or slots freed together) starts side by side instead of one round trip
after another; each trial has its own outcome. Trials that take no GPU do not wait for the
host's nvidia-smi.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sshd import SshServer

from remotetune.backends._base import ReportKind
from remotetune.backends.hostpool._agent_client import AgentClient
from remotetune.backends.hostpool._backend import HostPoolBackend
from remotetune.backends.hostpool._session import HostSession, PollItem, RunState, launch_files
from remotetune.backends.hostpool._workers import Completion, HostWorker, Op
from remotetune.config import parse_experiment
from remotetune.controller import Controller, ControllerOptions
from remotetune.errors import AgentError
from remotetune.model import TrialStatus
from remotetune.store import Store

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def files_for(session: HostSession, trial_dir: str, script: str) -> dict[str, str]:
    return launch_files(parameters={}, parameter_id=0, script=script,
                        cwd=session.absolute(trial_dir), env={}, max_duration=None,
                        kill_grace=1.0)


def wait_exited(session: HostSession, trial_id: str, trial_dir: str) -> Any:
    item = PollItem(trial_id, trial_dir, 0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (poll,) = session.poll([item])
        if poll.state is RunState.EXITED:
            return poll
        time.sleep(0.05)
    raise AssertionError(f"{trial_id} did not end")


def test_launches_start_side_by_side_each_with_its_own_outcome(ssh_host: SshServer) -> None:
    session = HostSession(ssh_host.spec())
    session.open()
    try:
        dirs = {t: session.trial_dir("e", t) for t in ("t1", "t2", "t3")}
        busy = session.launch("t2", dirs["t2"], files_for(session, dirs["t2"], "sleep 30\n"))
        outcomes = session.launch_many([
            (t, dirs[t], files_for(session, dirs[t], f"echo {t} > out.txt\nsleep 0.3\n"))
            for t in ("t1", "t2", "t3")])
        assert [type(o).__name__ for o in outcomes] == ["LaunchResult", "AgentError",
                                                        "LaunchResult"]
        refused = outcomes[1]
        assert isinstance(refused, AgentError) and "already launched" in str(refused)
        first, third = outcomes[0], outcomes[2]
        assert not isinstance(first, AgentError) and not isinstance(third, AgentError)
        assert first.handle.trial_id == "t1" and third.handle.trial_id == "t3"
        assert len({first.pid, third.pid, busy.pid}) == 3
        for trial_id in ("t1", "t3"):
            poll = wait_exited(session, trial_id, dirs[trial_id])
            assert poll.exit is not None and poll.exit.code == 0
            host_dir = Path(session.absolute(dirs[trial_id]))
            assert (host_dir / "out.txt").read_text() == f"{trial_id}\n"  # on the host
            assert json.loads((host_dir / "pid.json").read_text())["pid"] == (
                first if trial_id == "t1" else third).pid
        # the refused trial is the one launched before: still running, untouched
        assert session.poll([PollItem("t2", dirs["t2"], 0)])[0].state is RunState.RUNNING
        session.kill(busy.handle.ref or 0, 1.0, wait=True)
    finally:
        session.close()


def test_a_gpu_held_elsewhere_refuses_its_trial_alone(ssh_host: SshServer) -> None:
    """In a batch, a trial whose GPU another experiment holds is refused (it waits; the host
    is not cordoned) while the others start: the outcome keeps the agent's details."""
    session = HostSession(ssh_host.spec())
    session.open()

    def files(trial: str, gpu: int, script: str) -> tuple[str, str, dict[str, str]]:
        trial_dir = session.trial_dir("e", trial)
        return trial, trial_dir, launch_files(
            parameters={}, parameter_id=0, script=script, cwd=session.absolute(trial_dir),
            env={}, max_duration=None, kill_grace=1.0,
            reserve={"indices": [gpu], "per_gpu": 1, "experiment": "other", "trial": trial})

    try:
        held = session.launch(*files("t0", 0, "sleep 30\n"))
        outcomes = session.launch_many([files("t1", 0, "exit 0\n"), files("t2", 1, "exit 0\n")])
        refused = outcomes[0]
        assert isinstance(refused, AgentError) and refused.kind == "GpuReserved", refused
        assert refused.details.get("gpu") == 0 and "reserved by experiment other" in str(refused)
        assert not isinstance(outcomes[1], AgentError)
        backend = HostPoolBackend([ssh_host.spec()], trial_gpu_number=1, default_slots=1,
                                  poll_interval=0.02)
        worker = HostWorker(ssh_host.spec(), session, lambda _: None)
        backend._apply_gpus(worker, session.gpus())  # the host's two idle GPUs
        reports = backend._on_launch(
            worker, Completion(worker.name, Op.LAUNCH, ("t1", "t2"), outcomes, None),
            time.time())
        assert [(r.kind, r.trial_id) for r in reports] == [
            (ReportKind.LAUNCH_REFUSED, "t1"), (ReportKind.LAUNCHED, "t2")]
        assert worker.cordoned_until == 0.0  # busy, not broken
        assert "GPU 0 reserved by experiment other" in (backend.slots.why_not() or "")
        session.kill(held.handle.ref or 0, 1.0, wait=True)
    finally:
        session.close()


def gate_nvidia_smi(server: SshServer) -> Path:
    """The host's nvidia-smi answers only once the returned file exists."""
    gate = server.root / "nvidia-smi-may-answer"
    real = server.bin_dir / "nvidia-smi-real"
    (server.bin_dir / "nvidia-smi").rename(real)
    wrapper = server.bin_dir / "nvidia-smi"
    wrapper.write_text(f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n"
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    return gate


def run_in_thread(tmp_path: Path, server: SshServer, **keys: Any) -> tuple[Any, Store, Any]:
    (tmp_path / "code").mkdir(parents=True, exist_ok=True)
    config = parse_experiment({
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": "sleep 0.2", "trialCodeDirectory": "code",
        "trialConcurrency": 2, "maxTrialNumber": 2, "tuner": {"name": "Random"}, **keys,
    }, base_dir=tmp_path)
    store = Store(tmp_path / "home" / "remotetune.db")
    controller = Controller(config, (server.spec(slots=2),), store,
                            ControllerOptions(home=tmp_path / "home"))
    exp = controller.create()
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    return thread, store, exp


def test_trials_without_gpus_do_not_wait_for_nvidia_smi(ssh_host: SshServer,
                                                        tmp_path: Path) -> None:
    """No trialGpuNumber: the trials run and end while the host's nvidia-smi still has not
    answered; with trialGpuNumber 1 none starts until it has (the GPUs are placed by it)."""
    gate = gate_nvidia_smi(ssh_host)
    thread, store, exp = run_in_thread(tmp_path / "cpu", ssh_host)
    try:
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert [t.status for t in store.trials(exp.id)] == [TrialStatus.SUCCEEDED] * 2
        assert not gate.exists()
    finally:
        gate.touch()  # lets the agents' nvidia-smi end
    gate.unlink()
    thread, store, exp = run_in_thread(tmp_path / "gpu", ssh_host, trialGpuNumber=1)
    try:
        time.sleep(1.5)
        assert all(t.started_at is None for t in store.trials(exp.id))
    finally:
        gate.touch()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert [t.status for t in store.trials(exp.id)] == [TrialStatus.SUCCEEDED] * 2


def test_a_hosts_first_fill_is_one_request(ssh_host: SshServer, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Three free slots on one host: one ``launches`` request of three trials, not three
    launch round trips; every trial runs and its record is stored."""
    sent: list[tuple[str, int]] = []
    call = AgentClient.call

    def spy(self: AgentClient, op: str, **fields: Any) -> dict[str, Any]:
        if op.startswith("launch"):
            sent.append((op, len(fields.get("trials", [None]))))
        return call(self, op, **fields)

    monkeypatch.setattr(AgentClient, "call", spy)
    (tmp_path / "code").mkdir()
    config = parse_experiment({
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": "sleep 0.3", "trialCodeDirectory": "code",
        "trialConcurrency": 3, "maxTrialNumber": 3, "tuner": {"name": "Random"},
    }, base_dir=tmp_path)
    store = Store(tmp_path / "home" / "remotetune.db")
    controller = Controller(config, (ssh_host.spec(slots=3),), store,
                            ControllerOptions(home=tmp_path / "home"))
    exp = controller.create()
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    trials = store.trials(exp.id)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 3
    assert sent == [("launches", 3)], sent
    assert len({t.pid for t in trials}) == 3 and all(t.started_at for t in trials)
    for trial in trials:  # each trial's own directory on the host
        assert os.path.exists(os.path.join(str(ssh_host.workdir), "experiments", exp.id,
                                           "trials", trial.id, "exit.json"))


def test_a_gpu_reading_never_holds_the_agent(ssh_host: SshServer) -> None:
    """exec with ``within: 0``: a slow nvidia-smi answers "pending" at once and the agent
    serves launches and polls meanwhile; a later exec collects the reading."""
    gate = gate_nvidia_smi(ssh_host)
    session = HostSession(ssh_host.spec())
    session.open(gpus_early=True)
    try:
        assert session.gpus(within=0.0) is None
        trial_dir = session.trial_dir("e", "t1")
        started = session.launch("t1", trial_dir, files_for(session, trial_dir, "exit 0\n"))
        assert wait_exited(session, "t1", trial_dir).exit.code == 0 and started.pid
        assert session.gpus(within=0.0) is None  # still not answered, still not waited for
        gate.touch()
        deadline = time.monotonic() + 10
        reading = None
        while reading is None and time.monotonic() < deadline:
            reading = session.gpus(within=0.0)
            time.sleep(0.05)
        assert reading is not None and reading.gpus is not None and len(reading.gpus) == 2
    finally:
        gate.touch()
        session.close()


def test_exec_past_its_timeout_is_killed_and_fails() -> None:
    from remotetune.backends.hostpool._host import execops

    request = {"argv": ["sleep", "5"], "timeout": 0.5, "within": 0}
    assert execops.op_exec(".", request, None) == {"found": True, "pending": True}
    time.sleep(0.6)
    with pytest.raises(RuntimeError, match="did not answer within 0.5 s"):
        execops.op_exec(".", request, None)
    assert ("sleep", "5") not in execops._EARLY
    answer = execops.op_exec(".", {"argv": ["echo", "hi"], "within": 5}, None)
    assert answer["code"] == 0 and answer["stdout"] == "hi\n"
    assert execops.op_exec(".", {"argv": ["no-such-command-here"]}, None)["found"] is False
