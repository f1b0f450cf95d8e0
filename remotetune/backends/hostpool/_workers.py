"""One worker thread per host, so a slow or dead host never stalls the others.

The host pool backend submits operations (connect, launch, poll, kill, ...) to a host's
worker; each runs on that host's own thread and its outcome comes back as a
:class:`Completion` through ``sink`` (the controller's inbox), to be handed back to the
backend on the controller's thread. Operations of one host run one at a time
(the agent channel is a single pipe); hosts run in parallel. A host's poll is a long poll
that the agent answers when something changed; submitting any other operation wakes it,
so launches, kills and tails never wait behind it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from remotetune.backends.hostpool._session import HostSession
from remotetune.model import GpuInfo, HostSpec

log = logging.getLogger(__name__)


class HostStatus(str, enum.Enum):
    CONNECTING = "CONNECTING"
    READY = "READY"
    UNREACHABLE = "UNREACHABLE"  # keeps its trials for the grace period, reconnects with backoff
    BROKEN = "BROKEN"  # cannot be used (authentication, host key, no Python): needs the user


class Op(str, enum.Enum):
    CONNECT = "connect"
    LAUNCH = "launch"
    POLL = "poll"
    GPUS = "gpus"
    KILL = "kill"
    TAILS = "tails"


@dataclass(frozen=True)
class Completion:
    host: str
    op: Op
    token: Any  # the trial id the operation was for, if any
    result: Any
    error: BaseException | None


@dataclass
class HostWorker:
    spec: HostSpec
    session: HostSession
    sink: Callable[[Completion], None]
    status: HostStatus = HostStatus.CONNECTING
    message: str | None = None
    unreachable_since: float | None = None
    next_connect_at: float = 0.0
    backoff: float = 1.0
    connect_in_flight: bool = False
    poll_in_flight: bool = False
    polling: frozenset[str] = frozenset()  # the trials of the poll in flight
    poll_woken: bool = False  # asked to end early already
    next_poll_at: float = 0.0  # for backends that poll on a clock (Slurm); host pools do not
    tails_due: list[str] = field(default_factory=list)  # trials whose tails to fetch
    launches_due: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    gpu_in_flight: bool = False
    next_gpu_at: float = 0.0
    cordoned_until: float = 0.0  # takes no new trials before this time
    snapshot_dir: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    gpu_error: str | None = None
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _warm: Future[Any] | None = field(default=None, repr=False)  # see warm()

    @property
    def name(self) -> str:
        return self.spec.name

    def _run(self, job: Callable[[], Any]) -> Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"host-{self.name}"
            )
        return self._executor.submit(job)

    def warm(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (the first part of a connect) on this host's thread now, before the
        connect is submitted; the connect takes its outcome (:meth:`warmed`)."""
        self._warm = self._run(fn)

    def warmed(self) -> tuple[bool, Any]:
        """On this host's thread, once: ``(True, result)`` of the warm-up (or what it
        raised, raised again); ``(False, None)`` when there was none. It ran before the
        caller's job, on the same thread, so it is done."""
        future, self._warm = self._warm, None
        if future is None:
            return False, None
        return True, future.result()

    def submit(self, op: Op, fn: Callable[..., Any], *args: Any, token: Any = None) -> None:
        def job() -> None:
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - every outcome goes to the loop
                result, error = None, exc
            self.sink(Completion(self.name, op, token, result, error))

        self._run(job)
        if op is not Op.POLL and self.poll_in_flight:
            self.session.wake()  # a long poll must not hold this operation back

    def mark_unreachable(self, now: float, message: str) -> None:
        if self.status is not HostStatus.UNREACHABLE:
            self.unreachable_since = now
            self.backoff = 1.0
        else:
            self.backoff = min(self.backoff * 2, 30.0)
        self.status = HostStatus.UNREACHABLE
        self.message = message
        self.next_connect_at = now + self.backoff
        self.poll_in_flight = False

    def shutdown(self, wait: bool = False) -> None:
        if self._executor is not None:
            self._executor.submit(self.session.close)
            self.session.wake()  # a long poll in flight answers now; close runs next
            self._executor.shutdown(wait=wait, cancel_futures=not wait)
            self._executor = None
        elif wait:
            self.session.close()
