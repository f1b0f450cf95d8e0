"""Several launches in one agent request (issue 12), over a real loopback sshd.

The agent forks every launcher of a ``launches`` request before it reads their reports, so
a host's first fill (or slots freed together) starts side by side instead of one round trip
after another. Each trial has its own outcome.
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

from remotetune.backends.hostpool._agent_client import AgentClient
from remotetune.backends.hostpool._session import HostSession, PollItem, RunState, launch_files
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
