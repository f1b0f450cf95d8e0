"""The poll cycle's fast paths (bench/README.md, issue 14's poll figure) keep its meaning.

- ``reads.read_lines`` (one ``pread``) answers what the file-object reader answers, for any
  content, offset, window and ended-or-not trial.
- A trial the request marks ``started`` gets no pid record back; the agent keeps a valid
  record it read, a launch in that directory forgets it, a vanished directory drops it.
- The session sends ``started`` once it holds a trial's record and hands the same
  ``LaunchResult`` back on every poll.

Real agent processes, real files, real process groups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotetune.backends import RunState
from remotetune.backends.hostpool._host import pollops, reads
from remotetune.backends.hostpool._session import HostSession, PollItem, launch_files
from remotetune.model import HostSpec
from tests.test_long_poll import Agent

PIECES = st.sampled_from([b"\n", b"ab", b"x" * 40, b"\r\n", b"\xe2\x82", b"\xac", b"y" * 300,
                          b'{"v": 1}\n'])


@settings(max_examples=300, deadline=None)
@given(content=st.lists(PIECES, max_size=30).map(b"".join),
       cut=st.integers(0, 400), max_bytes=st.sampled_from([16, 64, 1 << 12]),
       limit=st.sampled_from([32, 200, 1 << 16]), final=st.booleans())
def test_the_one_pread_reader_answers_as_the_file_reader(
        tmp_path_factory: pytest.TempPathFactory, content: bytes, cut: int, max_bytes: int,
        limit: int, final: bool) -> None:
    path = tmp_path_factory.mktemp("r") / "metrics.jsonl"
    path.write_bytes(content)
    offset = min(cut, len(content) + 2)  # also inside lines, and past the end
    for _ in range(100):  # a whole read-through, poll after poll
        fast = reads.read_lines(str(path), offset, max_bytes, final, limit)
        assert fast[:4] == reads._read_from_file(str(path), offset, max_bytes, final, limit)
        assert fast[4] is True
        if not fast[2] and fast[1] == offset:
            break
        offset = fast[1]


def test_a_missing_file_or_a_fifo_is_no_file(tmp_path: Path) -> None:
    assert reads.read_lines(str(tmp_path / "none"), 5, 10, True) == ([], 5, False, [], False)
    os.mkfifo(tmp_path / "fifo")
    assert reads.read_lines(str(tmp_path / "fifo"), 0, 10, False) == ([], 0, False, [], False)


@pytest.fixture
def trial(tmp_path: Path) -> Any:
    directory = tmp_path / "t1"
    directory.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    record = {"pid": sleeper.pid, "pgid": sleeper.pid, "launcher_pid": None,
              "started": time.time(), "hostname": "h"}
    (directory / "pid.json").write_text(json.dumps(record))
    (directory / "metrics.jsonl").write_text('{"default": 1}\n')
    agent = Agent(tmp_path)
    yield agent, directory, record
    agent.close()
    sleeper.kill()
    sleeper.wait()


def _poll(agent: Agent, **item: Any) -> dict:
    agent.request("poll", trials=[{"dir": "t1", "offset": 0, **item}])
    return agent.answer()["trials"][0]


def test_a_started_trial_gets_no_pid_record_back(trial: Any) -> None:
    agent, directory, record = trial
    first = _poll(agent)
    assert first["pid"] == record and first["alive"] is True and first["exists"] is True
    assert "skipped" not in first and "dir" not in first
    known = _poll(agent, started=True)
    assert "pid" not in known and known["alive"] is True
    assert known["lines"] == first["lines"] == ['{"default": 1}']
    (directory / "pid.json").write_text("garbage")  # a trial cannot unmake its start
    assert _poll(agent)["pid"] == record


def test_a_vanished_directory_drops_the_record(trial: Any) -> None:
    agent, directory, record = trial
    assert _poll(agent)["pid"] == record
    shutil.rmtree(directory)
    gone = _poll(agent, started=True)
    assert gone["pid"] is None and gone["exists"] is False and gone["alive"] is None


def test_the_agent_forgets_an_ended_trial_and_a_relaunched_directory(tmp_path: Path) -> None:
    trial_dir = str(tmp_path / "t")
    os.makedirs(trial_dir)
    record = {"pid": os.getpid(), "pgid": os.getpgid(0), "started": 1.0}
    Path(trial_dir, "pid.json").write_text(json.dumps(record))
    answers, _ = pollops._poll_once(str(tmp_path), {"trials": [{"dir": "t"}]}, lambda p: True)
    assert answers[0]["pid"] == record and trial_dir in pollops._PIDS
    Path(trial_dir, "exit.json").write_text(json.dumps({"code": 0, "ended": 2.0}))
    answers, _ = pollops._poll_once(str(tmp_path), {"trials": [{"dir": "t"}]}, lambda p: True)
    assert answers[0]["exit"]["code"] == 0 and trial_dir not in pollops._PIDS


def test_the_session_reuses_the_trials_launch_result(tmp_path: Path) -> None:
    session = HostSession(HostSpec(name="local", local=True, workdir=str(tmp_path / "host")))
    session.open()
    sent: list[dict] = []
    assert session.agent is not None
    call = session.agent.call

    def spy(op: str, **fields: Any) -> dict:
        sent.append(fields)
        return call(op, **fields)

    session.agent.call = spy  # type: ignore[method-assign]
    try:
        trial_dir = session.trial_dir("e", "t1")
        files = launch_files(parameters={}, parameter_id=0, script="sleep 30\n",
                             cwd=session.absolute(trial_dir), env={}, max_duration=None,
                             kill_grace=1.0)
        launched = session.launch("t1", trial_dir, files)
        item = PollItem("t1", trial_dir, 0)
        first, second = session.poll([item])[0], session.poll([item])[0]
        assert first.state is second.state is RunState.RUNNING
        assert first.started == launched and second.started is first.started
        polls = [f["trials"][0] for f in sent if "trials" in f]
        assert "started" not in polls[0] and polls[1]["started"] is True
        session.kill(launched.handle.ref or 0, 1.0, wait=True)
        ended = session.poll([item])[0]
        for _ in range(50):
            if ended.state is RunState.EXITED:
                break
            time.sleep(0.1)
            ended = session.poll([item])[0]
        assert ended.state is RunState.EXITED and ended.started is first.started
        assert trial_dir not in session._starts  # ended: its record is let go
    finally:
        session.close()
