"""Opening an SSH connection: fabric's ``Connection`` resolves the ssh config file (alias,
``HostName``, ``Port``, ``User``, ``IdentityFile``) and builds the gateway chain (``ProxyJump``
hops as Connections, ``ProxyCommand``); everything goes to paramiko through
``connect_kwargs``. What fabric does not do, and this module adds to every hop:

- our own TCP socket: TCP_NODELAY (48 ms per exec instead of 4 ms), quick ACKs on Linux
  (:class:`QuickAckSocket`: the first channel opens 45 ms sooner) and the mapping of
  connect failures to ``name resolution`` / ``connection refused`` / ``timeout``;
- a transport factory raising paramiko's rekey limits to 2**40 (its rekey after 512 MiB
  fails on busy connections) and preferring AES-GCM;
- host key checking (fabric's default is to accept any key): the known_hosts files or
  ``knownHostsFile``, an unknown key refused unless ``acceptUnknownHostKey: true`` (or
  recorded, with ``accept_new``: ``remotetune check --accept-new``), a changed key always
  refused, jump hosts included;
- our keys and passphrases (``passphraseEnv``), and errors that say what was tried.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import Any

import paramiko
from fabric import Config, Connection

from remotetune.errors import AuthenticationFailed, ConfigError, RemotetuneError
from remotetune.model import HostSpec
from remotetune.transport._ssh_channel import NET_ERRORS, unreachable
from remotetune.transport._ssh_keys import (
    Credentials,
    HostKeyPolicy,
    Target,
    credentials,
    load_known_hosts,
    mismatch_error,
)
from remotetune.transport.base import NewHostKey

REKEY_LIMIT = 2**40
KEEPALIVE_S = 15


def _ssh_config(spec: HostSpec) -> paramiko.SSHConfig:
    path = os.path.expanduser(spec.ssh_config_file or "~/.ssh/config")
    if spec.ssh_config_file and not os.path.exists(path):
        raise ConfigError(
            f"ssh config file {path} does not exist", key="sshConfigFile",
            hint="fix the path or remove the key to use ~/.ssh/config",
        )
    if not os.path.exists(path):
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(path)
    except Exception as exc:  # noqa: BLE001 - paramiko raises several types here
        raise ConfigError(f"cannot read ssh config: {exc}", file=path) from None


def connection(spec: HostSpec) -> Connection:
    """The fabric Connection for ``spec`` (no I/O). machines.yml values win over the file.

    fabric resolves each host's ssh config (alias, HostName, Port, User, IdentityFile,
    ProxyCommand) and opens gateways. The ProxyJump chain is built here, in OpenSSH's order
    (``ProxyJump j1,j2``: j1 first, j2 through j1, the target through j2): fabric 3.2 builds
    it the other way round (the target through j1, j1 through j2), which reaches a different
    host or none at all once there are two hops (tests/test_ssh_transport.py shows both).
    """
    config = Config(ssh_config=_ssh_config(spec), lazy=True)
    jump = str(config.base_ssh_config.lookup(spec.host).get("proxyjump", "")).strip()
    gateway: Connection | bool | None = None
    if jump.lower() == "none":
        gateway = False
    for hop in (h.strip() for h in jump.split(",") if jump.lower() != "none"):
        if hop:
            gateway = Connection(hop, config=config.clone(), gateway=gateway or None)
    cxn = Connection(spec.host, user=spec.user, port=spec.port, config=config, gateway=gateway)
    if str(cxn.ssh_config.get("proxycommand", "")).lower() == "none":
        cxn.gateway = None
    return cxn


def hops(cxn: Connection) -> list[Connection]:
    """The ProxyJump hops fabric built, in the order they are opened (first hop first)."""
    chain = []
    hop = cxn.gateway
    while isinstance(hop, Connection):
        chain.append(hop)
        hop = hop.gateway
    return chain[::-1]


def target_of(spec: HostSpec, cxn: Connection) -> Target:
    options = cxn.ssh_config
    if spec.identity_file:
        identity: tuple[str, ...] = (os.path.expanduser(spec.identity_file),)
    else:
        identity = tuple(os.path.expanduser(p) for p in options.get("identityfile", ()))
    if spec.known_hosts_file:
        known: tuple[str, ...] = (os.path.expanduser(spec.known_hosts_file),)
    else:
        configured = options.get("userknownhostsfile", "~/.ssh/known_hosts").split()
        known = tuple(os.path.expanduser(p) for p in configured) + ("/etc/ssh/ssh_known_hosts",)
    jump = cxn.gateway.original_host if isinstance(cxn.gateway, Connection) else None
    return Target(
        hostname=cxn.host,
        port=int(cxn.port),
        user=cxn.user,
        identity_files=identity,
        known_hosts_files=known,
        proxy_jump=options.get("proxyjump") if jump else None,
        proxy_command=cxn.gateway if isinstance(cxn.gateway, str) else None,
    )


def _tuned_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    transport.packetizer.REKEY_BYTES = REKEY_LIMIT  # type: ignore[attr-defined]
    transport.packetizer.REKEY_PACKETS = REKEY_LIMIT  # type: ignore[attr-defined]
    options = transport.get_security_options()
    ciphers = tuple(options.ciphers)
    options.ciphers = tuple(c for c in ciphers if "gcm" in c) + tuple(
        c for c in ciphers if "gcm" not in c
    )
    return transport


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once: Linux's ``TCP_QUICKACK``,
    set again after every read, since the kernel leaves quick-ack mode by itself.

    sshd sets ``TCP_NODELAY`` only for sessions with a terminal, so on ours Nagle holds a
    small packet of its until the one before is acknowledged. Right after authentication it
    sends a global request and debug messages that need no answer; the client had nothing
    to send back, its ACK waited for the delayed-ACK timer (40 ms), and with it the first
    channel's confirmation: 45-50 ms of every connect, on loopback as on a real network.
    """

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        try:
            self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # type: ignore[arg-type]
        except OSError:
            pass
        return data


