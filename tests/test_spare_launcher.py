"""The spare launcher (issue 12): once an agent has launched a trial it keeps one launcher
forked ahead, in its own session, so the next launch only hands it the trial.

Real agents (local subprocesses, and one over a loopback sshd), real processes, read back
from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sshd import SshServer
from test_run_local import wait_for

from remotetune.backends.hostpool._session import HostSession, PollItem, RunState, launch_files
from remotetune.errors import AgentError
from remotetune.model import HostSpec

pytestmark = pytest.mark.timeout(60)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[3])


def _spares(agent_pid: int, exclude: set[int]) -> list[int]:
    """The agent's children that lead their own session and are no trial's launcher."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        stat = _stat(int(entry))
        if stat is not None and stat[0] == agent_pid and stat[1] == int(entry):
            found.append(int(entry))
    return found


def _files(session: HostSession, trial_dir: str, script: str, **params: object
           ) -> dict[str, str]:
    return launch_files(parameters=dict(params), parameter_id=0, script=script,
                        cwd=session.absolute(trial_dir), env={}, max_duration=None,
                        kill_grace=1.0)


def _launcher_pid(session: HostSession, trial_dir: str) -> int:
    record = json.loads(Path(session.absolute(trial_dir), "pid.json").read_text())
    return int(record["launcher_pid"])


def _exited(session: HostSession, trial_id: str, trial_dir: str) -> object:
    def done() -> object:
        (poll,) = session.poll([PollItem(trial_id, trial_dir, 0)])
        return poll if poll.state is RunState.EXITED else None

    return wait_for(done)


@pytest.fixture
def local_session(tmp_path: Path):  # type: ignore[no-untyped-def]
    session = HostSession(HostSpec(name="local", local=True, workdir=str(tmp_path / "host")))
    session.open()
    yield session
    session.close()


def _agent_pid(session: HostSession) -> int:
    assert session.agent is not None
    return int(session.agent.first["hello"]["pid"])


def _first_launch(session: HostSession, script: str) -> tuple[int, int, int]:
    """Launch trial t1: (the agent's pid, t1's launcher's, the spare forked after it)."""
    agent = _agent_pid(session)
    trial_dir = session.trial_dir("e", "t1")
    session.launch("t1", trial_dir, _files(session, trial_dir, script))
    launcher = _launcher_pid(session, trial_dir)
    (spare,) = wait_for(lambda: _spares(agent, {launcher}))
    return agent, launcher, spare


def test_the_next_launch_is_handed_to_the_spare(local_session: HostSession) -> None:
    assert _spares(_agent_pid(local_session), set()) == []  # none before a first launch
    _, _, spare = _first_launch(local_session, "sleep 0.2\n")
    second_dir = local_session.trial_dir("e", "t2")
    result = local_session.launch("t2", second_dir,
                                  _files(local_session, second_dir, "echo ran > out.txt\n"))
    assert _launcher_pid(local_session, second_dir) == spare
    poll = _exited(local_session, "t2", second_dir)
    assert poll.exit is not None and poll.exit.code == 0  # type: ignore[attr-defined]
    assert Path(local_session.absolute(second_dir), "out.txt").read_text() == "ran\n"
    assert result.pid != spare  # the trial is the launcher's child, in a session of its own


def test_the_spare_goes_with_its_agent(local_session: HostSession) -> None:
    _, _, spare = _first_launch(local_session, "true\n")
    local_session.close()  # the agent's input ends: it lets its spare go and exits
    wait_for(lambda: _stat(spare) is None)


def test_a_killed_spare_is_replaced_by_a_fresh_launcher(local_session: HostSession) -> None:
    _, _, spare = _first_launch(local_session, "true\n")
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: _stat(spare) is None)
    second_dir = local_session.trial_dir("e", "t2")
    local_session.launch("t2", second_dir, _files(local_session, second_dir, "exit 3\n"))
    assert _launcher_pid(local_session, second_dir) != spare
    poll = _exited(local_session, "t2", second_dir)
    assert poll.exit is not None and poll.exit.code == 3  # type: ignore[attr-defined]


def test_a_second_launch_of_a_trial_touches_none_of_its_files(
        local_session: HostSession) -> None:
    trial_dir = local_session.trial_dir("e", "t1")
    local_session.launch("t1", trial_dir, _files(local_session, trial_dir, "sleep 30\n", x=1))
    before = {name: Path(local_session.absolute(trial_dir), name).read_text()
              for name in ("parameters.json", "launch.json", "run.sh")}
    with pytest.raises(AgentError, match="already launched"):
        local_session.launch("t1", trial_dir, _files(local_session, trial_dir, "true\n", x=2))
    after = {name: Path(local_session.absolute(trial_dir), name).read_text() for name in before}
    assert after == before
    record = json.loads(Path(local_session.absolute(trial_dir), "pid.json").read_text())
    local_session.kill(int(record["pgid"]), 1.0, wait=True)


@pytest.mark.ssh
def test_a_spare_over_ssh_neither_holds_the_channel_nor_outlives_the_agent(
        ssh_host: SshServer) -> None:
    session = HostSession(ssh_host.spec())
    session.open()
    agent, launcher, spare = _first_launch(session, "true\n")
    second_dir = session.trial_dir("e", "t2")
    session.launch("t2", second_dir, _files(session, second_dir, "true\n"))
    assert _launcher_pid(session, second_dir) == spare
    (spare,) = wait_for(lambda: _spares(agent, {launcher, spare}))  # type: ignore[misc]
    started = time.monotonic()
    session.close()  # returns once sshd closed the channel: no spare keeps it open
    assert time.monotonic() - started < 5
    wait_for(lambda: _stat(spare) is None and _stat(agent) is None)
