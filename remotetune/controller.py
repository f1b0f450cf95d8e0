"""The event loop: the only module that ties tuner, hosts, sessions and store together.

It runs in the foreground and returns when the experiment is done. Every state change is
written to the store before it is acted on, and the controller is the store's only writer.
Trials outlive it: a controller started by ``resume`` reattaches to them from their files.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from remotetune import commands
from remotetune.backends.hostpool._session import HostSession, PollItem, PollResult, launch_files
from remotetune.backends.hostpool._slots import SlotTable
from remotetune.backends.hostpool._workers import Completion, HostStatus, HostWorker
from remotetune.config import ExperimentConfig
from remotetune.errors import (
    AgentError,
    AuthenticationFailed,
    HostKeyError,
    PlacementImpossible,
    RemoteSetupError,
    RemotetuneError,
    SyncError,
    TransportError,
)
from remotetune.metrics import MetricLineError, decode_metric_line
from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    HostSpec,
    HostState,
    MetricKind,
    MetricPoint,
    Placement,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import Store
from remotetune.tuners import Tuner, create_tuner

log = logging.getLogger(__name__)

BROKEN_RETRY = 60.0  # seconds between attempts on a host that needs the user
CORDON_SECONDS = 30.0  # no new trials on a host after it failed to launch one

# Errors that need the user (wrong credentials, host key, no Python): retrying cannot help.
# By class: the transport refines `reason` ("unknown host key", "host key mismatch").
_FATAL_ERRORS = (AuthenticationFailed, HostKeyError, RemoteSetupError, SyncError)


class StopMode(str, enum.Enum):
    KILL = "kill"  # stop the running trials (USER_CANCELED)
    LEAVE = "leave"  # leave them running for `remotetune resume`


@dataclasses.dataclass(frozen=True)
class ControllerOptions:
    home: Path  # REMOTETUNE_HOME: store, object cache, manifests
    seed: int | None = None
    gpu_refresh: float = 10.0  # seconds between nvidia-smi runs per host
    host_state_interval: float = 1.0


class Controller:
    def __init__(
        self,
        config: ExperimentConfig,
        hosts: Sequence[HostSpec],
        store: Store,
        options: ControllerOptions,
        *,
        experiment: ExperimentRecord | None = None,
        on_event: Callable[[EventRecord], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.hosts = list(hosts)
        self.store = store
        self.options = options
        self.on_event = on_event
        self.clock = clock
        self.completions: queue.Queue[Completion] = queue.Queue()
        self.workers: dict[str, HostWorker] = {}
        for spec in self.hosts:
            workdir = str(options.home / "host") if spec.local and not spec.workdir else None
            self.workers[spec.name] = HostWorker(
                spec, HostSession(spec, workdir=workdir), self.completions
            )
        self.slots = SlotTable(  # a host without `slots:` may run trialConcurrency trials
            self.hosts, config.trial_gpu_number, default_slots=config.trial_concurrency
        )
        self.trials: dict[str, TrialRecord] = {}
        self.offsets: dict[str, int] = {}
        self.pgids: dict[str, int] = {}
        self.waiting: list[str] = []  # trial ids in order
        self.launching: set[str] = set()
        self.finalizing: set[str] = set()
        self.kill_sent: set[str] = set()
        self.events: list[EventRecord] = []
        self.experiment = experiment
        self.tuner: Tuner | None = None
        self.tuner_exhausted = False
        self.stop_mode: StopMode | None = None
        self.waiting_reason: str | None = None
        self._next_parameter_id = 0
        self._manifest: Any = None
        self._host_state_at: dict[str, float] = {}
        self._host_states: dict[str, HostState] = {}
        self._lock = threading.Lock()  # guards the snapshot handed to the view thread

    # ------------------------------------------------------------------ public

    @property
    def experiment_id(self) -> str:
        assert self.experiment is not None
        return self.experiment.id

    def request_stop(self, mode: StopMode) -> None:
        """Thread- and signal-safe: the loop stops at its next turn."""
        self.stop_mode = mode
        self.completions.put(Completion("", "wake", None, None, None))

    def create(self, machines_public: Sequence[dict[str, Any]] = ()) -> ExperimentRecord:
        now = self.clock()
        exp_id = self.store.new_experiment_id()
        record = ExperimentRecord(
            id=exp_id,
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
            for worker in self.workers.values():
                worker.shutdown(wait=False)
        assert self.experiment is not None
        return self.experiment.status

    # ------------------------------------------------------------------ start

    def _start(self) -> None:
        from remotetune import sync

        assert self.experiment is not None
        exp_dir = self.options.home / "experiments" / self.experiment_id
        manifest_file = exp_dir / "manifest.json"
        objects = self.options.home / "objects"
        if manifest_file.exists():  # resume: the code as it was when the experiment started
            self._manifest = _load_manifest(manifest_file.read_text())
        else:
            self._manifest = sync.build_manifest(
                self.config.trial_code_directory, cache_file=self.options.home / "hashcache.json"
            )
            sync.freeze(self.config.trial_code_directory, self._manifest, objects)
            exp_dir.mkdir(parents=True, exist_ok=True)
            manifest_file.write_text(_dump_manifest(self._manifest))

        existing = self.store.trials(self.experiment_id)
        for rec in existing:
            self.trials[rec.id] = rec
            self._next_parameter_id = max(self._next_parameter_id, rec.parameter_id + 1)
            if rec.status is TrialStatus.RUNNING:
                self.offsets[rec.id] = self.store.metrics_offset(self.experiment_id, rec.id)
                if rec.pid:
                    self.pgids[rec.id] = rec.pid
                if rec.host in self.workers:
                    self.slots.occupy(rec.id, Placement(rec.host, rec.gpus, None))
            elif rec.status is TrialStatus.WAITING:
                self.waiting.append(rec.id)
        # Connect to every host in parallel (while the tuner is built here: its imports
        # take a while); fail fast on what needs the user.
        for worker in self.workers.values():
            self._submit_connect(worker)
        class_args = dict(self.config.tuner.class_args)
        if self.options.seed is not None:  # --seed wins over classArgs.seed and `seed`
            class_args.pop("seed", None)
        self.tuner = create_tuner(
            self.config.tuner.name,
            class_args,
            self.config.search_space,
            code_directory=self.config.tuner.code_directory,
            seed=self.options.seed if self.options.seed is not None else self.config.seed,
        )
        if existing:
            self.tuner.restore(existing)
            self._event("experiment", f"resumed with {len(existing)} trials in the store")
        if self.experiment.status is not ExperimentStatus.RUNNING:
            self._save_experiment(status=ExperimentStatus.RUNNING, ended_at=None, message=None)

        deadline = self.clock() + max(w.spec.connect_timeout for w in self.workers.values()) + 60
        while any(w.connect_in_flight for w in self.workers.values()):
            try:
                done = self.completions.get(timeout=max(0.1, deadline - self.clock()))
            except queue.Empty:
                break
            self._handle(done)
        broken = [w for w in self.workers.values() if w.status is not HostStatus.READY]
        if broken and len(broken) == len(self.workers) and not existing:
            lines = "\n".join(  # a transport error's message already names its host
                f"  {w.message}" if (w.message or "").startswith(f"{w.name}: ")
                else f"  {w.name}: {w.message}" for w in broken)
            raise TransportError(
                ", ".join(w.name for w in broken),
                f"cannot use {len(broken)} of {len(self.workers)} host(s):\n{lines}",
                hint="fix the machines file, then run again (`remotetune check` tells more)",
            )
        impossible = self.slots.impossible()
        if impossible:
            raise PlacementImpossible(impossible)

    def _submit_connect(self, worker: HostWorker) -> None:
        worker.connect_in_flight = True
        if worker.status is not HostStatus.UNREACHABLE:
            worker.status = HostStatus.CONNECTING

        manifest = self._manifest
        objects = self.options.home / "objects"
        want_gpus = True

        def connect() -> tuple[Any, str, Any]:
            info = worker.session.open()
            snapshot = worker.session.sync(manifest, objects)
            gpus = worker.session.gpus() if want_gpus else None
            return info, snapshot, gpus

        worker.submit("connect", connect)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        poll_interval = self.config.poll_interval
        while True:
            now = self.clock()
            if self.stop_mode is not None:
                self._stop(self.stop_mode)
                return
            self._check_hosts(now)
            self._check_budgets(now)
            self._fill(now)
            self._schedule(now)
            if self._done():
                self._finish(ExperimentStatus.DONE, self._done_message())
                return
            try:
                item = self.completions.get(timeout=poll_interval)
            except queue.Empty:
                continue
            self._handle(item)
            while True:  # drain what else is ready before the next turn
                try:
                    self._handle(self.completions.get_nowait())
                except queue.Empty:
                    break

    def _done(self) -> bool:
        if self.waiting or self.launching or self.finalizing:
            return False
        if any(t.status is TrialStatus.RUNNING for t in self.trials.values()):
            return False
        return not self._may_launch(self.clock())

    def _done_message(self) -> str:
        counts: dict[str, int] = {}
        for t in self.trials.values():
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
        return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials"

    def _counted(self) -> int:
        return sum(1 for t in self.trials.values() if t.status is not TrialStatus.LOST)

    def _may_launch(self, now: float) -> bool:
        if self.tuner_exhausted or self.stop_mode is not None:
            return False
        limit = self.config.max_trial_number
        if limit is not None and self._counted() >= limit:
            return False
        return not self._out_of_time(now)

    def _out_of_time(self, now: float) -> bool:
        budget = self.config.max_experiment_duration
        assert self.experiment is not None
        return budget is not None and now - (self.experiment.started_at or now) >= budget

    # ------------------------------------------------------------------ launching

    def _fill(self, now: float) -> None:
        active = sum(
            1 for t in self.trials.values() if t.status is TrialStatus.RUNNING
        ) + len(self.waiting)
        while active < self.config.trial_concurrency and self._may_launch(now):
            if not self._new_trial(now):
                break
            active += 1
        self._place_waiting(now)

    def _new_trial(self, now: float, retry_of: TrialRecord | None = None) -> bool:
        assert self.tuner is not None
        if retry_of is None:
            parameter_id = self._next_parameter_id
            try:
                params = self.tuner.suggest(parameter_id, tuple(self.trials.values()))
            except RemotetuneError:
                raise
            except Exception as exc:  # noqa: BLE001 - a tuner bug ends the experiment clearly
                raise RemotetuneError(f"tuner {self.config.tuner.name} failed: {exc!r}") from exc
            if params is None:
                self.tuner_exhausted = True
                self._event("experiment", "the tuner has no more configurations to try")
                return False
            self._next_parameter_id += 1
            attempt = 1
        else:
            parameter_id, params, attempt = (
                retry_of.parameter_id,
                dict(retry_of.parameters),
                retry_of.attempt + 1,
            )
        trial = TrialRecord(
            id=self.store.new_trial_id(self.experiment_id),
            experiment_id=self.experiment_id,
            sequence=self.store.next_sequence(self.experiment_id),
            parameters=params,
            parameter_id=parameter_id,
            status=TrialStatus.WAITING,
            attempt=attempt,
            retry_of=retry_of.id if retry_of else None,
            created_at=now,
        )
        self._save_trial(trial)
        self.waiting.append(trial.id)
        return True

    def _place_waiting(self, now: float) -> None:
        self.waiting_reason = None
        while self.waiting:
            trial_id = self.waiting[0]
            placement = self.slots.place(trial_id)
            if placement is None:
                self.waiting_reason = self.slots.why_not()
                return
            self.waiting.pop(0)
            worker = self.workers[placement.host]
            trial = self.trials[trial_id]
            trial_dir = worker.session.trial_dir(self.experiment_id, trial_id)
            trial = self._save_trial(
                trial,
                status=TrialStatus.RUNNING,
                host=placement.host,
                gpus=placement.gpus,
                trial_dir=worker.session.absolute(trial_dir),
                started_at=None,
            )
            self.offsets[trial_id] = 0
            self.launching.add(trial_id)
            files = self._launch_files(trial, worker, placement)
            worker.submit("launch", worker.session.launch, trial_dir, files, token=trial_id)

    def _launch_files(
        self, trial: TrialRecord, worker: HostWorker, placement: Placement
    ) -> dict[str, str]:
        assert worker.snapshot_dir is not None and trial.trial_dir is not None
        env = dict(worker.spec.env)
        env.update(
            {
                "REMOTETUNE_EXPERIMENT_ID": self.experiment_id,
                "REMOTETUNE_TRIAL_ID": trial.id,
                "REMOTETUNE_SEQUENCE_ID": str(trial.sequence),
                "REMOTETUNE_TRIAL_DIR": trial.trial_dir,
                "REMOTETUNE_METRICS_FILE": f"{trial.trial_dir}/metrics.jsonl",
                "REMOTETUNE_CODE_DIR": worker.snapshot_dir,
                "NNI_PLATFORM": "remotetune",
                "NNI_EXP_ID": self.experiment_id,
                "NNI_TRIAL_JOB_ID": trial.id,
                "NNI_TRIAL_SEQ_ID": str(trial.sequence),
                "NNI_SYS_DIR": trial.trial_dir,
                "NNI_OUTPUT_DIR": trial.trial_dir,
            }
        )
        unset: list[str] = []
        if placement.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = placement.cuda_visible_devices
        elif self.config.trial_gpu_number is None:
            pass  # no GPU scheduling: leave the host's own setting alone
        prepend = {"PYTHONPATH": worker.session.lib_dir}
        if worker.spec.local and worker.spec.python == "python3":
            # `python3` in a local trialCommand is the interpreter remotetune runs in (its
            # virtualenv, with the trial's packages), as it would be in the user's shell.
            prepend["PATH"] = os.path.dirname(sys.executable)
        return launch_files(
            parameters=dict(trial.parameters),
            parameter_id=trial.parameter_id,
            script=commands.trial_script(worker.spec.setup, self.config.trial_command),
            cwd=worker.snapshot_dir,
            env=env,
            unset_env=unset,
            prepend_env=prepend,
            max_duration=self.config.max_trial_duration,
            kill_grace=self.config.kill_grace_period,
        )

    # ------------------------------------------------------------------ polling

    def _schedule(self, now: float) -> None:
        running_by_host: dict[str, list[str]] = {}
        for t in self.trials.values():
            if t.status is TrialStatus.RUNNING and t.id not in self.launching and t.host:
                running_by_host.setdefault(t.host, []).append(t.id)
        for name, worker in self.workers.items():
            if worker.status is not HostStatus.READY:
                continue
            ids = running_by_host.get(name, [])
            if ids and not worker.poll_in_flight and now >= worker.next_poll_at:
                items = [
                    PollItem(tid, worker.session.trial_dir(self.experiment_id, tid),
                             self.offsets.get(tid, 0))
                    for tid in ids
                ]
                worker.poll_in_flight = True
                worker.next_poll_at = now + self.config.poll_interval
                worker.submit("poll", worker.session.poll, items)
            if not worker.gpu_in_flight and now >= worker.next_gpu_at:
                worker.gpu_in_flight = True
                worker.next_gpu_at = now + self.options.gpu_refresh
                worker.submit("gpus", worker.session.gpus)
            if now - self._host_state_at.get(name, 0.0) >= self.options.host_state_interval:
                self._save_host_state(worker)

    def _handle(self, item: Completion) -> None:
        if item.kind == "wake":
            return
        worker = self.workers[item.host]
        handler = getattr(self, f"_on_{item.kind}")
        if item.error is not None and isinstance(item.error, TransportError):
            if self._is_connection_error(item.error):
                if item.kind == "connect":
                    worker.connect_in_flight = False
                if item.kind == "gpus":
                    worker.gpu_in_flight = False
                if item.kind == "launch":
                    self._launch_lost(item.token, item.error)
                if item.kind == "tails":
                    self.finalizing.discard(item.token)
                self._host_down(worker, item.error)
                return
        handler(worker, item)

    def _is_connection_error(self, error: TransportError) -> bool:
        return not isinstance(error, (AgentError, *_FATAL_ERRORS))

    def _host_down(self, worker: HostWorker, error: BaseException) -> None:
        now = self.clock()
        first = worker.status is not HostStatus.UNREACHABLE
        worker.mark_unreachable(now, str(error))
        self.slots.set_reachable(worker.name, False)
        worker.session.close()
        if first:
            self._event("host", f"{worker.name} unreachable: {error}", host=worker.name,
                        level="warning")
            self._save_host_state(worker)

    def _on_connect(self, worker: HostWorker, item: Completion) -> None:
        worker.connect_in_flight = False
        if item.error is not None:
            repeated = worker.status is HostStatus.BROKEN and worker.message == str(item.error)
            worker.status = HostStatus.BROKEN
            worker.message = str(item.error)
            worker.next_connect_at = self.clock() + BROKEN_RETRY
            worker.session.close()
            self.slots.set_reachable(worker.name, False)
            if not repeated:
                self._event("host", f"{worker.name} cannot be used: {item.error}",
                            host=worker.name, level="error")
            self._save_host_state(worker)
            return
        info, snapshot, gpus = item.result
        was_down = worker.status is HostStatus.UNREACHABLE
        worker.status = HostStatus.READY
        worker.message = None
        worker.unreachable_since = None
        worker.snapshot_dir = snapshot
        self._apply_gpus(worker, gpus)
        worker.next_gpu_at = self.clock() + self.options.gpu_refresh
        self.slots.set_reachable(worker.name, True)
        verb = "back" if was_down else "ready"
        self._event("host", f"{worker.name} {verb}: {info.hostname}, Python {info.python}",
                    host=worker.name)
        # Trials we gave up on while it was away must not run twice.
        for t in self.trials.values():
            if t.host == worker.name and t.status is TrialStatus.LOST and t.id in self.pgids:
                kill = functools.partial(
                    worker.session.kill,
                    trial_dir=worker.session.trial_dir(self.experiment_id, t.id))
                worker.submit("kill", kill, self.pgids.pop(t.id),
                              self.config.kill_grace_period, token=t.id)
        self._save_host_state(worker)

    def _apply_gpus(self, worker: HostWorker, report: Any) -> None:
        if report is None:
            return
        worker.gpus = tuple(report.gpus or ())
        worker.gpu_error = report.error
        self.slots.update_gpus(worker.name, report.gpus, error=report.error)

    def _on_gpus(self, worker: HostWorker, item: Completion) -> None:
        worker.gpu_in_flight = False
        if item.error is None:
            self._apply_gpus(worker, item.result)

    def _launch_lost(self, trial_id: str, error: BaseException) -> None:
        # The connection broke mid-launch: the trial may or may not have started. Its
        # files tell: keep it RUNNING with no pid; polling after reconnect finds out.
        self.launching.discard(trial_id)

    def _on_launch(self, worker: HostWorker, item: Completion) -> None:
        trial_id = item.token
        self.launching.discard(trial_id)
        trial = self.trials[trial_id]
        if item.error is not None:
            self.slots.release(trial_id)
            self._save_trial(trial, status=TrialStatus.FAILED, ended_at=self.clock(),
                             message=f"launch failed: {item.error}")
            self._event("trial", f"trial {trial_id} could not be launched on {worker.name}: "
                        f"{item.error}", trial_id=trial_id, host=worker.name, level="error")
            self._observe(self.trials[trial_id])
            # A host that cannot start trials (disk full, workdir gone) takes no new ones
            # for a while, so it does not eat the trial budget; its running trials go on.
            worker.cordoned_until = self.clock() + CORDON_SECONDS
            self.slots.set_reachable(worker.name, False)
            return
        info = item.result
        self.pgids[trial_id] = int(info["pgid"])
        self._save_trial(trial, pid=int(info["pid"]), started_at=float(info["started"]))
        gpus = f" GPU {','.join(map(str, trial.gpus))}" if trial.gpus else ""
        self._event("trial", f"trial {trial_id} running on {worker.name}{gpus} "
                    f"{json.dumps(dict(trial.parameters), sort_keys=True)}",
                    trial_id=trial_id, host=worker.name)

    def _on_poll(self, worker: HostWorker, item: Completion) -> None:
        worker.poll_in_flight = False
        if item.error is not None:
            self._event("host", f"{worker.name}: polling failed: {item.error}",
                        host=worker.name, level="warning")
            return
        results: list[PollResult] = item.result
        for r in results:
            trial = self.trials.get(r.trial_id)
            if trial is None or trial.status is not TrialStatus.RUNNING:
                continue
            if r.offset != self.offsets.get(r.trial_id, 0) or r.lines:
                self._ingest(trial, r)
            if r.exit is not None:
                self._ended(worker, self.trials[r.trial_id], r.exit)
            elif r.pid is not None and r.alive is False:
                self._ended(worker, self.trials[r.trial_id], {
                    "code": None, "signal": None, "ended": self.clock(),
                    "reason": "its processes vanished without an exit record"})
            elif r.pid is not None and trial.started_at is None:
                self.pgids[trial.id] = int(r.pid["pgid"])
                self._save_trial(trial, pid=int(r.pid["pid"]), started_at=float(r.pid["started"]))
            elif r.pid is None and not r.exists and trial.id not in self.launching:
                # Lost mid-launch: it never started. Start it again.
                self.slots.release(trial.id)
                self._save_trial(trial, status=TrialStatus.WAITING, host=None, gpus=())
                self.waiting.insert(0, trial.id)

    def _ingest(self, trial: TrialRecord, r: PollResult) -> None:
        points: list[MetricPoint] = []
        base = trial.intermediate_count + (1 if trial.final is not None else 0)
        final = trial.final
        best = trial.best_intermediate
        latest = trial.latest_intermediate
        count = trial.intermediate_count
        mode = self.config.optimize_mode
        for n, line in enumerate(r.lines):
            try:
                point = decode_metric_line(line, trial.id, default_seq=base + n,
                                           now=self.clock())
            except MetricLineError as exc:
                self._event("trial", f"trial {trial.id} wrote a metric line remotetune cannot "
                            f"read ({exc}): {line[:120]!r}", trial_id=trial.id,
                            host=trial.host, level="warning")
                continue
            points.append(point)
            kind, value = point.kind, point.value
            if kind is MetricKind.FINAL:
                if final is None:
                    final = value
            else:
                count += 1
                latest = value
                if best is None or mode.better(value, best):
                    best = value
        self.store.add_metrics(self.experiment_id, trial.id, points, r.offset)
        self.offsets[trial.id] = r.offset
        self._save_trial(trial, final=final, best_intermediate=best,
                         latest_intermediate=latest, intermediate_count=count)

    def _ended(self, worker: HostWorker, trial: TrialRecord, exit_info: dict[str, Any]) -> None:
        code = exit_info.get("code")
        reason = exit_info.get("reason")
        ended = float(exit_info.get("ended") or self.clock())
        if trial.id in self.kill_sent and trial.status is not TrialStatus.RUNNING:
            status = trial.status
        elif reason == "timeout":
            status, reason = TrialStatus.EARLY_STOPPED, "ran past maxTrialDuration"
        elif code == 0:
            status = TrialStatus.SUCCEEDED
        else:
            status = TrialStatus.FAILED
        message = reason
        if status is TrialStatus.FAILED and not message:
            message = f"exited with code {code}" + (
                f" (signal {exit_info['signal']})" if exit_info.get("signal") else "")
        self.slots.release(trial.id)
        self.pgids.pop(trial.id, None)
        trial = self._save_trial(trial, status=status, exit_code=code, ended_at=ended,
                                 message=message)
        level = "error" if status is TrialStatus.FAILED else "info"
        final = f" final={trial.final:.6g}" if trial.final is not None else ""
        self._event("trial", f"trial {trial.id} {status.value.lower()}{final}"
                    + (f": {message}" if message else ""), trial_id=trial.id,
                    host=worker.name, level=level)
        self._observe(trial)
        self.finalizing.add(trial.id)
        worker.submit("tails", worker.session.tails,
                      worker.session.trial_dir(self.experiment_id, trial.id), token=trial.id)
        if status is TrialStatus.FAILED and trial.attempt <= self.config.retry_failed_trials:
            self._new_trial(self.clock(), retry_of=trial)

    def _on_tails(self, worker: HostWorker, item: Completion) -> None:
        self.finalizing.discard(item.token)
        if item.error is not None:
            return
        stdout, stderr = item.result
        trial = self.trials[item.token]
        self._save_trial(trial, stdout_tail=stdout[-2000:], stderr_tail=stderr[-2000:])
        if trial.status is TrialStatus.FAILED and stderr.strip():
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            self._event("trial", f"trial {trial.id} stderr: {tail}", trial_id=trial.id,
                        host=worker.name, level="error")

    def _on_kill(self, worker: HostWorker, item: Completion) -> None:
        if item.error is not None:
            self._event("trial", f"could not stop trial {item.token}: {item.error}",
                        trial_id=item.token, host=worker.name, level="warning")

    def _observe(self, trial: TrialRecord) -> None:
        assert self.tuner is not None
        try:
            self.tuner.observe(trial.parameter_id, trial.parameters, trial.final, trial.status)
        except Exception as exc:  # noqa: BLE001
            self._event("experiment", f"tuner failed to observe trial {trial.id}: {exc!r}",
                        level="warning")

    # ------------------------------------------------------------------ hosts & budgets

    def _check_hosts(self, now: float) -> None:
        for worker in self.workers.values():
            if worker.cordoned_until and now >= worker.cordoned_until:
                worker.cordoned_until = 0.0
                if worker.status is HostStatus.READY:
                    self.slots.set_reachable(worker.name, True)
            if worker.status is HostStatus.BROKEN:
                if not worker.connect_in_flight and now >= worker.next_connect_at:
                    self._submit_connect(worker)  # the user may have fixed it meanwhile
                continue
            if worker.status is not HostStatus.UNREACHABLE:
                continue
            if not worker.connect_in_flight and now >= worker.next_connect_at:
                self._submit_connect(worker)
            since = worker.unreachable_since or now
            if now - since < self.config.host_grace_period:
                continue
            for trial in list(self.trials.values()):
                if trial.host != worker.name or trial.status is not TrialStatus.RUNNING:
                    continue
                self.launching.discard(trial.id)
                self.slots.release(trial.id)
                lost = self._save_trial(
                    trial, status=TrialStatus.LOST, ended_at=now,
                    message=f"host {worker.name} unreachable for "
                            f"{self.config.host_grace_period:g} s")
                if lost.attempt <= self.config.max_trial_retries:
                    self._event("trial", f"trial {trial.id} lost with {worker.name}; "
                                "re-queued with the same parameters", trial_id=trial.id,
                                host=worker.name, level="warning")
                    self._new_trial(now, retry_of=lost)
                else:
                    self._save_trial(lost, status=TrialStatus.FAILED,
                                     message=f"{lost.message}; retry budget spent")
                    self._observe(self.trials[trial.id])

    def _check_budgets(self, now: float) -> None:
        if not self._out_of_time(now):
            late = self.config.max_trial_duration
            if late is None:
                return
            for trial in self.trials.values():
                if (trial.status is TrialStatus.RUNNING and trial.started_at
                        and now - trial.started_at > late + self.config.kill_grace_period + 30
                        and trial.id not in self.kill_sent):
                    self._kill(trial, TrialStatus.EARLY_STOPPED, "ran past maxTrialDuration")
            return
        for trial in list(self.trials.values()):
            if trial.status is TrialStatus.RUNNING and trial.id not in self.kill_sent:
                self._kill(trial, TrialStatus.SYS_CANCELED, "maxExperimentDuration reached")
        for trial_id in self.waiting:
            self._save_trial(self.trials[trial_id], status=TrialStatus.SYS_CANCELED,
                             message="maxExperimentDuration reached")
        self.waiting.clear()

    def _kill(self, trial: TrialRecord, status: TrialStatus, message: str) -> None:
        self.kill_sent.add(trial.id)
        self._save_trial(trial, status=status, message=message, ended_at=self.clock())
        self.slots.release(trial.id)
        pgid = self.pgids.get(trial.id)
        worker = self.workers.get(trial.host or "")
        if pgid and worker and worker.status is HostStatus.READY:
            kill = functools.partial(  # the trial dir lets the agent check it is our process
                worker.session.kill,
                trial_dir=worker.session.trial_dir(self.experiment_id, trial.id))
            worker.submit("kill", kill, pgid, self.config.kill_grace_period, token=trial.id)
        self._observe(self.trials[trial.id])

    # ------------------------------------------------------------------ stop

    def _stop(self, mode: StopMode) -> None:
        running = [t for t in self.trials.values() if t.status is TrialStatus.RUNNING]
        if mode is StopMode.KILL:
            self._event("experiment", f"stopping: killing {len(running)} running trial(s)")
            for trial in running:
                self._save_trial(trial, status=TrialStatus.USER_CANCELED, ended_at=self.clock(),
                                 message="stopped by the user")
            for trial_id in self.waiting:
                self._save_trial(self.trials[trial_id], status=TrialStatus.USER_CANCELED,
                                 message="stopped by the user")
            self.waiting.clear()
            self._kill_and_wait(running)
            self._finish(ExperimentStatus.STOPPED, "stopped by the user; trials killed")
        else:
            self._event("experiment", f"detaching: {len(running)} trial(s) keep running; "
                        f"`remotetune resume {self.experiment_id}` reattaches")
            self._finish(ExperimentStatus.STOPPED,
                         f"stopped by the user; {len(running)} trial(s) left running")

    def _kill_and_wait(self, trials: Sequence[TrialRecord]) -> None:
        by_host: dict[str, list[tuple[int, str]]] = {}
        for trial in trials:
            pgid = self.pgids.get(trial.id)
            if pgid and trial.host:
                trial_dir = self.workers[trial.host].session.trial_dir(
                    self.experiment_id, trial.id)
                by_host.setdefault(trial.host, []).append((pgid, trial_dir))
        pending = 0  # kills sent: a host that is down gets none and is not waited for
        for host, pgids in by_host.items():
            worker = self.workers[host]
            if worker.status is not HostStatus.READY:
                continue
            session, grace = worker.session, self.config.kill_grace_period

            def kill_all(
                session: HostSession = session,
                pgids: list[tuple[int, str]] = pgids,
                grace: float = grace,
            ) -> None:
                for pgid, trial_dir in pgids:  # TERM now, KILL after grace (agent thread)
                    session.kill(pgid, grace, trial_dir=trial_dir)
                for pgid, trial_dir in pgids:
                    session.kill(pgid, grace, wait=True, trial_dir=trial_dir)

            worker.submit("kill", kill_all)
            pending += 1
        deadline = self.clock() + self.config.kill_grace_period + 30
        while pending and self.clock() < deadline:
            try:
                item = self.completions.get(timeout=0.2)
            except queue.Empty:
                continue
            if item.kind == "kill":
                pending -= 1

    def _finish(self, status: ExperimentStatus, message: str) -> None:
        if self.experiment is None:
            return
        self._save_experiment(status=status, ended_at=self.clock(), message=message)
        self._event("experiment", f"experiment {self.experiment_id} {status.value.lower()}: "
                    f"{message}", level="error" if status is ExperimentStatus.FAILED else "info")
        for worker in self.workers.values():
            self._save_host_state(worker)

    # ------------------------------------------------------------------ store helpers

    def _save_trial(self, trial: TrialRecord, **changes: Any) -> TrialRecord:
        new = dataclasses.replace(trial, **changes) if changes else trial
        self.store.save_trial(new)
        with self._lock:
            self.trials[new.id] = new
        return new

    def _save_experiment(self, **changes: Any) -> None:
        assert self.experiment is not None
        self.experiment = dataclasses.replace(self.experiment, **changes)
        self.store.save_experiment(self.experiment)

    def _save_host_state(self, worker: HostWorker) -> None:
        self._host_state_at[worker.name] = self.clock()
        running = self.slots.running_on(worker.name)
        state = HostState(
            experiment_id=self.experiment_id,
            host=worker.name,
            reachable=worker.status is HostStatus.READY,
            gpus=worker.gpus,
            gpu_holders=self.slots.holders(worker.name),
            slots=worker.spec.slots or self.config.trial_concurrency,
            running=len(running),
            message=worker.message or worker.gpu_error,
            updated_at=self.clock(),
        )
        self.store.save_host_state(state)
        with self._lock:
            self._host_states[worker.name] = state

    def _event(self, kind: str, message: str, *, trial_id: str | None = None,
               host: str | None = None, level: str = "info") -> None:
        ev = EventRecord(self.experiment_id if self.experiment else "", self.clock(), kind,
                         message, trial_id=trial_id, host=host, level=level)
        if self.experiment is not None:
            self.store.add_event(ev)
        with self._lock:
            self.events.append(ev)
            del self.events[:-50]
        log.debug("%s: %s", kind, message)  # events reach users through the store and view
        if self.on_event is not None:
            self.on_event(ev)

    # ------------------------------------------------------------------ view

    def view_state(self) -> tuple[ExperimentRecord, tuple[TrialRecord, ...],
                                  tuple[HostState, ...], tuple[EventRecord, ...], str | None]:
        """A consistent, immutable copy for the live view's thread."""
        assert self.experiment is not None
        with self._lock:
            return (self.experiment, tuple(self.trials.values()),
                    tuple(self._host_states.values()), tuple(self.events), self.waiting_reason)


def _dump_manifest(manifest: Any) -> str:
    return json.dumps({
        "digest": manifest.digest,
        "total_bytes": manifest.total_bytes,
        "entries": [[e.path, e.size, e.mode, e.sha256] for e in manifest.entries],
    })


def _load_manifest(text: str) -> Any:
    from remotetune.sync import Manifest, ManifestEntry

    data = json.loads(text)
    entries = tuple(ManifestEntry(str(p), int(n), int(m), str(h)) for p, n, m, h in data["entries"])
    return Manifest(entries, str(data["digest"]), int(data["total_bytes"]))

