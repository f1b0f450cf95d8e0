"""SSH transport over paramiko: one long-lived connection per host.

The only module that imports paramiko. Every paramiko and socket failure leaves as a
:class:`remotetune.errors.TransportError` subclass whose ``reason`` names the category
(``name resolution``, ``connection refused``, ``timeout``, ``unreachable``,
``connection lost``, ``authentication``, ``unknown host key``, ``host key mismatch``).

``~/.ssh/config`` (or ``HostSpec.ssh_config_file``) is honoured for ``HostName``, ``Port``,
``User``, ``IdentityFile``, ``UserKnownHostsFile``, ``ProxyJump`` (a chain, each hop opened
by paramiko with a ``direct-tcpip`` channel as the next hop's socket) and ``ProxyCommand``.
Values in ``machines.yml`` win over the config file.

Pitfalls handled (measured in /work/shared/research/ssh-bench.md): TCP_NODELAY is set
(paramiko leaves Nagle on: 48 ms per exec instead of 4 ms); the client rekey thresholds
are raised to 2**40 (paramiko's own rekey after 512 MiB fails on busy connections);
keepalives every 15 s; AES-GCM preferred when the server offers it. No SFTP: bulk data
goes through the agent channel.
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paramiko

from remotetune.errors import (
    AuthenticationFailed,
    ConfigError,
    HostKeyError,
    HostUnreachable,
    RemoteSetupError,
)
from remotetune.model import HostSpec
from remotetune.transport.base import AgentChannel, CommandResult, Transport

log = logging.getLogger(__name__)

REKEY_LIMIT = 2**40
KEEPALIVE_S = 15
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_NET_ERRORS = (paramiko.SSHException, OSError, EOFError)


def _unreachable(host: str, reason: str, message: str, hint: str | None = None) -> HostUnreachable:
    err = HostUnreachable(host, message, hint=hint)
    err.reason = reason
    return err


def _sendall(channel: paramiko.Channel, data: bytes, chunk: int = 256 * 1024) -> None:
    """``channel.sendall`` in slices: paramiko's own re-slices the whole rest of ``data``
    after every 32 KiB packet, which is quadratic (1.7 s of CPU for 20 MiB)."""
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        channel.sendall(bytes(view[start:start + chunk]))


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Target:
    """Where a HostSpec really leads once ``~/.ssh/config`` is applied."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts_files: tuple[str, ...]
    proxy_jump: str | None
    proxy_command: str | None

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def resolve(spec: HostSpec, *, proxy_jump: str | None = None) -> Target:
    """Apply the SSH config file to ``spec`` (machines.yml values win)."""
    path = os.path.expanduser(spec.ssh_config_file or "~/.ssh/config")
    options: dict[str, Any] = {}
    if spec.ssh_config_file and not os.path.exists(path):
        raise ConfigError(
            f"ssh config file {path} does not exist", key="sshConfigFile",
            hint="fix the path or remove the key to use ~/.ssh/config",
        )
    if os.path.exists(path):
        try:
            options = dict(paramiko.SSHConfig.from_path(path).lookup(spec.host))
        except Exception as exc:  # noqa: BLE001 - paramiko raises several types here
            raise ConfigError(f"cannot read ssh config: {exc}", file=path) from None
    port = spec.port or int(options.get("port", 22))
    user = spec.user or options.get("user") or getpass.getuser()
    if spec.identity_file:
        identity: tuple[str, ...] = (os.path.expanduser(spec.identity_file),)
    else:
        identity = tuple(os.path.expanduser(p) for p in options.get("identityfile", ()))
    if spec.known_hosts_file:
        known: tuple[str, ...] = (os.path.expanduser(spec.known_hosts_file),)
    else:
        configured = options.get("userknownhostsfile", "~/.ssh/known_hosts").split()
        known = tuple(os.path.expanduser(p) for p in configured) + ("/etc/ssh/ssh_known_hosts",)
    jump = proxy_jump if proxy_jump is not None else options.get("proxyjump")
    if jump and jump.lower() == "none":
        jump = None
    command = options.get("proxycommand")
    if command and command.lower() == "none":
        command = None
    return Target(
        hostname=options.get("hostname", spec.host),
        port=port,
        user=user,
        identity_files=identity,
        known_hosts_files=known,
        proxy_jump=jump or None,
        proxy_command=None if jump else command,
    )


def _jump_spec(spec: HostSpec, hop: str) -> HostSpec:
    """A HostSpec for one ProxyJump hop ``[user@]host[:port]``, inheriting trust settings."""
    user, _, hostport = hop.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):  # [ipv6]:port
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif hostport.count(":") == 1:
        host, text = hostport.split(":")
        port = int(text)
    return replace(
        spec, name=f"{spec.name} (jump {hop})", host=host, port=port, user=user or None,
        password_env=None,
    )


