"""What every transport offers: run a shell command, start a long-lived agent, close.

A transport reaches exactly one host. It does no I/O in its constructor; ``connect()``
opens it (and is called lazily by the other methods). Every failure is raised as a
:class:`remotetune.errors.TransportError` subclass: ``paramiko.SSHException`` and
``OSError`` never escape a transport.

Thread safety: a transport is owned by one host worker thread. ``AgentChannel`` objects
are used by one thread at a time.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from remotetune.model import HostSpec


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class NewHostKey:
    """A host key seen for the first time and recorded (``remotetune check --accept-new``)."""

    host: str  # as known_hosts names it: ``name`` or ``[name]:port``
    key_type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ...
    fingerprint: str  # SHA256:..., as ``ssh-keygen -l`` prints it
    recorded_in: str  # the known_hosts file it was appended to


class AgentChannel(abc.ABC):
    """A byte pipe to a process on the host (its stdin and stdout)."""

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin."""

    @abc.abstractmethod
    def readline(self, timeout: float) -> bytes:
        """One line from the process's stdout, with its trailing newline.

        Raises :class:`remotetune.errors.HostUnreachable` when the channel closed or
        nothing arrived within ``timeout`` seconds.
        """

    @abc.abstractmethod
    def stderr_text(self) -> str:
        """What the process wrote to stderr so far (for error messages)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close stdin (the agent exits on EOF) and release the channel. Idempotent."""


class Transport(abc.ABC):
    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent). Raises TransportError subclasses."""

    @abc.abstractmethod
    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` on the host and wait for it.

        The command string must be built by :mod:`remotetune.commands` (every value
        quoted). A non-zero exit is returned, not raised.
        """

    @abc.abstractmethod
    def start(self, command: str) -> AgentChannel:
        """Start ``command`` on the host with its stdin and stdout connected to us."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection. Processes started detached on the host keep running."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while the connection is believed to be open."""

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
