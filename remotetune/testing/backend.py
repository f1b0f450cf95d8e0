"""A fake backend and a fake clock: drive the controller's loop in-process, with no sleeps.

Trials "run" in fake time: each gets a :class:`FakeRun` (from ``behaviour``) saying how long
it runs, what it reports and how it exits. The clock moves only when the controller waits
on an empty inbox, by the time it asked to wait, so a whole experiment takes milliseconds.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from remotetune.backends import (
    Backend,
    Envelope,
    ExitInfo,
    LaunchResult,
    LaunchSpec,
    OpenSpec,
    PlaceResult,
    PollRequest,
    Report,
    ReportKind,
    RunState,
    Sink,
    TrialHandle,
    TrialPoll,
)
from remotetune.model import EventLevel, HostState, Placement, TrialRecord


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def wait(self, inbox: queue.Queue[Envelope], timeout: float) -> Envelope | None:
        try:
            return inbox.get_nowait()
        except queue.Empty:
            self.time += max(timeout, 1e-3)
            return None


@dataclass(frozen=True)
class FakeRun:
    duration: float = 1.0
    code: int = 0
    intermediate: tuple[float, ...] = ()  # reported evenly over the run
    final: float | None = 0.5


@dataclass
class _Live:
    handle: TrialHandle
    run: FakeRun
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    killed: bool = False


def _lines(run: FakeRun, started: float) -> list[tuple[float, str]]:
    out = []
    step = run.duration / (len(run.intermediate) + 1)
    for n, value in enumerate(run.intermediate):
        out.append((started + step * (n + 1), f'{{"type": "PERIODICAL", "value": {value}}}'))
    if run.final is not None:
        out.append((started + run.duration, f'{{"type": "FINAL", "value": {run.final}}}'))
    return out


class FakeBackend(Backend):
    """Hosts with ``slots`` each; every trial behaves as ``behaviour(trial)`` says."""

    def __init__(self, slots: dict[str, int], behaviour: Callable[[TrialRecord], FakeRun],
                 clock: FakeClock, name: str = "fake", poll_interval: float = 0.5) -> None:
        self.name = name
        self.poll_interval = poll_interval
        self._next_poll = 0.0
        self._slots = dict(slots)
        self.behaviour = behaviour
        self.clock = clock
        self.placed: dict[str, str] = {}  # trial id -> host
        self.live: dict[str, _Live] = {}
        self.down: dict[str, float] = {}
        self.kills: list[str] = []  # trial ids, one entry per kill sent
        self.launches: list[str] = []
        self.max_running = 0
        self.at: list[tuple[float, Callable[[], None]]] = []  # (time, action) for tests
        self._sink: Sink | None = None
        self._next_ref = 100

    # --- test helpers ---------------------------------------------------------------

    def running(self) -> int:
        return sum(1 for live in self.live.values() if not live.killed
                   and self.clock.now() < live.started + live.run.duration)

    def set_down(self, host: str) -> None:
        self.down[host] = self.clock.now()
        self._report(Report(ReportKind.HOST_DOWN, host, message=f"{host} unreachable",
                            level=EventLevel.WARNING))

    def set_up(self, host: str) -> None:
        self.down.pop(host, None)
        self._report(Report(ReportKind.HOST_READY, host, message=f"{host} back"))

    def _report(self, report: Report) -> None:
        assert self._sink is not None
        self._sink(Envelope(self.name, report))

    # --- Backend ------------------------------------------------------------------

    def hosts(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def open(self, spec: OpenSpec, sink: Sink) -> None:
        self._sink = sink
        for host in self._slots:
            self._report(Report(ReportKind.HOST_READY, host, message=f"{host} ready"))

    def connecting(self) -> bool:
        return False

    def unusable(self) -> tuple[tuple[str, str], ...]:
        return tuple((h, "down") for h in self.down)

    def impossible(self) -> str | None:
        return None if any(self._slots.values()) else "no host has any trial slot"

    def place(self, trial_id: str) -> PlaceResult:
        for host, slots in self._slots.items():
            used = sum(1 for h in self.placed.values() if h == host)
            if host not in self.down and used < slots:
                self.placed[trial_id] = host
                return PlaceResult(Placement(host))
        return PlaceResult(None, "all slots are busy", self.impossible() is None)

    def reattach(self, trial: TrialRecord) -> TrialHandle | None:
        if trial.host not in self._slots:
            return None
        assert trial.host is not None
        self.placed[trial.id] = trial.host
        return TrialHandle(trial.id, trial.host, trial.pid)

    def release(self, trial_id: str) -> None:
        self.placed.pop(trial_id, None)

    def trial_dir(self, trial_id: str, host: str) -> str | None:
        return f"/fake/{host}/{trial_id}"

    def launch(self, spec: LaunchSpec) -> None:
        now = self.clock.now()
        self._next_ref += 1
        handle = TrialHandle(spec.trial.id, spec.placement.host, self._next_ref)
        run = self.behaviour(spec.trial)
        self.live[spec.trial.id] = _Live(handle, run, now, _lines(run, now))
        self.launches.append(spec.trial.id)
        self.max_running = max(self.max_running, self.running())
        self._report(Report(ReportKind.LAUNCHED, handle.host, spec.trial.id,
                            launch=LaunchResult(handle, now, self._next_ref)))

    def tick(self, now: float, running: Sequence[PollRequest]) -> None:
        for when, action in [a for a in self.at if a[0] <= now]:
            self.at.remove((when, action))
            action()
        if now < self._next_poll:  # like a real host: one poll in flight per interval
            return
        self._next_poll = now + self.poll_interval
        by_host: dict[str, list[TrialPoll]] = {}
        for request in running:
            host = request.handle.host
            live = self.live.get(request.handle.trial_id)
            if host in self.down or live is None or live.killed:
                continue
            by_host.setdefault(host, []).append(self._poll(live, request.offset, now))
        for host, polls in by_host.items():
            self._report(Report(ReportKind.POLLED, host, polls=tuple(polls)))

    def _poll(self, live: _Live, offset: int, now: float) -> TrialPoll:
        due = [line for t, line in live.lines if t <= now]
        new = tuple(due[offset:])
        trial_id = live.handle.trial_id
        end = live.started + live.run.duration
        if now >= end:
            exit_info = ExitInfo(live.run.code, None, end, None)
            return TrialPoll(trial_id, new, len(due), RunState.EXITED, exit_info)
        return TrialPoll(trial_id, new, len(due), RunState.RUNNING)

    def handle(self, payload: Any, now: float) -> list[Report]:
        return [payload]

    def kill(self, handle: TrialHandle, grace: float) -> bool:
        if handle.host in self.down or handle.ref is None:
            return False
        self.kills.append(handle.trial_id)
        if handle.trial_id in self.live:
            self.live[handle.trial_id].killed = True
        self._report(Report(ReportKind.KILLED, handle.host, handle.trial_id))  # answered
        return True

    def kill_all(self, handles: Sequence[TrialHandle], grace: float) -> int:
        hosts = set()
        for handle in handles:
            if self.kill(handle, grace):
                hosts.add(handle.host)
        for host in hosts:
            self._report(Report(ReportKind.KILLED, host))
        return len(hosts)

    def fetch_tails(self, trial_id: str, host: str) -> None:
        self._report(Report(ReportKind.TAILS, host, trial_id, stdout="out", stderr=""))

    def host_state(self, experiment_id: str, host: str, now: float) -> HostState:
        running = sum(1 for h in self.placed.values() if h == host)
        return HostState(experiment_id, host, host not in self.down, slots=self._slots[host],
                         running=running, updated_at=now)

    def host_states(self, experiment_id: str, now: float, *, due_only: bool) -> list[HostState]:
        return [] if due_only else [self.host_state(experiment_id, h, now) for h in self._slots]

    def down_since(self, host: str) -> float | None:
        return self.down.get(host)

    def close(self) -> None:
        pass
