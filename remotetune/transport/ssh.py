"""SSH transport: one long-lived connection per host, opened through fabric's ``Connection``.

With :mod:`remotetune.transport._ssh_open`, :mod:`._ssh_keys` and :mod:`._ssh_channel`, the
only modules that import paramiko and fabric. Every paramiko and socket failure leaves as a
:class:`remotetune.errors.TransportError` subclass whose ``reason`` names the category
(``name resolution``, ``connection refused``, ``timeout``, ``unreachable``,
``connection lost``, ``authentication``, ``unknown host key``, ``host key mismatch``).

fabric resolves ``~/.ssh/config`` (or ``HostSpec.ssh_config_file``): ``HostName``, ``Port``,
``User``, ``IdentityFile``, ``UserKnownHostsFile``, ``ProxyJump`` (a chain of Connections,
each hop's host key checked too) and ``ProxyCommand``. Values in ``machines.yml`` win over
the config file.

Pitfalls handled (measured in /work/shared/research/ssh-bench.md): TCP_NODELAY is set
(paramiko leaves Nagle on: 48 ms per exec instead of 4 ms); the client rekey thresholds
are raised to 2**40 (paramiko's own rekey after 512 MiB fails on busy connections);
``sendall`` is linear (paramiko's is quadratic); keepalives every 15 s; AES-GCM preferred
when the server offers it. No SFTP: bulk data goes through the agent channel.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from typing import Any

import paramiko

from remotetune.errors import RemoteSetupError
from remotetune.model import HostSpec
from remotetune.transport._ssh_channel import NET_ERRORS, SSHChannel, sendall, unreachable
from remotetune.transport._ssh_keys import DEFAULT_KEYS, Target, fingerprint
from remotetune.transport._ssh_open import (
    KEEPALIVE_S,
    REKEY_LIMIT,
    close_chain,
    connection,
    open_chain,
    target_of,
)
from remotetune.transport.base import AgentChannel, CommandResult, NewHostKey, Transport

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KEYS",
    "KEEPALIVE_S",
    "REKEY_LIMIT",
    "SSHChannel",
    "SSHTransport",
    "Target",
    "fingerprint",
]


class SSHTransport(Transport):
    """One SSH connection to one host. No I/O until ``connect()`` (or first use)."""

    def __init__(self, spec: HostSpec, *, accept_new: bool = False) -> None:
        super().__init__(spec)
        self.accept_new = accept_new  # record unknown host keys (`check --accept-new`)
        self.new_host_keys: list[NewHostKey] = []  # what was recorded, in order
        self._cxn: Any = None  # the fabric Connection (its .gateway chain holds the hops)
        self._client: paramiko.Transport | None = None
        self._lock = threading.Lock()
        self.auth_method: str | None = None
        self.target: Target | None = None

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_active()

    def connect(self) -> None:
        with self._lock:
            if self.connected:
                return
            self._close_quietly()
            cxn = connection(self.spec)
            self.target = target_of(self.spec, cxn)
            try:
                self.auth_method = open_chain(self.spec, cxn, accept_new=self.accept_new,
                                              recorded=self.new_host_keys)
            except BaseException:
                close_chain(cxn)
                raise
            self._cxn = cxn
            self._client = cxn.transport
            log.debug("%s: connected to %s@%s:%d by %s", self.name, self.target.user,
                      self.target.hostname, self.target.port, self.auth_method)

    # ------------------------------------------------------------------ commands

    def _session(self) -> paramiko.Channel:
        self.connect()
        assert self._client is not None
        try:
            return self._client.open_session(timeout=self.spec.connect_timeout)
        except paramiko.ChannelException as exc:
            raise RemoteSetupError(
                self.name, f"sshd refused a new session channel: {exc}",
                hint="too many channels on one connection? raise MaxSessions in sshd_config",
            ) from None
        except NET_ERRORS as exc:
            self._close_quietly()
            raise unreachable(self.name, "connection lost", f"connection lost: {exc}") from None

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        channel = self._session()
        deadline = None if timeout is None else time.monotonic() + timeout
        stderr: list[bytes] = []
        stdout: list[bytes] = []
        errors: list[BaseException] = []
        try:
            channel.exec_command("sh -c " + shlex.quote(command))

            def feed() -> None:
                try:
                    if stdin:
                        sendall(channel, stdin)
                    channel.shutdown_write()
                except NET_ERRORS as exc:
                    errors.append(exc)

            def drain_stderr() -> None:
                try:
                    while chunk := channel.recv_stderr(65536):
                        stderr.append(chunk)
                except NET_ERRORS as exc:
                    errors.append(exc)

            channel.settimeout(timeout)
            threads = [threading.Thread(target=feed, daemon=True),
                       threading.Thread(target=drain_stderr, daemon=True)]
            for thread in threads:
                thread.start()
            while chunk := channel.recv(65536):
                stdout.append(chunk)
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not channel.status_event.wait(left):
                raise TimeoutError("no exit status")
            code = channel.recv_exit_status()
        except TimeoutError:
            raise unreachable(
                self.name, "timeout", f"command timed out after {timeout:g} s: {command[:200]}"
            ) from None
        except NET_ERRORS as exc:
            self._close_quietly()
            raise unreachable(self.name, "connection lost", f"connection lost: {exc}") from None
        finally:
            channel.close()
        if errors and not isinstance(errors[0], TimeoutError):
            log.debug("%s: stream error during %r: %s", self.name, command[:80], errors[0])
        return CommandResult(
            command,
            code,
            b"".join(stdout).decode("utf-8", "replace"),
            b"".join(stderr).decode("utf-8", "replace"),
        )

    def start(self, command: str) -> AgentChannel:
        channel = self._session()
        try:
            channel.exec_command("sh -c " + shlex.quote(command))
        except NET_ERRORS as exc:
            channel.close()
            raise unreachable(self.name, "connection lost", f"cannot start: {exc}") from None
        return SSHChannel(channel, self.name)

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        close_chain(self._cxn)
        self._cxn = None
        self._client = None
