"""One exception tree, rooted at :class:`RemotetuneError`.

Each error knows how to explain itself: ``str(err)`` is a message a user can act on
(what went wrong, where, and how to fix it).
"""

from __future__ import annotations


class RemotetuneError(Exception):
    """Root of every error remotetune raises on purpose."""

    exit_code = 1


class ConfigError(RemotetuneError):
    """A bad experiment or machines file. Names the file, the key, the line and the fix."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


class ConfigErrors(ConfigError):
    """Several problems found in one pass over a file: each one is a :class:`ConfigError`
    with its own file:line, key and fix, so that one run reports them all. ``file``,
    ``key`` and ``line`` are those of the first problem (where an editor would jump)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(f"{len(self.errors)} problems", file=first.file, key=first.key,
                         line=first.line, hint="fix them all, then run again")

    def __str__(self) -> str:
        lines = "".join(f"\n  {err}" for err in self.errors)
        return f"{self.file or '<config>'}: {self.message} ({self.hint}):{lines}"


class SearchSpaceError(ConfigError):
    """An invalid search space (NNI's JSON format)."""


class TunerError(RemotetuneError):
    """A tuner could not be built or failed to suggest."""


class AssessorError(RemotetuneError):
    """An assessor could not be built or failed to decide."""


class PlacementImpossible(RemotetuneError):
    """No host can ever run a trial of this experiment (bad input: exit 2). Says why."""

    exit_code = 2


class StoreError(RemotetuneError):
    """The SQLite store is missing, locked or from an unknown version."""


class ExperimentNotFound(StoreError):
    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"no experiment {experiment_id!r} in the store (run `remotetune ls` to list them)"
        )


class ExperimentBusy(StoreError):
    """Another live controller runs the experiment (it holds the experiment's lock)."""

    exit_code = 2


class ExperimentNotRunning(StoreError):
    """No controller runs the experiment, so nothing could apply a change to it."""

    exit_code = 2


class TransportError(RemotetuneError):
    """Reaching a host failed. ``host`` names the machine; ``reason`` is a short category."""

    exit_code = 3
    reason = "transport"

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        self.host = host
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.host}: {self.message}{hint}"


class HostUnreachable(TransportError):
    """Name resolution, connection refused, timeout or a dropped connection."""

    reason = "unreachable"


class AuthenticationFailed(TransportError):
    reason = "authentication"


class HostKeyError(TransportError):
    """Unknown or mismatched host key."""

    reason = "host key"


class RemoteSetupError(TransportError):
    """The host is reachable but unusable: no Python, workdir not writable, disk full."""

    reason = "host setup"


class AgentError(TransportError):
    """The host's agent answered ``ok: false``: the operation failed on the host."""

    reason = "agent"

    def __init__(self, host: str, op: str, message: str, kind: str,
                 details: dict | None = None) -> None:
        self.op = op
        self.kind = kind
        self.details = details or {}  # what the agent added (GpuReserved: gpu, holders)
        self.detail = message  # the agent's own words
        super().__init__(host, f"{op} failed on the host: {message}")


class SyncError(RemotetuneError):
    """The trial code could not be sent: :class:`LocalFilesError` or :class:`SyncProtocolError`."""


class LocalFilesError(SyncError):
    """A local file or directory (the trial code, the object store) could not be used.

    ``path`` names the file; no host is involved, so this is not a :class:`TransportError`.
    """

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        self.path = path
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.path}: {self.message}{hint}"


class SyncProtocolError(TransportError, SyncError):
    """A host answered the code sync with something it should not have."""

    reason = "sync"


class SlurmError(TransportError):
    """A Slurm command on a cluster's login node failed (sbatch refused a job, squeue or
    scancel did not answer)."""

    reason = "slurm"
