"""The seam between the controller and wherever trials run.

A :class:`Backend` places, launches, polls and kills trials and reports what happened; it
never decides (whether a trial is lost, retried or stopped is the controller's call). A
trial on a backend is an opaque :class:`TrialHandle`: a process group on a host for the
SSH/local host pool, a job id for a batch scheduler. The controller never looks inside.

Backends are asynchronous: requests (:meth:`Backend.launch`, :meth:`Backend.tick`,
:meth:`Backend.kill`...) return at once; their outcomes come back as items on the
controller's inbox (``sink``), which the controller hands back to the backend that made
them (:meth:`Backend.handle`, on the controller's thread) to get typed :class:`Report`s.
Every method except the work a backend does on its own threads runs on the controller's
thread, so a backend needs no locks of its own. Several backends may serve one
experiment: host names are unique across them, and :attr:`Envelope.backend` routes items.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotetune.model import EventLevel, HostState, Placement, TrialRecord

__all__ = [  # the interface, as remotetune.backends offers it
    "TIMEOUT_REASON", "Backend", "Envelope", "ExitInfo", "LaunchResult", "LaunchSpec",
    "OpenSpec", "PlaceResult", "PollRequest", "Report", "ReportKind", "RunState", "Sink",
    "TrialHandle", "TrialPoll",
]


class RunState(str, enum.Enum):
    """What a backend knows of a launched trial at one poll."""

    QUEUED = "QUEUED"  # accepted, not started yet (a batch job waiting; files written)
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # ended with an exit record (``TrialPoll.exit``)
    VANISHED = "VANISHED"  # it started, and is gone without an exit record
    UNKNOWN = "UNKNOWN"  # no trace of it: the launch never reached the backend
    LOST = "LOST"  # its node failed or it was preempted: re-queued like a lost host's trial


class ReportKind(str, enum.Enum):
    LAUNCHED = "LAUNCHED"
    LAUNCH_FAILED = "LAUNCH_FAILED"
    LAUNCH_LOST = "LAUNCH_LOST"  # the link broke mid-launch: it may or may not have started
    LAUNCH_REFUSED = "LAUNCH_REFUSED"  # not started, nothing wrong: wait and place it again
    POLLED = "POLLED"
    TAILS = "TAILS"
    KILLED = "KILLED"
    HOST_READY = "HOST_READY"
    HOST_DOWN = "HOST_DOWN"
    HOST_EVENT = "HOST_EVENT"  # something to tell the user about a host
    NOTHING = "NOTHING"  # handled inside the backend (a GPU reading, a failed connect...)


@dataclass(frozen=True)
class TrialHandle:
    """A trial on a backend. ``ref`` is the backend's own id (a pgid, a job id), opaque."""

    trial_id: str
    host: str
    ref: int | None


TIMEOUT_REASON = "timeout"  # ExitInfo.reason: the backend ended it past maxTrialDuration


@dataclass(frozen=True)
class ExitInfo:
    code: int | None
    signal: int | None = None
    ended: float | None = None
    reason: str | None = None  # as the backend wrote it ("timeout", "setup failed"...)
    cancelled: bool = False  # stopped from outside (scancel by a person): USER_CANCELED

    @property
    def timed_out(self) -> bool:
        return self.reason == TIMEOUT_REASON


@dataclass(frozen=True)
class LaunchResult:
    handle: TrialHandle
    started_at: float | None  # None: accepted, not started yet (a job waiting in a queue)
    pid: int | None = None  # what `remotetune show` prints as the trial's id on its host


@dataclass(frozen=True)
class TrialPoll:
    """New metric lines of one trial since ``offset`` was last reported, and its state."""

    trial_id: str
    lines: tuple[str, ...]
    offset: int
    state: RunState
    exit: ExitInfo | None = None
    started: LaunchResult | None = None  # when the start became known at this poll
    reason: str | None = None  # why it is QUEUED, or a backend's note


@dataclass(frozen=True)
class PollRequest:
    handle: TrialHandle
    offset: int


@dataclass(frozen=True)
class PlaceResult:
    placement: Placement | None
    reason: str | None = None  # why not now, when at hand (else Backend.why_not, on demand)
    ever: bool = True  # False: this backend can never run it (bad input)
    notice: str | None = None  # to tell the user once (a busy GPU holds the trial back)


@dataclass(frozen=True)
class LaunchSpec:
    """What a backend needs to start one trial."""

    trial: TrialRecord
    placement: Placement
    trial_command: str
    max_duration: float | None
    kill_grace: float
    gpu_scheduling: bool


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    host: str
    trial_id: str | None = None
    launch: LaunchResult | None = None
    polls: tuple[TrialPoll, ...] = ()
    stdout: str = ""
    stderr: str = ""
    message: str | None = None
    level: EventLevel = EventLevel.INFO


@dataclass(frozen=True)
class Envelope:
    """One item on the controller's inbox: a backend's raw outcome, or a wake-up."""

    backend: str | None  # None: a wake-up (stop requested)
    payload: Any = None


