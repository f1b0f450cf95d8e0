"""SSHTransport against real OpenSSH servers (tests/sshd.py): commands, agent channels,
ssh config aliases and ProxyJump, and every connection failure as a clear error."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sshd import TEST_PASSWORD, TEST_USER, SshServer, free_port

from remotetune.errors import (
    AuthenticationFailed,
    HostKeyError,
    HostUnreachable,
    TransportError,
)
from remotetune.model import HostSpec
from remotetune.transport._ssh_open import QuickAckSocket
from remotetune.transport.ssh import REKEY_LIMIT, SSHTransport

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def server() -> Iterator[SshServer]:
    """One server shared by the tests that do not stop or reconfigure it."""
    with SshServer() as shared:
        yield shared


@pytest.fixture
def transport(server: SshServer) -> Iterator[SSHTransport]:
    t = SSHTransport(server.spec())
    yield t
    t.close()


def test_constructor_does_no_io() -> None:
    t = SSHTransport(_spec_to_nowhere())  # an unresolvable name: any I/O would raise
    assert not t.connected
    t.close()  # closing a never-opened transport is fine


def _spec_to_nowhere() -> HostSpec:
    return HostSpec(name="nowhere", host="no-such-host.invalid", port=22, use_agent=False)


def test_run_returns_output_and_exit_code(transport: SSHTransport) -> None:
    result = transport.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok
    assert transport.connected
    assert transport.auth_method and transport.auth_method.startswith("publickey")


def test_run_runs_under_sh_with_the_hosts_environment(transport: SSHTransport,
                                                      server: SshServer) -> None:
    result = transport.run('echo "$PATH"; id -un; command -v nvidia-smi')
    path, user, smi = result.stdout.splitlines()
    assert path.startswith(str(server.bin_dir)) and user == TEST_USER
    assert smi == str(server.bin_dir / "nvidia-smi")


def test_big_stdin_stdout_and_stderr_do_not_deadlock(transport: SSHTransport) -> None:
    result = transport.run(
        "wc -c; head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 4000000 /dev/zero | tr "
        "'\\0' o", stdin=b"x" * 5_000_000, timeout=60,
    )
    assert result.ok
    assert result.stdout.startswith("5000000\n") and len(result.stdout) == 8 + 4_000_000
    assert len(result.stderr) == 3_000_000


def test_run_timeout_is_a_transport_error(transport: SSHTransport) -> None:
    with pytest.raises(HostUnreachable, match="timed out") as info:
        transport.run("sleep 5", timeout=0.5)
    assert info.value.reason == "timeout"
    assert transport.run("echo still usable").stdout == "still usable\n"


def test_connection_is_tuned(transport: SSHTransport) -> None:
    transport.connect()
    client = transport._client
    assert client is not None
    assert client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert client.packetizer.REKEY_BYTES == REKEY_LIMIT
    assert client.packetizer.REKEY_PACKETS == REKEY_LIMIT


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_reads_are_acknowledged_at_once(transport: SSHTransport,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd's small packets are not held by Nagle behind our delayed ACK (40 ms): before,
    the first channel's confirmation waited that long after every connect (bench_connect.py
    shows the connect's figures). The kernel leaves quick-ack mode by itself (its state read
    back is a race with the next send), so every read must set it again."""
    calls = {"reads": 0, "quickack": 0}
    real_recv, real_setsockopt = QuickAckSocket.recv, socket.socket.setsockopt

    def recv(self: QuickAckSocket, bufsize: int, flags: int = 0) -> bytes:
        data = real_recv(self, bufsize, flags)  # a read that timed out raises: not counted
        calls["reads"] += 1
        return data

    def setsockopt(self: socket.socket, level: int, option: int, value: object) -> None:
        if (level, option) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK) and value == 1:
            calls["quickack"] += 1
        real_setsockopt(self, level, option, value)  # type: ignore[call-overload]

    monkeypatch.setattr(QuickAckSocket, "recv", recv)
    monkeypatch.setattr(QuickAckSocket, "setsockopt", setsockopt)
    transport.connect()
    assert transport._client is not None
    sock = transport._client.sock
    assert isinstance(sock, QuickAckSocket)
    assert sock.gettimeout() is not None  # paramiko's own timeout, as on a plain socket
    assert transport.run("echo hi").stdout == "hi\n"
    # paramiko's thread may be inside a read now: counted after its setsockopt
    assert calls["quickack"] >= calls["reads"] > 5, calls


