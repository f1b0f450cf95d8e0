"""Connecting while the run starts up (issue 12): ``Backend.warm`` opens the host pool's
SSH connections and agents before the experiment exists; ``open``'s connect takes them.

Over a real loopback sshd. A warm-up's failure is the connect's failure, reported once, in
the connect's own words.
"""

from __future__ import annotations

import queue
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sshd import SshServer

from remotetune import sync
from remotetune.backends import Envelope, OpenSpec, ReportKind, default_backends
from remotetune.backends.hostpool._session import HostSession
from remotetune.config import parse_experiment

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def _config(code: Path) -> Any:
    return parse_experiment({
        "searchSpace": {"x": {"_type": "choice", "_value": [1]}},
        "trialCommand": "true", "trialCodeDirectory": str(code), "trialConcurrency": 1,
    })


def _open_spec(tmp_path: Path, code: Path) -> OpenSpec:
    objects = tmp_path / "objects"
    manifest = sync.build_manifest(code)
    sync.freeze(code, manifest, objects)
    return OpenSpec("e1", manifest, objects)


def _reports(backend: Any, inbox: queue.Queue[Envelope]) -> list[Any]:
    """What the first connect reported, as the controller gets it."""
    reports: list[Any] = []
    deadline = time.monotonic() + 60
    while backend.connecting() and time.monotonic() < deadline:
        try:
            envelope = inbox.get(timeout=0.5)
        except queue.Empty:
            continue
        reports += backend.handle(envelope.payload, time.time())
    assert not backend.connecting(), "no connect outcome"
    return reports


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times HostSession.open was called (each is one SSH connect and agent start)."""
    calls: list[float] = []
    real = HostSession.open

    def counted(self: HostSession, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return real(self, **kwargs)

    monkeypatch.setattr(HostSession, "open", counted)
    return calls


def test_the_connect_takes_the_warmed_session(ssh_host: SshServer, tmp_path: Path,
                                              opens: list[float]) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    (backend,) = default_backends(_config(code), [ssh_host.spec()], home=tmp_path / "home")
    backend.warm()
    worker = next(iter(backend.workers.values()))  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while worker.session.agent is None and time.monotonic() < deadline:
        time.sleep(0.02)  # connected and its agent started, with no experiment yet
    assert worker.session.agent is not None and len(opens) == 1
    inbox: queue.Queue[Envelope] = queue.Queue()
    try:
        backend.open(_open_spec(tmp_path, code), inbox.put)
        (ready,) = _reports(backend, inbox)
        assert ready.kind is ReportKind.HOST_READY
        assert len(opens) == 1  # one SSH connect and one agent for the whole start-up
        snapshot = Path(worker.session.absolute(worker.snapshot_dir or ""))
        assert (snapshot / "train.py").read_text() == "print('hi')\n"  # synced over it
    finally:
        backend.close()


def test_a_warm_up_that_fails_is_the_connects_failure_once(
        ssh_host: SshServer, tmp_path: Path, opens: list[float]) -> None:
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)],
                   check=True)
    code = tmp_path / "code"
    code.mkdir()
    (backend,) = default_backends(_config(code), [ssh_host.spec(identity_file=str(wrong))],
                                  home=tmp_path / "home")
    backend.warm()
    inbox: queue.Queue[Envelope] = queue.Queue()
    try:
        backend.open(_open_spec(tmp_path, code), inbox.put)
        reports = _reports(backend, inbox)
        assert [(r.kind, r.level) for r in reports] == [(ReportKind.HOST_EVENT, "error")]
        assert "authentication" in (reports[0].message or "").lower()
        assert len(opens) == 1  # the connect did not try again behind the warm-up
        assert backend.unusable()  # the user must fix it: no reconnect
    finally:
        backend.close()