Sink = Callable[[Envelope], None]


@dataclass(frozen=True)
class OpenSpec:
    experiment_id: str
    manifest: Any  # remotetune.sync.Manifest: the code to ship
    objects_dir: Path


class Backend(abc.ABC):
    """Where trials run. See the module docstring for the threading contract."""

    name: str

    @abc.abstractmethod
    def hosts(self) -> tuple[str, ...]:
        """The hosts this backend runs trials on (unique names across backends)."""

    def warm(self) -> None:  # noqa: B027 (optional hook)
        """Start what needs no experiment yet (the host pool: its SSH connections and
        agents), while the caller opens the store and freezes the code; :meth:`open` goes
        on from there. A failure here is reported by :meth:`open`'s connect, as its own."""

    @abc.abstractmethod
    def open(self, spec: OpenSpec, sink: Sink) -> None:
        """Start connecting every host; outcomes arrive on ``sink``."""

    @abc.abstractmethod
    def connecting(self) -> bool:
        """True while a first connection attempt is still under way."""

    def connect_timeout(self) -> float:
        """How long a first connection attempt may take (the controller waits this + 60 s)."""
        return 0.0

    @abc.abstractmethod
    def unusable(self) -> tuple[tuple[str, str], ...]:
        """``(host, why)`` for each host that cannot be used now (empty when all are ready)."""

    def misconfigured(self) -> tuple[tuple[str, str], ...]:
        """``(host, why)`` for each host its configuration does not fit (a ``gpuIndices``
        entry the host lacks): a new experiment does not start. Default: none."""
        return ()

    @abc.abstractmethod
    def impossible(self) -> str | None:
        """Why no trial could ever be placed here (fail fast), or ``None``."""

    @abc.abstractmethod
    def place(self, trial_id: str) -> PlaceResult:
        """Reserve room for a trial now, or say why not (and whether ever)."""

    def why_not(self) -> str | None:
        """Why the next waiting trial cannot be placed now, in full, for a refusal whose
        ``PlaceResult.reason`` is None. Asked for only when someone looks (the live view),
        never on every loop turn. Default: nothing to add."""
        return None

    @abc.abstractmethod
    def reattach(self, trial: TrialRecord) -> TrialHandle | None:
        """A resumed RUNNING trial: take its room again and give its handle."""

    @abc.abstractmethod
    def release(self, trial_id: str) -> None:
        """Free the room a trial held (it ended, was lost or killed)."""

    @abc.abstractmethod
    def trial_dir(self, trial_id: str, host: str) -> str | None:
        """Where a placed trial's files will be, for people (``None``: not known)."""

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> None:
        """Start a placed trial. Outcome: LAUNCHED, LAUNCH_FAILED, LAUNCH_LOST or
        LAUNCH_REFUSED (its resources are taken after all, e.g. a GPU another experiment
        reserved: the trial waits again; ``message`` says why)."""

    @abc.abstractmethod
    def tick(self, now: float, running: Sequence[PollRequest]) -> None:
        """Periodic work: poll the running trials (batched per host), refresh, reconnect."""

    def wait_hint(self, now: float) -> float | None:
        """How long the controller may block on its inbox before the next ``tick``.

        ``None`` (the default): the experiment's ``pollInterval``, for a backend whose
        ``tick`` polls. A backend whose news reaches the inbox on its own answers longer.
        """
        return None

    @abc.abstractmethod
    def handle(self, payload: Any, now: float) -> Sequence[Report]:
        """Turn one of this backend's inbox items into typed reports."""

    @abc.abstractmethod
    def kill(self, handle: TrialHandle, grace: float) -> bool:
        """TERM now, KILL after ``grace``. False when the host is down (nothing sent)."""

    @abc.abstractmethod
    def kill_all(self, handles: Sequence[TrialHandle], grace: float) -> int:
        """Kill and wait, batched per host; returns how many KILLED reports to wait for."""

    @abc.abstractmethod
    def fetch_tails(self, trial_id: str, host: str) -> None:
        """Fetch an ended trial's stdout/stderr tails (TAILS report)."""

    @abc.abstractmethod
    def host_states(self, experiment_id: str, now: float, *, due_only: bool) -> list[HostState]:
        """The hosts' states for the store and view (only those due when ``due_only``)."""

    @abc.abstractmethod
    def host_state(self, experiment_id: str, host: str, now: float) -> HostState:
        """One host's state now."""

    @abc.abstractmethod
    def down_since(self, host: str) -> float | None:
        """When the host became unreachable, or ``None`` while it is not."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the backend's threads and connections (trials keep running). Closing again
        does nothing."""

    def set_concurrency(self, concurrency: int) -> None:  # noqa: B027 (optional hook)
        """``trialConcurrency`` changed (``remotetune update``): a backend whose default
        capacity follows it adjusts. Nothing by default."""