def test_agent_channel_lines_stderr_and_close(transport: SSHTransport) -> None:
    channel = transport.start("echo started >&2; cat")
    channel.send(b"one\ntwo\nthr")
    assert channel.readline(5) == b"one\n"
    assert channel.readline(5) == b"two\n"
    channel.send(b"ee\n" + b"y" * 3_000_000 + b"\n")
    assert channel.readline(5) == b"three\n"
    assert len(channel.readline(10)) == 3_000_001
    with pytest.raises(HostUnreachable, match="no answer"):
        channel.readline(0.2)
    assert "started" in channel.stderr_text()
    channel.close()
    channel.close()  # idempotent


def test_agent_channel_reports_exit(transport: SSHTransport) -> None:
    channel = transport.start("echo bye; echo 'python3: not found' >&2; exit 1")
    assert channel.readline(5) == b"bye\n"
    with pytest.raises(HostUnreachable, match="closed"):
        channel.readline(5)
    assert "not found" in channel.stderr_text()


def test_password_authentication(server: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TEST_PW", TEST_PASSWORD)
    spec = server.spec(identity_file=None, password_env="RT_TEST_PW")
    with SSHTransport(spec) as t:
        assert t.run("id -un").stdout.strip() == TEST_USER
        assert isinstance(t, SSHTransport) and t.auth_method == "password"


def test_encrypted_key_with_passphrase_env(
    server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "locked"
    subprocess.run(["cp", str(server.client_key), str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "s3cret", "-f", str(key)], check=True,
                   capture_output=True)
    with pytest.raises(AuthenticationFailed, match="encrypted") as info:
        SSHTransport(server.spec(identity_file=str(key))).connect()
    assert "passphraseEnv" in str(info.value)
    monkeypatch.setenv("RT_TEST_PASSPHRASE", "s3cret")
    with SSHTransport(server.spec(identity_file=str(key),
                                  passphrase_env="RT_TEST_PASSPHRASE")) as t:
        assert t.run("true").ok


# ---------------------------------------------------------------------- bad input


def test_wrong_key(server: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    spec = server.spec(name="gpu-box", identity_file=str(other))
    with pytest.raises(AuthenticationFailed) as info:
        SSHTransport(spec).connect()
    text = str(info.value)
    assert text.startswith("gpu-box: authentication failed as remotetune-test@127.0.0.1")
    assert f"publickey ({other})" in text and "ssh-copy-id" in text
    assert info.value.reason == "authentication"


def test_missing_identity_file(server: SshServer, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationFailed, match="does not exist"):
        SSHTransport(server.spec(identity_file=str(tmp_path / "nope"))).connect()


def test_wrong_password(server: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TEST_PW", "not-the-password")
    spec = server.spec(name="pw-box", identity_file=None, password_env="RT_TEST_PW")
    with pytest.raises(AuthenticationFailed) as info:
        SSHTransport(spec).connect()
    assert "pw-box" in str(info.value) and "password (from $RT_TEST_PW)" in str(info.value)
    assert "passwordEnv" in str(info.value)


def test_password_env_not_exported(server: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RT_TEST_UNSET", raising=False)
    spec = server.spec(identity_file=None, password_env="RT_TEST_UNSET")
    with pytest.raises(AuthenticationFailed, match=r"\$RT_TEST_UNSET is not set"):
        SSHTransport(spec).connect()


def test_unknown_host_key_and_accepting_it(
    server: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    spec = server.spec(name="new-box", known_hosts_file=str(empty))
    with pytest.raises(HostKeyError) as info:
        SSHTransport(spec).connect()
    text = str(info.value)
    assert text.startswith("new-box: unknown host key for [127.0.0.1]:")
    # the hint names the configured knownHostsFile (issue 8): that is the file this host reads
    assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> {empty}" in text
    assert "acceptUnknownHostKey: true" in text
    assert info.value.reason == "unknown host key"
    with caplog.at_level(logging.WARNING, logger="remotetune.transport.ssh"):
        with SSHTransport(replace(spec, accept_unknown_host_key=True)) as t:
            assert t.run("true").ok
    assert "accepting unknown host key" in caplog.text
    assert empty.read_text() == ""  # never written behind the user's back


def test_mismatched_host_key(server: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "fake_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"{server.host_pattern} {(tmp_path / 'fake_host.pub').read_text()}")
    spec = server.spec(name="mitm-box", known_hosts_file=str(known),
                       accept_unknown_host_key=True)  # accepting unknown never accepts changed
    with pytest.raises(HostKeyError) as info:
        SSHTransport(spec).connect()
    text = str(info.value)
    assert text.startswith("mitm-box: HOST KEY MISMATCH") and "man in the middle" in text
    assert f"ssh-keygen -R '{server.host_pattern}'" in text
    assert info.value.reason == "host key mismatch"


def test_connection_refused() -> None:
    spec = replace(_spec_to_nowhere(), name="down-box", host="127.0.0.1", port=free_port())
    with pytest.raises(HostUnreachable) as info:
        SSHTransport(spec).connect()
    assert info.value.reason == "connection refused"
    assert str(info.value).startswith("down-box: connection refused by 127.0.0.1:")
    assert "sshd running" in str(info.value)


def test_name_resolution_failure() -> None:
    with pytest.raises(HostUnreachable) as info:
        SSHTransport(_spec_to_nowhere()).connect()
    assert info.value.reason == "name resolution"
    assert "no-such-host.invalid" in str(info.value) and "machines.yml" in str(info.value)


def test_silent_server_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    spec = replace(_spec_to_nowhere(), host="127.0.0.1", port=listener.getsockname()[1],
                   connect_timeout=0.5)
    try:
        with pytest.raises(HostUnreachable) as info:
            SSHTransport(spec).connect()
        assert info.value.reason == "timeout"
    finally:
        listener.close()
        for sock in accepted:
            sock.close()


def test_dropped_connection_then_reconnect(ssh_host: SshServer) -> None:
    t = SSHTransport(ssh_host.spec())
    channel = t.start("cat")
    ssh_host.restart()  # kills every session: the connection drops
    with pytest.raises(HostUnreachable) as info:
        channel.send(b"x\n")
        channel.readline(5)
    assert info.value.reason in ("connection lost", "timeout")
    assert t.run("echo back").stdout == "back\n"  # the next call reconnects
    t.close()


def test_ssh_config_alias_and_proxy_jump(
    sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    jump, target = sshd_factory(log_level="DEBUG"), sshd_factory()
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {TEST_USER}\n"
        f"  IdentityFile {jump.client_key}\n"
        f"Host gpu-node\n  HostName 127.0.0.1\n  Port {target.port}\n  User {TEST_USER}\n"
        f"  IdentityFile {target.client_key}\n  ProxyJump bastion\n"
    )
    known = tmp_path / "known_hosts"
    known.write_text(jump.known_hosts.read_text() + target.known_hosts.read_text())
    spec = HostSpec(name="gpu-node", host="gpu-node", ssh_config_file=str(config),
                    known_hosts_file=str(known), use_agent=False)
    with SSHTransport(spec) as t:
        assert t.run("echo $REMOTETUNE_TEST_SSHD").stdout.strip() == target.server_id
        assert t.target is not None and t.target.proxy_jump == "bastion"
    assert _forwarded_to(jump, target.port), jump.log_text[-2000:]  # really through bastion
    # The jump host's key is checked too.
    known.write_text(target.known_hosts.read_text())
    with pytest.raises(HostKeyError, match="jump bastion"):
        SSHTransport(spec).connect()


def test_no_paramiko_exception_escapes_a_dead_transport(ssh_host: SshServer) -> None:
    t = SSHTransport(ssh_host.spec())
    t.connect()
    ssh_host.stop()
    with pytest.raises(TransportError):
        t.run("true", timeout=5)
    assert not t.connected
    t.close()
    assert os.path.exists(ssh_host.root)


def test_wrong_passphrase_names_the_key(
    server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not paramiko's PEM message: "wrong passphrase for KEY" (issue 8)."""
    key = tmp_path / "locked"
    subprocess.run(["cp", str(server.client_key), str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "s3cret", "-f", str(key)], check=True,
                   capture_output=True)
    monkeypatch.setenv("RT_TEST_PASSPHRASE", "not-it")
    spec = server.spec(name="locked-box", identity_file=str(key),
                       passphrase_env="RT_TEST_PASSPHRASE")
    with pytest.raises(AuthenticationFailed) as info:
        SSHTransport(spec).connect()
    text = str(info.value)
    assert text.startswith(f"locked-box: wrong passphrase for {key}")
    assert "passphraseEnv" in text
    assert "PEM" not in text and "BEGIN" not in text and "not-it" not in text


def _hop_entry(alias: str, server: SshServer, extra: str = "") -> str:
    return (f"Host {alias}\n  HostName 127.0.0.1\n  Port {server.port}\n  User {TEST_USER}\n"
            f"  IdentityFile {server.client_key}\n{extra}")


def _forwarded_to(jump: SshServer, port: int) -> bool:
    """The jump host's sshd log records a direct-tcpip forward to 127.0.0.1:port."""
    return any("direct" in line and f"port {port}" in line and "target" in line
               for line in jump.log_text.splitlines())


def test_proxy_jump_chain_really_goes_through_both_jump_hosts(
    sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    """ProxyJump j1,j2: each hop's sshd forwards to the next; with j1 down nothing connects."""
    j1, j2 = sshd_factory(log_level="DEBUG"), sshd_factory(log_level="DEBUG")
    target = sshd_factory()
    config = tmp_path / "ssh_config"
    config.write_text(_hop_entry("j1", j1) + _hop_entry("j2", j2)
                      + _hop_entry("gpu-node", target, "  ProxyJump j1,j2\n"))
    known = tmp_path / "known_hosts"
    known.write_text(j1.known_hosts.read_text() + j2.known_hosts.read_text()
                     + target.known_hosts.read_text())
    spec = HostSpec(name="gpu-node", host="gpu-node", ssh_config_file=str(config),
                    known_hosts_file=str(known), use_agent=False)
    with SSHTransport(spec) as t:
        assert t.run("echo $REMOTETUNE_TEST_SSHD").stdout.strip() == target.server_id
        assert t.target is not None and t.target.proxy_jump == "j1,j2"
    assert _forwarded_to(j1, j2.port), j1.log_text[-2000:]
    assert _forwarded_to(j2, target.port), j2.log_text[-2000:]
    assert not _forwarded_to(j1, target.port)  # j1 only ever reached j2
    j1.stop()
    with pytest.raises(HostUnreachable) as info:
        SSHTransport(spec).connect()
    assert "jump j1" in str(info.value) and info.value.reason == "connection refused"


def test_proxy_command_goes_through_the_command(
    sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    """ProxyCommand (OpenSSH's `ssh -W` through a jump host here), and one that fails."""
    jump, target = sshd_factory(log_level="DEBUG"), sshd_factory()
    proxy = " ".join([*jump.ssh_command(), "-W", "%h:%p", "127.0.0.1"])
    config = tmp_path / "ssh_config"
    config.write_text(_hop_entry("via-cmd", target, f"  ProxyCommand {proxy}\n")
                      + _hop_entry("broken", target, "  ProxyCommand false\n"))
    spec = HostSpec(name="via-cmd", host="via-cmd", ssh_config_file=str(config),
                    known_hosts_file=str(target.known_hosts), use_agent=False)
    with SSHTransport(spec) as t:
        assert t.run("echo $REMOTETUNE_TEST_SSHD").stdout.strip() == target.server_id
        assert t.target is not None and t.target.proxy_command
    assert _forwarded_to(jump, target.port), jump.log_text[-2000:]
    with pytest.raises(HostUnreachable) as info:
        SSHTransport(replace(spec, name="broken", host="broken")).connect()
    assert "ProxyCommand" in str(info.value) and info.value.reason == "unreachable"
