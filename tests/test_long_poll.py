"""The agent's long poll (docs/protocol.md): news wakes it, any request ends it early.

A real agent process on pipes, real trial directories and a real process group.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from remotetune.backends.hostpool._host import watch

AGENT = "remotetune.backends.hostpool._host.agent"


class Agent:
    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", AGENT, str(workdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert json.loads(self.readline())["ready"]
        self.ids = 0

    def readline(self) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, op: str, **fields: object) -> int:
        self.ids += 1
        self.send(json.dumps({"id": self.ids, "op": op, **fields}).encode() + b"\n")
        return self.ids

    def answer(self) -> dict:
        return json.loads(self.readline())

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(10)


@pytest.fixture
def setup(tmp_path: Path):
    trial = tmp_path / "t1"
    trial.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    (trial / "pid.json").write_text(json.dumps({
        "pid": sleeper.pid, "pgid": sleeper.pid, "launcher_pid": None,
        "started": time.time(), "hostname": "h"}))
    (trial / "metrics.jsonl").write_text('{"default": 1}\n')
    agent = Agent(tmp_path)
    yield agent, trial, sleeper
    agent.close()
    sleeper.kill()
    sleeper.wait()


def _poll(agent: Agent, offset: int, wait: float) -> int:
    return agent.request("poll", trials=[{"dir": "t1", "offset": offset}], wait=wait,
                         every=0.005)


def test_news_at_once_then_a_line_ends_the_wait(setup) -> None:
    agent, trial, _ = setup
    _poll(agent, 0, 5.0)
    first = agent.answer()["trials"][0]
    assert first["lines"] == ['{"default": 1}'] and first["alive"] is True
    _poll(agent, first["offset"], 5.0)
    time.sleep(0.3)
    started = time.monotonic()
    with open(trial / "metrics.jsonl", "a") as f:
        f.write('{"default": 2}\n')
    answer = agent.answer()["trials"][0]
    assert answer["lines"] == ['{"default": 2}']
    assert time.monotonic() - started < 1.0


def test_exit_and_vanished_process_end_the_wait(setup) -> None:
    agent, trial, sleeper = setup
    offset = len('{"default": 1}\n')
    _poll(agent, offset, 5.0)
    time.sleep(0.2)
    started = time.monotonic()
    os.killpg(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    answer = agent.answer()["trials"][0]
    assert answer["alive"] is False and answer["exit"] is None
    assert time.monotonic() - started < 1.0
    (trial / "exit.json").write_text(json.dumps({"code": 0, "signal": None, "ended": 1.0}))
    _poll(agent, offset, 5.0)
    assert agent.answer()["trials"][0]["exit"]["code"] == 0


def test_another_request_ends_a_long_poll_early(setup) -> None:
    agent, _, _ = setup
    offset = len('{"default": 1}\n')
    poll_id = _poll(agent, offset, 10.0)
    time.sleep(0.2)
    started = time.monotonic()
    tail_id = agent.request("tail", dir="t1")
    first, second = agent.answer(), agent.answer()
    assert (first["id"], second["id"]) == (poll_id, tail_id)
    assert first["trials"][0]["lines"] == [] and second["ok"]
    assert time.monotonic() - started < 1.0
    _poll(agent, offset, 10.0)  # an empty line (a wake) ends it too, and is skipped
    time.sleep(0.2)
    started = time.monotonic()
    agent.send(b"\n")
    assert agent.answer()["trials"][0]["lines"] == []
    assert time.monotonic() - started < 1.0


def test_no_news_answers_after_wait(setup) -> None:
    agent, _, _ = setup
    started = time.monotonic()
    _poll(agent, len('{"default": 1}\n'), 0.5)
    answer = agent.answer()["trials"][0]
    elapsed = time.monotonic() - started
    assert answer["lines"] == [] and answer["alive"] is True
    assert 0.45 <= elapsed < 3.0


def test_input_keeps_requests_that_arrived_together(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.write(write, b'{"a": 1}\n{"b": 2}\nxyz')
    stream = watch.Input(os.fdopen(read, "rb", buffering=0))
    assert stream.readline() == b'{"a": 1}\n'
    assert stream.pending()  # held in the buffer, invisible to select
    assert stream.readline() == b'{"b": 2}\n'
    assert stream.read(2) == b"xy"
    os.close(write)
    assert stream.pending()  # EOF counts: the agent answers, then sees it
    assert stream.readline() == b"z"
    assert stream.readline() == b""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux's")
@pytest.mark.parametrize("initial", [2**16, 2**17])  # Linux's default, and one set before
def test_input_widens_its_pipe_for_a_large_payload(monkeypatch: pytest.MonkeyPatch,
                                                   initial: int) -> None:
    """A sync payload crosses a 1 MiB pipe; the pipe is back to its size afterwards."""
    read, write = os.pipe()
    fcntl.fcntl(read, 1031, initial)  # F_SETPIPE_SZ
    stream = watch.Input(os.fdopen(read, "rb", buffering=0))
    sizes: list[int] = []

    def resize(fd: int, size: int) -> None:
        sizes.append(size)
        real_resize(fd, size)
        sizes.append(fcntl.fcntl(fd, 1032))  # F_GETPIPE_SZ: what the kernel made of it

    real_resize = watch._resize_pipe
    monkeypatch.setattr(watch, "_resize_pipe", resize)
    payload = os.urandom(3 * 2**20 + 17)

    def send() -> None:
        with os.fdopen(write, "wb") as out:
            out.write(b'{"size": 1}\nsmall' + payload)

    writer = threading.Thread(target=send, daemon=True)  # never holds pytest at exit
    writer.start()
    assert stream.readline() == b'{"size": 1}\n'
    assert stream.read_exact(5) == b"small" and sizes == []  # a small one: left as it is
    assert stream.read_exact(len(payload)) == payload
    writer.join()
    assert sizes == [watch.PIPE_BYTES, watch.PIPE_BYTES, initial, initial]
    with pytest.raises(EOFError):
        stream.read_exact(1)


def test_input_leaves_what_is_not_a_pipe_alone(tmp_path: Path) -> None:
    path = tmp_path / "requests"
    path.write_bytes(b'{"a": 1}\n')
    with open(path, "rb", buffering=0) as raw:
        stream = watch.Input(raw)
        assert not stream.pipe
        assert stream.readline() == b'{"a": 1}\n'
