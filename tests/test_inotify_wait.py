"""The long poll sleeps on inotify (watch.py, inotify.py): files wake it, not a timer.

Real agent processes on pipes, real trial directories, a real writer process. Whether an
agent sleeps on inotify is read from /proc (its inotify descriptor and the watches in it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from remotetune.backends.hostpool._host import inotify, pollops, watch
from tests.test_long_poll import Agent


def _available() -> bool:
    probe = inotify.Inotify()
    probe.close()
    return probe.wds == {} and inotify._libc() is not None


pytestmark = pytest.mark.skipif(not _available(), reason="no inotify here")

LINE = '{"default": 1}\n'


def _trial(root: Path, name: str) -> Path:
    trial = root / name
    trial.mkdir()
    (trial / "metrics.jsonl").write_text(LINE)
    (trial / "pid.json").write_text(json.dumps({
        "pid": os.getpid(), "pgid": os.getpgid(0), "launcher_pid": None,
        "started": time.time(), "hostname": "h"}))
    return trial


def _writer(path: Path) -> subprocess.Popen:
    """A process that appends one metric line to ``path`` when told (a byte on stdin)."""
    code = ("import sys; sys.stdin.buffer.read(1); "
            "f = open(sys.argv[1], 'a'); f.write('{\"default\": 2}\\n'); f.close()")
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE)


def _long_poll(agent: Agent, wait: float = 10.0, offset: int = len(LINE)) -> int:
    return agent.request("poll", trials=[{"dir": "t1", "offset": offset}], wait=wait,
                         every=2.0)


def _idle(agent: Agent) -> None:
    """Let the agent reach its wait (select), with nothing to answer yet."""
    time.sleep(0.3)
    assert agent.proc.poll() is None


def _agent_watches(agent: Agent) -> int | None:
    """How many inotify watches the agent holds; None: it has no inotify descriptor."""
    fds = f"/proc/{agent.proc.pid}/fd"
    for fd in os.listdir(fds):
        with suppress(OSError):
            if os.readlink(f"{fds}/{fd}") == "anon_inode:inotify":
                with open(f"/proc/{agent.proc.pid}/fdinfo/{fd}") as f:
                    return sum(1 for line in f if line.startswith("inotify wd:"))
    return None


def test_a_line_from_another_process_wakes_the_poll_at_once(tmp_path: Path) -> None:
    trial = _trial(tmp_path, "t1")
    writer = _writer(trial / "metrics.jsonl")
    agent = Agent(tmp_path)
    try:
        _long_poll(agent)
        _idle(agent)
        assert _agent_watches(agent) == 1  # it sleeps on the watch, not on a timer
        started = time.monotonic()
        writer.communicate(b"x", timeout=10)  # returns once the writer wrote and exited
        answer = agent.answer()["trials"][0]
        latency = time.monotonic() - started
    finally:
        agent.close()
    assert answer["lines"] == ['{"default": 2}']
    assert latency < 0.5  # a few ms on a quiet machine; polling every 2 s would miss this


def test_a_request_interrupts_the_watch(tmp_path: Path) -> None:
    _trial(tmp_path, "t1")
    agent = Agent(tmp_path)
    try:
        poll_id = _long_poll(agent)
        _idle(agent)
        started = time.monotonic()
        tail_id = agent.request("tail", dir="t1")
        first, second = agent.answer(), agent.answer()
        latency = time.monotonic() - started
    finally:
        agent.close()
    assert (first["id"], second["id"]) == (poll_id, tail_id)
    assert first["trials"][0]["lines"] == [] and latency < 0.5


def test_forced_fallback_polls_with_stat(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMOTETUNE_NO_INOTIFY", "1")
    assert inotify.Inotify().fd is None and not inotify.Inotify().track([str(tmp_path)])
    trial = _trial(tmp_path, "t1")
    agent = Agent(tmp_path)  # inherits the variable: no inotify in that agent
    try:
        agent.request("poll", trials=[{"dir": "t1", "offset": len(LINE)}], wait=10.0,
                      every=0.005)
        _idle(agent)
        assert _agent_watches(agent) is None
        with open(trial / "metrics.jsonl", "a") as f:
            f.write('{"default": 2}\n')
        assert agent.answer()["trials"][0]["lines"] == ['{"default": 2}']
        started = time.monotonic()
        _long_poll(agent, wait=0.6, offset=2 * len(LINE))  # every 2 s, but no longer than the wait
        assert agent.answer()["trials"][0]["lines"] == []
        assert time.monotonic() - started < 2.0
    finally:
        agent.close()


def test_a_directory_that_cannot_be_watched_falls_back(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        missing = str(tmp_path / "never-made")
        waiter = watch.Waiter([missing], read, 0.005)
        assert waiter.watch is None and waiter.liveness == watch.LIVENESS_EVERY
        watcher = inotify.Inotify()
        watcher._add = lambda *args: -1  # as when the watch limit is reached (ENOSPC)
        assert not watcher.track([str(tmp_path)])
        watcher.close()
    finally:
        os.close(read)
        os.close(write)


def _kernel_watches(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return sum(1 for line in f if line.startswith("inotify wd:"))


def test_no_descriptor_or_watch_leak_over_1000_polls(tmp_path: Path) -> None:
    trials = [_trial(tmp_path, f"t{i}") for i in range(4)]
    read, write = os.pipe()
    watch.events()  # the agent's one inotify descriptor, made before counting
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        for i in range(1000):
            chosen = trials[i % 3:i % 3 + 2]  # the set of trials changes from poll to poll
            req = {"trials": [{"dir": t.name, "offset": len(LINE), "started": True}
                              for t in chosen], "wait": 0.0005, "every": 2.0}
            answer = pollops.poll(str(tmp_path), req, lambda pid: True, lambda: False, read)
            assert [r["lines"] for r in answer["trials"]] == [[], []]
        watcher = watch.events()
        assert len(os.listdir("/proc/self/fd")) == fds_before
        assert sorted(watcher.wds) == sorted(str(t) for t in chosen)
        assert _kernel_watches(watcher.fd) == 2
    finally:
        os.close(read)
        os.close(write)


def test_a_deleted_and_remade_directory_is_watched_again(tmp_path: Path) -> None:
    trial = _trial(tmp_path, "t1")
    agent = Agent(tmp_path)
    try:
        _long_poll(agent, wait=0.2)
        assert agent.answer()["trials"][0]["lines"] == []
        for name in os.listdir(trial):
            os.unlink(trial / name)
        trial.rmdir()
        _trial(tmp_path, "t1")  # the kernel dropped the old watch (IN_IGNORED)
        _long_poll(agent)
        _idle(agent)
        started = time.monotonic()
        with open(trial / "metrics.jsonl", "a") as f:
            f.write('{"default": 2}\n')
        answer = agent.answer()["trials"][0]
        assert answer["lines"] == ['{"default": 2}'] and time.monotonic() - started < 0.5
    finally:
        agent.close()


def _run_until_exit(tmp_path: Path, name: str, script: str, max_duration: float) -> dict:
    from remotetune.backends.hostpool._session import HostSession, PollItem, launch_files
    from remotetune.model import HostSpec

    session = HostSession(HostSpec(name="local", local=True, workdir=str(tmp_path / "host")))
    session.open()
    try:
        trial_dir = session.trial_dir("e", name)
        files = launch_files(parameters={}, parameter_id=0, script=script,
                             cwd=session.absolute(trial_dir), env={},
                             max_duration=max_duration, kill_grace=1.0)
        session.launch(name, trial_dir, files)
        for _ in range(40):
            if session.poll([PollItem(name, trial_dir, 0)], wait=1.0)[0].exit is not None:
                break
        path = Path(session.absolute(trial_dir))
        started = json.loads((path / "pid.json").read_text())["started"]
        ended = json.loads((path / "exit.json").read_text())
        return dict(ended, took=ended["ended"] - started)
    finally:
        session.close()


def test_a_trial_under_max_duration_is_seen_ending_at_once(tmp_path: Path) -> None:
    # The launcher waits with an alarm at the deadline, not a 0.5 s sleep loop.
    ended = _run_until_exit(tmp_path, "t1", "sleep 0.1\n", max_duration=30.0)
    assert ended["code"] == 0 and ended["reason"] is None
    assert ended["took"] < 0.4
    over = _run_until_exit(tmp_path, "t2", "sleep 30\n", max_duration=0.5)
    assert over["reason"] == "timeout" and 0.5 <= over["took"] < 5.0


def test_a_wake_reads_again_only_the_trial_that_changed(tmp_path: Path, monkeypatch) -> None:
    trials = [_trial(tmp_path, f"t{i}") for i in range(3)]
    reads: list[str] = []
    real = pollops._read_trial

    def counting(trial_dir, *args):
        reads.append(os.path.basename(trial_dir))
        return real(trial_dir, *args)

    monkeypatch.setattr(pollops, "_read_trial", counting)
    writer = _writer(trials[1] / "metrics.jsonl")
    read, write = os.pipe()
    try:
        req = {"trials": [{"dir": t.name, "offset": len(LINE), "started": True}
                          for t in trials], "wait": 10.0, "every": 2.0}
        subprocess.Popen(["sh", "-c", "sleep 0.2; printf x"], stdout=writer.stdin)
        answer = pollops.poll(str(tmp_path), req, lambda pid: True, lambda: False, read)
        writer.wait(10)
    finally:
        writer.stdin.close()  # type: ignore[union-attr]
        os.close(read)
        os.close(write)
    assert [r["lines"] for r in answer["trials"]] == [[], ['{"default": 2}'], []]
    assert reads == ["t0", "t1", "t2", "t1"]