class SSHTransport(Transport):
    """One paramiko connection to one host. No I/O until ``connect()`` (or first use)."""

    def __init__(self, spec: HostSpec, *, proxy_jump: str | None = None) -> None:
        super().__init__(spec)
        self._proxy_jump_override = proxy_jump
        self._client: paramiko.Transport | None = None
        self._jump: SSHTransport | None = None
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
            target = resolve(self.spec, proxy_jump=self._proxy_jump_override)
            self.target = target
            sock = self._open_socket(target)
            try:
                client = self._handshake(sock, target)
            except BaseException:
                sock.close()
                self._close_quietly()
                raise
            self._client = client
            log.debug("%s: connected to %s@%s:%d by %s", self.name, target.user,
                      target.hostname, target.port, self.auth_method)

    def _open_socket(self, target: Target) -> Any:
        timeout = self.spec.connect_timeout
        where = f"{target.hostname}:{target.port}"
        if target.proxy_jump:
            hops = [h.strip() for h in target.proxy_jump.split(",") if h.strip()]
            earlier = ",".join(hops[:-1]) or None
            self._jump = SSHTransport(_jump_spec(self.spec, hops[-1]), proxy_jump=earlier)
            self._jump.connect()
            assert self._jump._client is not None
            try:
                return self._jump._client.open_channel(
                    "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                    timeout=timeout,
                )
            except _NET_ERRORS as exc:
                raise _unreachable(
                    self.name, "unreachable", f"jump host {hops[-1]} cannot reach {where}: {exc}",
                    hint="check HostName/Port and that the jump host allows TCP forwarding",
                ) from None
        if target.proxy_command:
            try:
                return paramiko.ProxyCommand(target.proxy_command)
            except _NET_ERRORS as exc:
                raise _unreachable(
                    self.name, "unreachable", f"ProxyCommand failed: {exc}",
                    hint="check ProxyCommand in your ssh config",
                ) from None
        try:
            sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
        except socket.gaierror as exc:
            raise _unreachable(
                self.name, "name resolution", f"cannot resolve host name {target.hostname!r}"
                f" ({exc.strerror})", hint="check `host:` in machines.yml, DNS or ~/.ssh/config",
            ) from None
        except ConnectionRefusedError:
            raise _unreachable(
                self.name, "connection refused", f"connection refused by {where}",
                hint="is sshd running there, and is `port:` right?",
            ) from None
        except TimeoutError:
            raise _unreachable(
                self.name, "timeout", f"no answer from {where} within {timeout:g} s",
                hint="check the address, a firewall or VPN, or raise connectTimeout",
            ) from None
        except OSError as exc:
            raise _unreachable(
                self.name, "unreachable", f"cannot connect to {where}: {exc.strerror or exc}",
                hint="check the network route to the host",
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handshake(self, sock: Any, target: Target) -> paramiko.Transport:
        timeout = self.spec.connect_timeout
        where = f"{target.hostname}:{target.port}"
        known = self._known_keys(target)
        try:
            client = paramiko.Transport(sock)
            client.banner_timeout = timeout
            client.handshake_timeout = timeout
            client.auth_timeout = timeout
            client.packetizer.REKEY_BYTES = REKEY_LIMIT  # type: ignore[attr-defined]
            client.packetizer.REKEY_PACKETS = REKEY_LIMIT  # type: ignore[attr-defined]
            options = client.get_security_options()
            ciphers = tuple(options.ciphers)
            options.ciphers = tuple(c for c in ciphers if "gcm" in c) + tuple(
                c for c in ciphers if "gcm" not in c
            )
            if known:  # ask for a key type we can check first
                types = tuple(options.key_types)
                options.key_types = tuple(t for t in types if t in known) + tuple(
                    t for t in types if t not in known
                )
            client.start_client(timeout=timeout)
            if not client.is_active() or not client.initial_kex_done:  # start_client timed out
                client.close()
                raise TimeoutError("key exchange timed out")
        except _NET_ERRORS as exc:
            text = str(exc) or type(exc).__name__
            if "banner" in text or "timed out" in text or isinstance(exc, TimeoutError):
                raise _unreachable(
                    self.name, "timeout", f"no SSH answer from {where} within {timeout:g} s "
                    f"({text})", hint="is an SSH server listening on that port?",
                ) from None
            raise _unreachable(
                self.name, "unreachable", f"SSH handshake with {where} failed: {text}",
                hint="is an SSH server listening on that port?",
            ) from None
        self._check_host_key(client, target, known)
        self.auth_method = self._authenticate(client, target)
        client.set_keepalive(KEEPALIVE_S)
        return client

    # ------------------------------------------------------------------ host keys

    def _known_keys(self, target: Target) -> dict[str, paramiko.PKey]:
        found: dict[str, paramiko.PKey] = {}
        for path in target.known_hosts_files:
            if not os.path.exists(path):
                continue
            try:
                keys = paramiko.HostKeys(path).lookup(target.known_hosts_name)
            except (OSError, paramiko.SSHException, ValueError) as exc:
                log.warning("%s: cannot read known_hosts file %s: %s", self.name, path, exc)
                continue
            if keys:
                for key_type in keys.keys():
                    found.setdefault(key_type, keys[key_type])
        return found

    def _check_host_key(
        self, client: paramiko.Transport, target: Target, known: dict[str, paramiko.PKey]
    ) -> None:
        key = client.get_remote_server_key()
        name = target.known_hosts_name
        files = ", ".join(p for p in target.known_hosts_files if os.path.exists(p)) or (
            target.known_hosts_files[0])
        expected = known.get(key.get_name())
        if expected is not None and expected.asbytes() == key.asbytes():
            return
        if expected is not None:
            err = HostKeyError(
                self.name,
                f"HOST KEY MISMATCH for {name}: it offered {key.get_name()} {fingerprint(key)}, "
                f"known_hosts ({files}) has {fingerprint(expected)}. Someone may be "
                "intercepting the connection (man in the middle), or the host was reinstalled",
                hint=f"if the change is expected, remove the stale line with "
                f"`ssh-keygen -R '{name}' -f {target.known_hosts_files[0]}` and reconnect",
            )
            err.reason = "host key mismatch"
            raise err
        if self.spec.accept_unknown_host_key:
            log.warning(
                "%s: accepting unknown host key %s %s for %s (acceptUnknownHostKey: true; "
                "not saved to known_hosts)", self.name, key.get_name(), fingerprint(key), name,
            )
            return
        err = HostKeyError(
            self.name,
            f"unknown host key for {name} ({key.get_name()} {fingerprint(key)}): not in {files}",
            hint=f"verify it and add it with `ssh-keyscan -p {target.port} {target.hostname} "
            f">> ~/.ssh/known_hosts`, or set acceptUnknownHostKey: true",
        )
        err.reason = "unknown host key"
        raise err

    # ------------------------------------------------------------------ authentication

    def _authenticate(self, client: paramiko.Transport, target: Target) -> str:
        tried: list[str] = []
        allowed: list[str] | None = None
        user = target.user

        def attempt(label: str, fn: Callable[[], Any]) -> bool:
            nonlocal allowed
            tried.append(label)
            try:
                fn()
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                return False
            except paramiko.AuthenticationException:
                return False
            except _NET_ERRORS as exc:
                raise _unreachable(
                    self.name, "connection lost", f"connection dropped during login: {exc}"
                ) from None
            return client.is_authenticated()

        passphrase = self._secret(self.spec.passphrase_env, "passphraseEnv")
        for path in target.identity_files:
            if not os.path.exists(path):
                if self.spec.identity_file:
                    raise AuthenticationFailed(
                        self.name, f"identity file {path} does not exist",
                        hint="fix identityFile in machines.yml",
                    )
                continue
            key = self._load_key(path, passphrase, required=bool(self.spec.identity_file))
            if key is not None and attempt(f"publickey ({path})",
                                           functools.partial(client.auth_publickey, user, key)):
                return f"publickey ({path})"
        if self.spec.use_agent and (allowed is None or "publickey" in allowed):
            try:
                agent_keys = paramiko.Agent().get_keys()
            except _NET_ERRORS:
                agent_keys = ()
            if not agent_keys:
                tried.append("ssh-agent (no keys)")
            for key in agent_keys:
                if attempt("ssh-agent", functools.partial(client.auth_publickey, user, key)):
                    return "ssh-agent"
        if not target.identity_files and (allowed is None or "publickey" in allowed):
            for name in DEFAULT_KEYS:
                path = os.path.expanduser(f"~/.ssh/{name}")
                key = self._load_key(path, passphrase, required=False) if os.path.exists(
                    path) else None
                if key is not None and attempt(f"publickey ({path})",
                                               functools.partial(client.auth_publickey, user, key)):
                    return f"publickey ({path})"
        if self.spec.password_env:
            password = self._secret(self.spec.password_env, "passwordEnv")
            if password is None:
                tried.append(f"password (${self.spec.password_env} is not set)")
            elif attempt(f"password (from ${self.spec.password_env})",
                         lambda: client.auth_password(user, password)):
                return "password"
            elif allowed is not None and "keyboard-interactive" in allowed and attempt(
                "keyboard-interactive",
                lambda: client.auth_interactive(user, lambda _t, _i, prompts: [password] * len(
                    prompts)),
            ):
                return "keyboard-interactive"
        accepts = f"; the server accepts: {','.join(allowed)}" if allowed else ""
        raise AuthenticationFailed(
            self.name,
            f"authentication failed as {user}@{target.hostname}:{target.port}; tried: "
            f"{', '.join(tried) or 'nothing (no key, agent or password configured)'}{accepts}",
            hint="check identityFile, that the variable named by passwordEnv is exported, "
            f"or install your key with `ssh-copy-id -p {target.port} {user}@{target.hostname}`",
        )

    def _secret(self, env_name: str | None, key: str) -> str | None:
        if not env_name:
            return None
        value = os.environ.get(env_name)
        if value is None:
            log.warning("%s: %s names $%s, which is not set", self.name, key, env_name)
        return value

    def _load_key(self, path: str, passphrase: str | None, *, required: bool) -> Any:
        try:
            secret = None if passphrase is None else passphrase.encode()
            return paramiko.PKey.from_path(path, secret)
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            # paramiko 5 lets cryptography's TypeError through for an encrypted key.
            if passphrase is not None and not isinstance(exc, paramiko.PasswordRequiredException):
                raise AuthenticationFailed(self.name, f"identity file {path} cannot be read "
                                           f"({exc})") from None
            problem = "is encrypted and no passphrase was given"
            hint = "set passphraseEnv to the name of a variable holding its passphrase"
        except (paramiko.SSHException, OSError, ValueError) as exc:
            problem = f"cannot be read ({exc})"
            hint = "check the file and the passphrase in the variable named by passphraseEnv"
        if not required:
            log.debug("%s: skipping key %s: %s", self.name, path, problem)
            return None
        raise AuthenticationFailed(self.name, f"identity file {path} {problem}", hint=hint)

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
        except _NET_ERRORS as exc:
            self._close_quietly()
            raise _unreachable(self.name, "connection lost", f"connection lost: {exc}") from None

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
                        _sendall(channel, stdin)
                    channel.shutdown_write()
                except _NET_ERRORS as exc:
                    errors.append(exc)

            def drain_stderr() -> None:
                try:
                    while chunk := channel.recv_stderr(65536):
                        stderr.append(chunk)
                except _NET_ERRORS as exc:
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
            raise _unreachable(
                self.name, "timeout", f"command timed out after {timeout:g} s: {command[:200]}"
            ) from None
        except _NET_ERRORS as exc:
            self._close_quietly()
            raise _unreachable(self.name, "connection lost", f"connection lost: {exc}") from None
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
        except _NET_ERRORS as exc:
            channel.close()
            raise _unreachable(self.name, "connection lost", f"cannot start: {exc}") from None
        return SSHChannel(channel, self.name)

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a dead transport may raise anything
                pass
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None


class SSHChannel(AgentChannel):
    """An exec channel's stdin/stdout as a line pipe; stderr is drained into a tail buffer."""

    STDERR_KEEP = 64 * 1024
    SEND_TIMEOUT = 600.0

    def __init__(self, channel: paramiko.Channel, host: str) -> None:
        self.channel = channel
        self.host = host
        self._buffer = bytearray()
        self._scanned = 0
        self._stderr = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.channel.settimeout(self.SEND_TIMEOUT)
            _sendall(self.channel, data)
        except _NET_ERRORS as exc:
            raise _unreachable(self.host, "connection lost", f"agent channel closed: {exc}"
                               ) from None

    def _drain_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            self._stderr += self.channel.recv_stderr(65536)
        if len(self._stderr) > self.STDERR_KEEP:
            del self._stderr[: -self.STDERR_KEEP]

    def readline(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                end = self._buffer.find(b"\n", self._scanned)
                if end >= 0:
                    line = bytes(self._buffer[: end + 1])
                    del self._buffer[: end + 1]
                    self._scanned = 0
                    return line
                self._scanned = len(self._buffer)
                self._drain_stderr()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _unreachable(self.host, "timeout",
                                       f"no answer from the agent in {timeout:g} s")
                self.channel.settimeout(min(left, 1.0))
                try:
                    chunk = self.channel.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    self._drain_stderr()
                    raise _unreachable(self.host, "connection lost", "the agent channel closed")
                self._buffer += chunk
        except _NET_ERRORS as exc:
            raise _unreachable(self.host, "connection lost", f"agent channel failed: {exc}"
                               ) from None

    def stderr_text(self) -> str:
        try:
            self._drain_stderr()
        except _NET_ERRORS:
            pass
        return self._stderr.decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.channel.shutdown_write()
        except _NET_ERRORS:
            pass
        try:
            self.channel.close()
        except _NET_ERRORS:
            pass