def _quick_ack(sock: socket.socket, timeout: float) -> socket.socket:
    if _QUICKACK is None:
        return sock
    quick = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


def tcp_socket(name: str, hostname: str, port: int, timeout: float) -> socket.socket:
    where = f"{hostname}:{port}"
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except socket.gaierror as exc:
        raise unreachable(
            name, "name resolution", f"cannot resolve host name {hostname!r} ({exc.strerror})",
            hint="check `host:` in machines.yml, DNS or ~/.ssh/config",
        ) from None
    except ConnectionRefusedError:
        raise unreachable(
            name, "connection refused", f"connection refused by {where}",
            hint="is sshd running there, and is `port:` right?",
        ) from None
    except TimeoutError:
        raise unreachable(
            name, "timeout", f"no answer from {where} within {timeout:g} s",
            hint="check the address, a firewall or VPN, or raise connectTimeout",
        ) from None
    except OSError as exc:
        raise unreachable(
            name, "unreachable", f"cannot connect to {where}: {exc.strerror or exc}",
            hint="check the network route to the host",
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _quick_ack(sock, timeout)


def open_chain(spec: HostSpec, cxn: Connection, *, accept_new: bool = False,
               recorded: list[NewHostKey] | None = None) -> str:
    """Open every hop, then the target; return how the target authenticated.

    ``accept_new``: unknown host keys (of the hops too) are recorded in known_hosts and
    listed in ``recorded`` (:class:`HostKeyPolicy`)."""
    for hop in hops(cxn):
        hop_spec = replace(spec, name=f"{spec.name} (jump {hop.original_host})",
                           host=hop.original_host, port=int(hop.port), user=hop.user,
                           password_env=None)
        open_one(hop_spec, hop, with_password=False, accept_new=accept_new, recorded=recorded)
    return open_one(spec, cxn, accept_new=accept_new, recorded=recorded)


def open_one(spec: HostSpec, cxn: Connection, *, with_password: bool = True,
             accept_new: bool = False, recorded: list[NewHostKey] | None = None) -> str:
    """Open one hop through fabric with our socket, transport, host key policy and keys."""
    target = target_of(spec, cxn)
    creds = credentials(spec, target, with_password=with_password)
    load_known_hosts(spec.name, target, cxn.client.get_host_keys())
    cxn.client.set_missing_host_key_policy(
        HostKeyPolicy(spec, target, accept_new=accept_new, recorded=recorded))
    timeout = spec.connect_timeout
    # paramiko's start_client returns silently when its own timeout passes first: give the
    # banner and auth timeouts the first word, "No existing session" is a timeout below.
    kwargs: dict[str, Any] = dict(
        creds.connect_kwargs(spec), timeout=2 * timeout, banner_timeout=timeout,
        auth_timeout=timeout, channel_timeout=timeout, transport_factory=_tuned_transport,
    )
    if not cxn.gateway:
        kwargs["sock"] = tcp_socket(spec.name, target.hostname, target.port, timeout)
    cxn.connect_kwargs = kwargs
    cxn.connect_timeout = None  # the timeout is in connect_kwargs (fabric casts to int)
    try:
        cxn.open()
    except RemotetuneError:
        cxn.client.close()
        raise
    except Exception as exc:  # noqa: BLE001 - every paramiko/socket failure gets mapped
        cxn.client.close()
        raise _open_error(spec, target, creds, cxn, exc) from None
    transport = cxn.transport
    transport.set_keepalive(KEEPALIVE_S)
    return creds.method(transport)


def _open_error(
    spec: HostSpec, target: Target, creds: Credentials, cxn: Connection, exc: Exception
) -> RemotetuneError:
    where = f"{target.hostname}:{target.port}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, paramiko.BadHostKeyException):
        return mismatch_error(spec, target, exc.key, exc.expected_key)
    if isinstance(exc, paramiko.AuthenticationException) or (
        "No authentication methods" in text
    ):
        allowed = getattr(exc, "allowed_types", None)
        accepts = f"; the server accepts: {','.join(allowed)}" if allowed else ""
        return AuthenticationFailed(
            spec.name,
            f"authentication failed as {target.user}@{target.hostname}:{target.port}; tried: "
            f"{', '.join(creds.tried) or 'nothing (no key, agent or password configured)'}"
            f"{accepts}",
            hint="check identityFile, that the variable named by passwordEnv is exported, "
            f"or install your key with `ssh-copy-id -p {target.port} "
            f"{target.user}@{target.hostname}`",
        )
    if isinstance(cxn.gateway, Connection) and isinstance(exc, paramiko.ChannelException):
        return unreachable(
            spec.name, "unreachable",
            f"jump host {cxn.gateway.original_host} cannot reach {where}: {text}",
            hint="check HostName/Port and that the jump host allows TCP forwarding",
        )
    if isinstance(cxn.gateway, str):
        return unreachable(spec.name, "unreachable", f"through ProxyCommand "
                           f"{cxn.gateway!r}: {text}", hint="check ProxyCommand in your ssh config")
    if "No existing session" in text:
        text = "key exchange timed out"
    if "banner" in text or "timed out" in text or isinstance(exc, TimeoutError):
        return unreachable(
            spec.name, "timeout", f"no SSH answer from {where} within "
            f"{spec.connect_timeout:g} s ({text})", hint="is an SSH server listening on that port?",
        )
    if isinstance(exc, NET_ERRORS):
        return unreachable(spec.name, "unreachable", f"SSH handshake with {where} failed: {text}",
                           hint="is an SSH server listening on that port?")
    raise exc


def close_chain(cxn: Connection | None) -> None:
    """Close the target's connection and every hop's (fabric closes only its own)."""
    while isinstance(cxn, Connection):
        try:
            cxn.client.close()  # also when fabric no longer counts it as connected
        except Exception:  # noqa: BLE001 - closing a dead transport may raise anything
            pass
        cxn = cxn.gateway
