"""The controller's loop against the fake backend and a fake clock: no hosts, no sleeps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remotetune.config import parse_experiment
from remotetune.controller import (
    ALLOWED,
    Controller,
    ControllerOptions,
    StopMode,
    TransitionError,
    TrialBook,
)
from remotetune.errors import PlacementImpossible
from remotetune.model import ExperimentStatus, OptimizeMode, TrialRecord, TrialStatus
from remotetune.store import Store
from remotetune.testing.backend import FakeBackend, FakeClock, FakeRun


def make_config(tmp_path: Path, **extra: Any) -> Any:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("print('hi')\n")
    data = {
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": "python3 train.py",
        "trialCodeDirectory": str(code),
        "trialConcurrency": 2,
        "maxTrialNumber": 6,
        "tuner": {"name": "Random"},
        "pollInterval": 0.5,
        **extra,
    }
    return parse_experiment(data, file=None, base_dir=tmp_path)


class Rig:
    def __init__(self, tmp_path: Path, slots: dict[str, int] | None = None,
                 behaviour: Callable[[TrialRecord], FakeRun] | None = None,
                 **config: Any) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.config = make_config(tmp_path, **config)
        self.store = Store(tmp_path / "home" / "remotetune.db")
        self.backend = FakeBackend(slots or {"a": 2}, behaviour or (lambda t: FakeRun(5.0)),
                                   self.clock)

    def controller(self, experiment: Any = None, seed: int | None = None) -> Controller:
        return Controller(self.config, (), self.store,
                          ControllerOptions(home=self.tmp_path / "home", seed=seed),
                          experiment=experiment, clock=self.clock, backends=[self.backend])

    def run(self) -> tuple[Controller, list[TrialRecord]]:
        controller = self.controller()
        exp = controller.create()
        controller.run()
        return controller, self.store.trials(exp.id)


def statuses(trials: list[TrialRecord]) -> list[TrialStatus]:
    return [t.status for t in trials]


def test_runs_max_trial_number_trials_keeping_concurrency(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2, "b": 2}, lambda t: FakeRun(3.0, intermediate=(0.1, 0.2)))
    controller, trials = rig.run()
    assert controller.experiment is not None
    assert controller.experiment.status is ExperimentStatus.DONE
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 6
    assert rig.backend.max_running == 2  # trialConcurrency, though 4 slots exist
    assert all(t.final == 0.5 and t.intermediate_count == 2 for t in trials)
    assert controller.book is not None
    assert [p.value for p in controller.book.curve(trials[0].id)] == [0.1, 0.2]
    assert len(rig.store.metrics(trials[0].experiment_id, trials[0].id)) == 3


def test_max_experiment_duration_cancels_running_and_waiting(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, lambda t: FakeRun(1000.0), maxExperimentDuration="60s",
              trialConcurrency=2)
    controller, trials = rig.run()
    assert controller.experiment is not None
    assert controller.experiment.status is ExperimentStatus.DONE
    assert sorted(s.value for s in statuses(trials)) == ["SYS_CANCELED", "SYS_CANCELED"]
    assert rig.backend.kills == [trials[0].id]  # only the running one had something to kill
    assert rig.clock.now() - (controller.experiment.started_at or 0) < 62


def test_max_trial_duration_kills_once_and_stops_early(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, lambda t: FakeRun(1000.0), maxTrialDuration="20s",
              killGracePeriod="5s", trialConcurrency=1, maxTrialNumber=2)
    _, trials = rig.run()
    assert statuses(trials) == [TrialStatus.EARLY_STOPPED] * 2
    assert all(t.message == "ran past maxTrialDuration" for t in trials)
    assert rig.backend.kills == [t.id for t in trials]  # one kill each, never repeated


def test_a_lost_host_requeues_its_trials_elsewhere(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1, "b": 1}, lambda t: FakeRun(30.0), hostGracePeriod="10s",
              trialConcurrency=2, maxTrialNumber=2)
    rig.backend.at.append((rig.clock.now() + 5, lambda: rig.backend.set_down("a")))
    controller, trials = rig.run()
    by_status: dict[TrialStatus, list[TrialRecord]] = {}
    for t in trials:
        by_status.setdefault(t.status, []).append(t)
    assert len(by_status[TrialStatus.LOST]) == 1
    lost = by_status[TrialStatus.LOST][0]
    assert lost.host == "a"
    retry = [t for t in trials if t.retry_of == lost.id]
    assert len(retry) == 1 and retry[0].status is TrialStatus.SUCCEEDED
    assert retry[0].host == "b" and retry[0].parameters == lost.parameters
    assert len(by_status[TrialStatus.SUCCEEDED]) == 2  # LOST does not count


def test_stop_kill_sends_one_kill_per_trial_and_skips_down_hosts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1, "b": 1}, lambda t: FakeRun(1000.0), killGracePeriod="10s")
    controller = rig.controller()
    exp = controller.create()

    def stop() -> None:
        rig.backend.set_down("b")
        controller.request_stop(StopMode.KILL)

    rig.backend.at.append((rig.clock.now() + 3, stop))
    started = rig.clock.now()
    assert controller.run() is ExperimentStatus.STOPPED
    trials = rig.store.trials(exp.id)
    assert statuses(trials) == [TrialStatus.USER_CANCELED] * 2
    on_a = [t.id for t in trials if t.host == "a"]
    assert rig.backend.kills == on_a
    assert rig.clock.now() - started < 10  # did not wait killGracePeriod + 30 s for b


def test_resume_restores_trials_and_finishes(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2}, lambda t: FakeRun(10.0), maxTrialNumber=4)
    first = rig.controller()
    exp = first.create()
    rig.backend.at.append((rig.clock.now() + 4, lambda: first.request_stop(StopMode.LEAVE)))
    assert first.run() is ExperimentStatus.STOPPED
    left = rig.store.trials(exp.id)
    assert statuses(left) == [TrialStatus.RUNNING] * 2
    second = rig.controller(experiment=rig.store.experiment(exp.id))
    assert second.run() is ExperimentStatus.DONE
    trials = rig.store.trials(exp.id)
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 4
    assert [t.id for t in trials[:2]] == [t.id for t in left]  # reattached, not relaunched
    assert rig.backend.launches.count(left[0].id) == 1
    assert len({t.parameter_id for t in trials}) == 4


def test_no_host_can_ever_run_a_trial_is_bad_input(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 0})
    with pytest.raises(PlacementImpossible, match="no host has any trial slot") as info:
        rig.run()
    assert info.value.exit_code == 2


def test_failed_trials_are_retried_within_budget(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, lambda t: FakeRun(2.0, code=1, final=None),
              retryFailedTrials=1, maxTrialNumber=1, trialConcurrency=1)
    _, trials = rig.run()
    assert statuses(trials) == [TrialStatus.FAILED, TrialStatus.FAILED]
    assert trials[1].retry_of == trials[0].id and trials[1].attempt == 2


def test_book_refuses_transitions_the_table_does_not_allow(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    from remotetune.model import ExperimentRecord

    store.save_experiment(ExperimentRecord("e1", "n", ExperimentStatus.RUNNING, {}))
    book = TrialBook(store, "e1", OptimizeMode.MAXIMIZE)
    book.add(TrialRecord("t1", "e1", 0, {}, TrialStatus.WAITING))
    book.update("t1", status=TrialStatus.RUNNING, host="h")
    book.update("t1", status=TrialStatus.SUCCEEDED)
    with pytest.raises(TransitionError):
        book.update("t1", status=TrialStatus.RUNNING)
    assert book.count(TrialStatus.SUCCEEDED) == 1 and book.count(TrialStatus.RUNNING) == 0
    assert [t.id for t in book.on_host("h", TrialStatus.SUCCEEDED)] == ["t1"]
    assert all(not ALLOWED[s] for s in TrialStatus if s.is_finished() and s
               is not TrialStatus.LOST)


@pytest.mark.parametrize(("cli", "class_seed", "file_seed", "expected"), [
    (5, 3, 1, 5),  # the command line wins
    (None, 3, 1, 3),  # then classArgs.seed
    (None, None, 1, 1),  # then the file's `seed`
])
def test_seed_precedence(tmp_path: Path, cli: int | None, class_seed: int | None,
                         file_seed: int, expected: int) -> None:
    args = {"seed": class_seed} if class_seed is not None else {}
    rig = Rig(tmp_path, seed=file_seed, tuner={"name": "Random", "classArgs": args},
              maxTrialNumber=1)
    controller = rig.controller(seed=cli)
    controller.create()
    controller.run()
    assert controller.tuner.seed == expected


def test_manifest_lives_in_the_store_and_old_manifest_files_still_resume(tmp_path: Path) -> None:
    from remotetune import sync
    from remotetune.controller._manifest import dump_manifest, load_or_freeze

    rig = Rig(tmp_path)
    home = tmp_path / "home"
    exp = rig.controller().create()
    fresh = load_or_freeze(rig.store, exp.id, rig.config, home)
    assert rig.store.manifest(exp.id) == dump_manifest(fresh)
    assert not (home / "experiments" / exp.id / "manifest.json").exists()
    # an experiment from before migration 0003: its manifest is a file
    (tmp_path / "code" / "train.py").write_text("print('changed')\n")
    old = rig.controller().create()
    old_file = home / "experiments" / old.id / "manifest.json"
    old_file.parent.mkdir(parents=True)
    old_file.write_text(dump_manifest(fresh))
    resumed = load_or_freeze(rig.store, old.id, rig.config, home)
    assert resumed.digest == fresh.digest  # the code as it was, not as it is now
    assert rig.store.manifest(old.id) == dump_manifest(fresh)
    assert sync.build_manifest(rig.config.trial_code_directory).digest != fresh.digest


class _QueueBackend(FakeBackend):
    """A batch queue: jobs wait ``QUEUED`` seconds first; code -1 loses the job's node (first
    attempt only), code -2 is a job cancelled from outside."""

    QUEUED = 3.0

    def launch(self, spec: Any) -> None:
        from remotetune.backends import LaunchResult, Report, ReportKind, TrialHandle
        from remotetune.testing.backend import _lines, _Live

        now = self.clock.now()
        self._next_ref += 1
        handle = TrialHandle(spec.trial.id, spec.placement.host, self._next_ref)
        run = self.behaviour(spec.trial)
        start = now + self.QUEUED
        self.live[spec.trial.id] = _Live(handle, run, start, _lines(run, start))
        self._report(Report(ReportKind.LAUNCHED, handle.host, spec.trial.id,
                            launch=LaunchResult(handle, None, self._next_ref)))

    def _poll(self, live: Any, offset: int, now: float) -> Any:
        from remotetune.backends import ExitInfo, LaunchResult, RunState, TrialPoll

        trial_id = live.handle.trial_id
        if now < live.started:
            return TrialPoll(trial_id, (), offset, RunState.QUEUED,
                             reason="queued in Slurm (Priority)")
        started = LaunchResult(live.handle, live.started, live.handle.ref)
        if live.run.code == -1 and now >= live.started + 1:
            return TrialPoll(trial_id, (), offset, RunState.LOST, started=started,
                             reason="Slurm job 1: its node failed")
        if live.run.code == -2 and now >= live.started + 1:
            return TrialPoll(trial_id, (), offset, RunState.EXITED,
                             ExitInfo(None, 15, now, "Slurm job 1 was cancelled",
                                      cancelled=True), started)
        poll = super()._poll(live, offset, now)
        return TrialPoll(poll.trial_id, poll.lines, poll.offset, poll.state, poll.exit, started)


def test_batch_queue_reasons_lost_jobs_and_outside_cancels(tmp_path: Path) -> None:
    codes = {0: -1, 1: -2}  # parameter id -> behaviour; the LOST trial's retry succeeds

    def behaviour(t: TrialRecord) -> FakeRun:
        code = codes.get(t.parameter_id, 0) if t.attempt == 1 else 0
        return FakeRun(5.0, code, (0.1, 0.2))

    rig = Rig(tmp_path, {"hpc": 2}, behaviour, trialConcurrency=2, maxTrialNumber=3)
    rig.backend = _QueueBackend({"hpc": 2}, behaviour, rig.clock)
    seen: list[TrialRecord] = []
    start = rig.clock.now()
    rig.backend.at.append((start + 2.0, lambda: seen.extend(
        rig.store.trials(rig.store.experiments()[0].id))))
    controller, trials = rig.run()
    assert seen and all(t.status is TrialStatus.RUNNING and t.started_at is None
                        and t.message == "queued in Slurm (Priority)" for t in seen)
    first = {t.parameter_id: t for t in trials if t.attempt == 1}
    lost, cancelled = first[0], first[1]
    assert lost.status is TrialStatus.LOST and lost.message == "Slurm job 1: its node failed"
    retry = [t for t in trials if t.retry_of == lost.id]
    assert len(retry) == 1 and retry[0].status is TrialStatus.SUCCEEDED
    assert retry[0].started_at is not None and retry[0].message is None
    assert cancelled.status is TrialStatus.USER_CANCELED
    assert cancelled.message == "Slurm job 1 was cancelled"
    # Neither LOST nor USER_CANCELED counts toward maxTrialNumber (docs/config.md): three
    # trials succeed besides them.
    assert sorted(t.status.value for t in trials) == [
        "LOST", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "USER_CANCELED"]
