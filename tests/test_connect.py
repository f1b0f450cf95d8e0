"""A host's connect over a real loopback sshd: probe, package install and agent start in one
process and one round trip; nvidia-smi started at connect and collected by the first read."""

from __future__ import annotations

import pytest
from sshd import SshServer

from remotetune.backends.hostpool._session import HostSession
from remotetune.errors import RemoteSetupError
from remotetune.model import HostSpec
from remotetune.transport.base import AgentChannel, CommandResult, Transport
from remotetune.transport.ssh import SSHTransport

pytestmark = pytest.mark.ssh


class CountingChannel(AgentChannel):
    def __init__(self, inner: AgentChannel, counts: dict[str, int]) -> None:
        self.inner, self.counts = inner, counts

    def send(self, data: bytes) -> None:
        self.inner.send(data)

    def readline(self, timeout: float) -> bytes:
        self.counts["answers"] += 1  # each answer waited for is one round trip
        return self.inner.readline(timeout)

    def stderr_text(self) -> str:
        return self.inner.stderr_text()

    def close(self) -> None:
        self.inner.close()


class CountingTransport(SSHTransport):
    """The real SSH transport, counting the commands it waits for and the agents it starts."""

    def __init__(self, spec: HostSpec, counts: dict[str, int]) -> None:
        super().__init__(spec)
        self.counts = counts

    def run(self, command: str, *, stdin: bytes | None = None,
            timeout: float | None = 60.0) -> CommandResult:
        self.counts["runs"] += 1
        return super().run(command, stdin=stdin, timeout=timeout)

    def start(self, command: str) -> AgentChannel:
        self.counts["starts"] += 1
        return CountingChannel(super().start(command), self.counts)


def counted(spec: HostSpec) -> tuple[HostSession, dict[str, int]]:
    counts = {"runs": 0, "starts": 0, "answers": 0}

    def factory(s: HostSpec) -> Transport:
        return CountingTransport(s, counts)

    return HostSession(spec, transport_factory=factory), counts


def test_connect_is_one_process_and_one_round_trip_new_host_or_not(ssh_host: SshServer) -> None:
    """Before: an install command (its own Python), then the agent, then a hello: three round
    trips and two processes. Now the agent's first line answers all of it."""
    for attempt in ("new host", "package already there"):
        session, counts = counted(ssh_host.spec())
        try:
            info = session.open()
            assert counts == {"runs": 0, "starts": 1, "answers": 1}, (attempt, counts)
            assert info.workdir == str(ssh_host.workdir)
            assert session.lib_dir.startswith(str(ssh_host.workdir / "lib"))
            assert session.gpus().gpus is not None  # the agent serves its ops
        finally:
            session.close()
    libs = [p.name for p in (ssh_host.workdir / "lib").iterdir()]
    assert len(libs) == 1 and not libs[0].startswith(".tmp-"), libs  # installed once
    # The agent's modules are compiled once, not at every connect (about 30 ms of a connect).
    cache = ssh_host.workdir / "lib" / libs[0] / "remotetune" / "_host" / "__pycache__"
    assert list(cache.glob("agent.*.pyc")), sorted(p.name for p in cache.parent.iterdir())


def test_nvidia_smi_started_at_connect_reads_as_a_fresh_one(ssh_host: SshServer) -> None:
    """gpus_early: nvidia-smi runs while the code syncs; its exit code survives the agent's
    reaper (exit 6, "No devices were found", is a host with no GPU, not a failure)."""
    ssh_host.set_gpus([{"name": "G", "memory_total": 100, "memory_used": 0, "utilization": 0}])
    session = HostSession(ssh_host.spec())
    try:
        session.open(gpus_early=True)
        assert session.agent is not None
        session.agent.call("hello")  # the agent reaps children between requests
        early = session.gpus()
        assert early.gpus is not None and len(early.gpus) == 1, early
        assert session.gpus() == early  # the next one runs nvidia-smi again
        ssh_host.set_gpus([])
        session.open(gpus_early=True)
        session.agent.call("hello")
        assert session.gpus().gpus == ()
    finally:
        session.close()


def test_a_package_that_cannot_be_installed_is_a_setup_error(ssh_host: SshServer) -> None:
    (ssh_host.workdir / "lib").write_text("a file where the package directory goes")
    session = HostSession(ssh_host.spec())
    try:
        with pytest.raises(RemoteSetupError) as info:
            session.open()
    finally:
        session.close()
    text = str(info.value)
    assert "could not install remotetune's host package" in text, text
    assert "Traceback" not in text and 'File "' not in text
