"""The event loop: the only part that ties tuner, backends, trial book and store together.

It runs in the foreground and returns when the experiment is done. Every state change is
written to the store (through the trial book) before it is acted on, and the controller is
the store's only writer. Trials outlive it: a controller started by ``resume`` reattaches
to them. Backends and the clock are injected (:mod:`remotetune.testing` has fakes).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from remotetune.backends import (
    Backend,
    Envelope,
    OpenSpec,
    PlaceResult,
    ReportKind,
    default_backends,
)
from remotetune.config import ExperimentConfig
from remotetune.controller._assess import AssessDone, AssessFlow
from remotetune.controller._book import TrialBook
from remotetune.controller._clock import Clock, SystemClock
from remotetune.controller._manifest import load_or_freeze
from remotetune.controller._requests import LimitFlow
from remotetune.controller._trials import TrialFlow
from remotetune.errors import (
    ConfigError,
    PlacementImpossible,
    RemotetuneError,
    TransportError,
)
from remotetune.model import (
    EventKind,
    EventLevel,
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    HostSpec,
    HostState,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import Store
from remotetune.tuners import create_tuner

log = logging.getLogger(__name__)


class StopMode(str, enum.Enum):
    KILL = "kill"  # stop the running trials (USER_CANCELED)
    LEAVE = "leave"  # leave them running for `remotetune resume`


@dataclasses.dataclass(frozen=True)
class ControllerOptions:
    home: Path  # REMOTETUNE_HOME: store, object cache, host workdir of the local machine
    seed: int | None = None
    gpu_refresh: float = 10.0  # seconds between nvidia-smi runs per host
    host_state_interval: float = 1.0


@dataclasses.dataclass(frozen=True)
class ViewState:
    """A consistent, immutable copy of what the live view shows."""

    experiment: ExperimentRecord
    trials: tuple[TrialRecord, ...]
    hosts: tuple[HostState, ...]
    events: tuple[EventRecord, ...]
    waiting_reason: str | None


class Controller(AssessFlow, TrialFlow, LimitFlow):
    def __init__(
        self,
        config: ExperimentConfig,
        hosts: Sequence[HostSpec],
        store: Store,
        options: ControllerOptions,
        *,
        experiment: ExperimentRecord | None = None,
        on_event: Callable[[EventRecord], None] | None = None,
        clock: Clock | None = None,
        backends: Sequence[Backend] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.options = options
        self.on_event = on_event
        self.clock: Clock = clock or SystemClock()
        self.inbox: queue.Queue[Envelope] = queue.Queue()
        self.backends = list(backends if backends is not None else default_backends(
            config, hosts, home=options.home, gpu_refresh=options.gpu_refresh,
            host_state_interval=options.host_state_interval))
        self.backend_of: dict[str, Backend] = {}  # host -> its backend
        for backend in self.backends:
            for host in backend.hosts():
                if host in self.backend_of:
                    raise RemotetuneError(f"host {host!r} is served by two backends")
                self.backend_of[host] = backend
        self._by_name = {b.name: b for b in self.backends}
        self.experiment = experiment
        self.book: TrialBook | None = None
        self.events: list[EventRecord] = []
        self.refusals: tuple[tuple[Backend, PlaceResult], ...] = ()
        self._reason_wanted = False  # the view asked why trials wait: word it next turn
        self._reason: str | None = None  # as worded then
        self.stop_mode: StopMode | None = None
        self.tuner_exhausted = False
        self.tuner_waiting = False
        self.tuner: Any = None  # built in _start (its imports take a while)
        self._host_states: dict[str, HostState] = {}
        self._lock = threading.Lock()  # guards what the view thread reads

    # ------------------------------------------------------------------ public

    @property
    def experiment_id(self) -> str:
        assert self.experiment is not None
        return self.experiment.id

    def request_stop(self, mode: StopMode) -> None:
        """Thread- and signal-safe: the loop stops at its next turn."""
        self.stop_mode = mode
        self.inbox.put(Envelope(None))

    def create(self, machines_public: Sequence[dict[str, Any]] = ()) -> ExperimentRecord:
        """Record a new experiment. Its code is checked first (symlinks out of the trial code
        directory are refused unless ``followSymlinks``), so a refusal writes nothing."""
        from remotetune.symlinks import check_symlinks  # imports sync: only when needed

        check_symlinks(self.config.trial_code_directory, follow=self.config.follow_symlinks,
                       file=self.config.file)
        now = self.clock.now()
        record = ExperimentRecord(
            id=self.store.new_experiment_id(),
            name=self.config.name,
            status=ExperimentStatus.RUNNING,
            config=dict(self.config.raw),
            config_file=self.config.file,
            machines=tuple(machines_public),
            tuner=self.config.tuner.name,
            optimize_mode=self.config.optimize_mode,
            max_trial_number=self.config.max_trial_number,
            max_experiment_duration=self.config.max_experiment_duration,
            trial_concurrency=self.config.trial_concurrency,
            created_at=now,
            started_at=now,
        )
        self.store.save_experiment(record)
        self.experiment = record
        return record

    def run(self) -> ExperimentStatus:
        """Run (or resume) until done or stopped. Returns the final experiment status."""
        assert self.experiment is not None, "call create() or pass experiment= to resume"
        try:
            self._start()
            self._loop()
        except RemotetuneError as exc:
            self._finish(ExperimentStatus.FAILED, str(exc))
            raise
        except BaseException as exc:
            self._finish(ExperimentStatus.FAILED, f"controller error: {exc!r}")
            raise
        finally:
            self._assess_close()
            for backend in self.backends:
                backend.close()
        assert self.experiment is not None
        return self.experiment.status

    def view_state(self) -> ViewState:
        """A consistent, immutable copy for the live view's thread. Why trials wait is worded
        on the loop's thread at its next turn after a view asked (:meth:`_word_reason`): the
        copy has the answer to the previous ask, never one computed on every turn."""
        assert self.experiment is not None
        trials = self.book.snapshot() if self.book is not None else ()
        self._reason_wanted = True
        with self._lock:
            reason = self._reason if self.refusals else None
            return ViewState(self.experiment, trials, tuple(self._host_states.values()),
                             tuple(self.events), reason)

    def _word_reason(self) -> None:
        if self._reason_wanted:
            self._reason_wanted = False
            reason = self.waiting_reason()
            with self._lock:
                self._reason = reason

    # ------------------------------------------------------------------ start

    def _start(self) -> None:
        assert self.experiment is not None
        manifest = load_or_freeze(self.store, self.experiment_id, self.config, self.options.home)
        self.book = book = TrialBook(self.store, self.experiment_id, self.config.optimize_mode)
        existing = self.store.trials(self.experiment_id)
        book.load(existing)
        for rec in book.with_status(TrialStatus.RUNNING):
            backend = self.backend_of.get(rec.host or "")
            handle = backend.reattach(rec) if backend is not None else None
            if handle is not None:
                book.handles[rec.id] = handle
        # Connect to every host in parallel (while the tuner is built here: its imports
        # take a while); fail fast on what needs the user.
        spec = OpenSpec(self.experiment_id, manifest, self.options.home / "objects")
        for backend in self.backends:
            backend.open(spec, self.inbox.put)
        self.tuner = self._make_tuner()
        history = self._assess_start(existing)
        if existing:
            self._rerun_canceled()
            told = {r.id: r for r in history}  # early-stopped ones carry the tuner's value
            self.tuner.restore([told.get(t.id, t) for t in book.history()])
            self._event(EventKind.EXPERIMENT, f"resumed with {len(existing)} trials in the store")
        if self.experiment.status is not ExperimentStatus.RUNNING:
            self._save_experiment(status=ExperimentStatus.RUNNING, ended_at=None, message=None)
        self._adopt_limits()
        self._open_requests(self.options.home)
        self._await_connections()
        self._fail_fast(bool(existing))

    def _rerun_canceled(self) -> None:
        """Trials canceled when the experiment was stopped did not use up maxTrialNumber:
        their parameters run again (one new attempt each, queued first), within the limit."""
        book = self._book
        limit = self.config.max_trial_number
        rerun = 0
        for trial in book.canceled_to_rerun():
            if limit is not None and book.counted() >= limit:
                break
            self._new_trial(self.clock.now(), retry_of=trial)
            rerun += 1
        if rerun:
            self._event(EventKind.EXPERIMENT, f"re-running {rerun} trial(s) canceled when "
                        "the experiment was stopped")

    def _make_tuner(self) -> Any:
        class_args = dict(self.config.tuner.class_args)
        if self.options.seed is not None:  # --seed wins over classArgs.seed and `seed`
            class_args.pop("seed", None)
        return create_tuner(
            self.config.tuner.name,
            class_args,
            self.config.search_space,
            code_directory=self.config.tuner.code_directory,
            seed=self.options.seed if self.options.seed is not None else self.config.seed,
        )

    def _await_connections(self) -> None:
        timeouts = [b.connect_timeout() for b in self.backends]
        deadline = self.clock.now() + max(timeouts, default=0.0) + 60
        while any(b.connecting() for b in self.backends):
            item = self.clock.wait(self.inbox, max(0.1, deadline - self.clock.now()))
            if item is None:
                break
            self._handle(item)

    def _fail_fast(self, resumed: bool) -> None:
        misfit = [pair for b in self.backends for pair in b.misconfigured()]
        if misfit and not resumed:  # a resumed one goes on with the hosts that fit
            raise ConfigError("; ".join(f"{host}: {why}" for host, why in misfit),
                              hint="`remotetune check` shows each host's GPUs")
        broken = [pair for b in self.backends for pair in b.unusable()]
        if broken and len(broken) == len(self.backend_of) and not resumed:
            lines = "\n".join(  # a transport error's message already names its host
                f"  {why}" if why.startswith(f"{host}: ") else f"  {host}: {why}"
                for host, why in broken)
            raise TransportError(
                ", ".join(host for host, _ in broken),
                f"cannot use {len(broken)} of {len(self.backend_of)} host(s):\n{lines}",
                hint="fix the machines file, then run again (`remotetune check` tells more)",
            )
        reasons = [b.impossible() for b in self.backends]
        if reasons and all(r is not None for r in reasons):
            raise PlacementImpossible("; ".join(r for r in reasons if r))

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while True:
            now = self.clock.now()
            if self.stop_mode is not None:
                self._stop(self.stop_mode)
                return
            self._take_requests(now)
            self._check_lost_hosts(now)
            self._check_budgets(now)
            self._fill(now)
            self._tick(now)
            self._word_reason()
            if self._done():
                self._finish(ExperimentStatus.DONE, self._done_message())
                return
            item = self.clock.wait(self.inbox, self._wait_for(now))
            if item is None:
                continue
            with self.store.batch():  # one transaction for all that came in this turn
                self._handle(item)
                while True:  # drain what else is ready before the next turn
                    try:
                        self._handle(self.inbox.get_nowait())
                    except queue.Empty:
                        break

    def _wait_for(self, now: float) -> float:
        """How long to block on the inbox: backends with pushed news let it sleep longer."""
        hints = [b.wait_hint(now) for b in self.backends]
        wait = min((self.config.poll_interval if h is None else h for h in hints),
                   default=self.config.poll_interval)
        return min(wait, 0.5)  # change requests are looked at every 0.5 s

    def _handle(self, item: Envelope) -> None:
        if item.backend is None:
            if isinstance(item.payload, AssessDone):
                self._on_assessed(item.payload)
            return  # else a wake-up
        backend = self._by_name[item.backend]
        for report in backend.handle(item.payload, self.clock.now()):
            self._dispatch(report)

    def _tick(self, now: float) -> None:
        for backend in self.backends:
            backend.tick(now, self._poll_requests(backend))
            for state in backend.host_states(self.experiment_id, now, due_only=True):
                self._save_host_state(state)

    def _done(self) -> bool:
        book = self._book
        if book.queue or book.launching or book.finalizing or book.kills_out:
            return False
        if book.count(TrialStatus.RUNNING):
            return False
        return not self._may_launch(self.clock.now())

    def _done_message(self) -> str:
        counts = {s.value: n for s, n in self._book.status_counts().items()}
        return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials"

    def _may_launch(self, now: float) -> bool:
        if self.tuner_exhausted or self.tuner_waiting or self.stop_mode is not None:
            return False
        limit = self.config.max_trial_number
        if limit is not None and self._book.counted() >= limit:
            return False
        return not self._out_of_time(now)

    def _out_of_time(self, now: float) -> bool:
        budget = self.config.max_experiment_duration
        assert self.experiment is not None
        return budget is not None and now - (self.experiment.started_at or now) >= budget

    # ------------------------------------------------------------------ stop

    def _stop(self, mode: StopMode) -> None:
        running = self._book.with_status(TrialStatus.RUNNING)
        if mode is StopMode.KILL:
            self._event(EventKind.EXPERIMENT,
                        f"stopping: killing {len(running)} running trial(s)")
            for trial in running:
                self._book.update(trial.id, status=TrialStatus.USER_CANCELED,
                                  ended_at=self.clock.now(), message="stopped by the user")
            self._cancel_waiting(TrialStatus.USER_CANCELED, "stopped by the user")
            self._kill_and_wait(running)
            self._finish(ExperimentStatus.STOPPED, "stopped by the user; trials killed")
        else:
            self._event(EventKind.EXPERIMENT,
                        f"detaching: {len(running)} trial(s) keep running; "
                        f"`remotetune resume {self.experiment_id}` reattaches")
            self._finish(ExperimentStatus.STOPPED,
                         f"stopped by the user; {len(running)} trial(s) left running")

    def _kill_and_wait(self, trials: Sequence[TrialRecord]) -> None:
        handles = [self._book.handles[t.id] for t in trials if t.id in self._book.handles]
        pending = 0  # a host that is down gets no kill and is not waited for
        for backend in self.backends:
            mine = [h for h in handles if self.backend_of.get(h.host) is backend]
            if mine:
                pending += backend.kill_all(mine, self.config.kill_grace_period)
        deadline = self.clock.now() + self.config.kill_grace_period + 30
        while pending and self.clock.now() < deadline:
            item = self.clock.wait(self.inbox, 0.2)
            if item is None or item.backend is None:
                continue
            reports = self._by_name[item.backend].handle(item.payload, self.clock.now())
            pending -= sum(1 for r in reports if r.kind is ReportKind.KILLED and r.trial_id is None)

    def _finish(self, status: ExperimentStatus, message: str) -> None:
        if self.experiment is None:
            return
        now = self.clock.now()
        self._save_experiment(status=status, ended_at=now, message=message)
        level = EventLevel.ERROR if status is ExperimentStatus.FAILED else EventLevel.INFO
        self._event(EventKind.EXPERIMENT,
                    f"experiment {self.experiment_id} {status.value.lower()}: {message}",
                    level=level)
        for backend in self.backends:
            for state in backend.host_states(self.experiment_id, now, due_only=False):
                self._save_host_state(state)

    # ------------------------------------------------------------------ store helpers

    def _save_experiment(self, **changes: Any) -> None:
        assert self.experiment is not None
        self.experiment = dataclasses.replace(self.experiment, **changes)
        self.store.save_experiment(self.experiment)

    def _save_host_state(self, state: HostState) -> None:
        self.store.save_host_state(state)
        with self._lock:
            self._host_states[state.host] = state

    def _event(self, kind: EventKind, message: str, *, trial_id: str | None = None,
               host: str | None = None, level: EventLevel = EventLevel.INFO) -> None:
        ev = EventRecord(self.experiment_id if self.experiment else "", self.clock.now(),
                         kind.value, message, trial_id=trial_id, host=host, level=level.value)
        if self.experiment is not None:
            self.store.add_event(ev)
        with self._lock:
            self.events.append(ev)
            del self.events[:-50]
        log.debug("%s: %s", kind.value, message)  # users see events in the store and view
        if self.on_event is not None:
            self.on_event(ev)
