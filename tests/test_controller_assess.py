"""The controller carries out an assessor's decisions and waits for a tuner's "not now":
on the fake backend and a fake clock, with the real assessors and tuners."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from remotetune.backends import Envelope
from remotetune.controller import Controller
from remotetune.model import ExperimentStatus, TrialRecord, TrialStatus
from remotetune.testing.backend import FakeClock, FakeRun
from tests.test_controller import Rig

S = TrialStatus
GOOD = (0.80, 0.85, 0.90, 0.92, 0.94, 0.95)
BAD = (0.10, 0.12, 0.13, 0.14, 0.15, 0.16)


class PatientClock(FakeClock):
    """Fake time, but an empty wait gives the assessor's thread a moment of real time, so
    its decisions land while the trial is still running in fake time."""

    def wait(self, inbox: queue.Queue[Envelope], timeout: float) -> Envelope | None:
        try:
            return inbox.get(timeout=0.02)
        except queue.Empty:
            self.time += max(timeout, 1e-3)
            return None


class Recorder:
    """Wraps the real tuner; records what it observed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.observed: list[tuple[int, float | None, TrialStatus]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def observe(self, pid: int, params: Any, value: float | None, status: TrialStatus) -> None:
        self.observed.append((pid, value, status))
        self.inner.observe(pid, params, value, status)


class Recording(Controller):
    def _make_tuner(self) -> Any:
        return Recorder(super()._make_tuner())


def run(rig: Rig, clock: FakeClock | None = None) -> tuple[Controller, list[TrialRecord]]:
    if clock is not None:
        rig.clock = rig.backend.clock = clock
    from remotetune.controller import ControllerOptions

    controller = Recording(rig.config, (), rig.store, ControllerOptions(home=rig.tmp_path / "h"),
                           clock=rig.clock, backends=[rig.backend])
    exp = controller.create()
    controller.run()
    return controller, rig.store.trials(exp.id)


def by_sequence(trial: TrialRecord) -> FakeRun:
    curve = BAD if trial.sequence >= 3 else GOOD
    return FakeRun(30.0, intermediate=curve, final=curve[-1])


def test_an_assessor_stops_a_trial_once_through_its_backend(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, by_sequence, trialConcurrency=1, maxTrialNumber=4,
              assessor={"name": "Medianstop", "classArgs": {"start_step": 2}})
    controller, trials = run(rig, PatientClock())
    assert controller.experiment is not None
    assert controller.experiment.status is ExperimentStatus.DONE
    assert [t.status for t in trials] == [S.SUCCEEDED] * 3 + [S.EARLY_STOPPED]
    stopped = trials[3]
    assert rig.backend.kills == [stopped.id]  # one kill, through the backend
    assert stopped.message is not None
    assert stopped.message.startswith("stopped by Medianstop: best 0.12 at step 2 < median")
    events = [e.message for e in rig.store.events(stopped.experiment_id, None)]
    assert f"trial {stopped.id} {stopped.message}" in events
    # its curve ends where it was stopped: only what it reported before the kill
    assert 2 <= stopped.intermediate_count < len(BAD)
    # the tuner learns its last intermediate (NNI's rule)
    tuner = controller.tuner
    assert isinstance(tuner, Recorder)
    assert (stopped.parameter_id, stopped.latest_intermediate, S.EARLY_STOPPED) in tuner.observed
    assert len(tuner.observed) == 4


def test_no_assessor_runs_every_trial_to_its_end(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 1}, by_sequence, trialConcurrency=1, maxTrialNumber=4)
    _, trials = run(rig, PatientClock())
    assert [t.status for t in trials] == [S.SUCCEEDED] * 4
    assert rig.backend.kills == []


def test_a_tuner_with_nothing_now_keeps_the_experiment_alive(tmp_path: Path) -> None:
    # Serial Hyperband (R 9, eta 3) issues 9 first-round configurations, then has nothing
    # until all 9 finished: the experiment goes on to maxTrialNumber.
    def run_of(trial: TrialRecord) -> FakeRun:
        return FakeRun(2.0, final=float(trial.parameters["x"]))

    rig = Rig(tmp_path, {"a": 4}, run_of, trialConcurrency=4, maxTrialNumber=13,
              tuner={"name": "Hyperband",
                     "classArgs": {"R": 9, "eta": 3, "exec_mode": "serial"}})
    controller, trials = run(rig)
    assert controller.experiment is not None
    assert controller.experiment.status is ExperimentStatus.DONE
    assert len(trials) == 13 and all(t.status is S.SUCCEEDED for t in trials)
    budgets = [t.parameters["TRIAL_BUDGET"] for t in trials]
    assert budgets == [1] * 9 + [3] * 3 + [9]
    assert sorted(t.parameter_id for t in trials) == list(range(13))  # none used up by a wait


SLOW = '''
import os, time
from remotetune.assessors import Assessor, Verdict

class Slow(Assessor):
    def __init__(self, optimize_mode="maximize", *, gate=""):
        super().__init__(optimize_mode)
        self.gate = gate

    def assess(self, trial, others):
        open(self.gate + ".started", "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return Verdict.halt("too slow to matter")
'''


def test_a_slow_assessor_never_blocks_the_loop(tmp_path: Path) -> None:
    code = tmp_path / "assessors"
    code.mkdir()
    (code / "slowassess.py").write_text(SLOW)
    gate = tmp_path / "gate"
    rig = Rig(tmp_path, {"a": 2}, lambda t: FakeRun(5.0, intermediate=GOOD),
              trialConcurrency=2, maxTrialNumber=6,
              assessor={"className": "slowassess.Slow", "codeDirectory": str(code),
                        "classArgs": {"gate": str(gate)}})
    t0 = time.monotonic()
    try:
        controller, trials = run(rig)
        elapsed = time.monotonic() - t0
    finally:
        gate.touch()
    # The assessor sat on its first decision the whole run; the loop went on without it.
    assert (tmp_path / "gate.started").exists()
    assert elapsed < 20
    assert [t.status for t in trials] == [S.SUCCEEDED] * 6
    assert rig.backend.kills == []


ENDS = '''
from remotetune.assessors import Assessor, Verdict

class Ends(Assessor):
    def __init__(self, optimize_mode="maximize", *, log=""):
        super().__init__(optimize_mode)
        self.log = log

    def assess(self, trial, others):
        return Verdict.keep()

    def trial_end(self, trial):
        with open(self.log, "a") as f:
            f.write(f"{trial.trial_id} {trial.status.value} {len(trial.points)}\\n")
'''


def test_the_assessor_hears_of_each_end_with_the_whole_curve(tmp_path: Path) -> None:
    code = tmp_path / "assessors"
    code.mkdir()
    (code / "endsassess.py").write_text(ENDS)
    log = tmp_path / "ends.txt"
    rig = Rig(tmp_path, {"a": 2}, lambda t: FakeRun(5.0, intermediate=GOOD),
              trialConcurrency=2, maxTrialNumber=4,
              assessor={"className": "endsassess.Ends", "codeDirectory": str(code),
                        "classArgs": {"log": str(log)}})
    rig.backend.poll_interval = 3.0  # a poll mid-run, then one with the rest and the exit
    _, trials = run(rig)
    wait_for_lines = time.monotonic() + 10
    while time.monotonic() < wait_for_lines and (
            not log.exists() or len(log.read_text().splitlines()) < 4):
        time.sleep(0.01)
    assert sorted(log.read_text().splitlines()) == sorted(
        f"{t.id} SUCCEEDED {len(GOOD)}" for t in trials)
