"""Changing an experiment's limits: the controller's side, against the fake backend and clock.

``remotetune update`` leaves a request file; the controller applies it, records an event
and writes the new limits to the experiment record (config included) for ``resume``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remotetune.change_requests import pending, requests_dir, write_request
from remotetune.config import parse_limits
from remotetune.errors import ConfigError
from remotetune.model import ExperimentStatus, TrialRecord, TrialStatus
from tests.test_controller import Rig, statuses


def _request_at(rig: Rig, controller: Any, after: float, limits: dict[str, Any]) -> None:
    def leave() -> None:
        write_request(rig.tmp_path / "home", controller.experiment_id, limits)

    rig.backend.at.append((rig.clock.now() + after, leave))


def _limit_events(rig: Rig, exp_id: str) -> list[str]:
    return [e.message for e in rig.store.events(exp_id, limit=None)
            if e.message.startswith("limits changed")]


def _most_running(trials: list[TrialRecord], since: float) -> int:
    """The most trials running at once among starts at or after ``since``."""
    most = 0
    for t in trials:
        if t.started_at is None or t.started_at < since:
            continue
        most = max(most, sum(1 for o in trials if o.started_at is not None
                             and o.started_at <= t.started_at < (o.ended_at or 1e18)))
    return most


def test_a_request_raises_max_trials_records_an_event_and_is_deleted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=4)
    controller = rig.controller()
    exp = controller.create()
    _request_at(rig, controller, 3, {"maxTrialNumber": 7, "maxExperimentDuration": "2h"})
    assert controller.run() is ExperimentStatus.DONE
    trials = rig.store.trials(exp.id)
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 7
    assert _limit_events(rig, exp.id) == [
        "limits changed by remotetune update: maxTrialNumber 4 -> 7, "
        "maxExperimentDuration unset -> 2h"]
    stored = rig.store.experiment(exp.id)
    assert (stored.max_trial_number, stored.max_experiment_duration) == (7, 7200.0)
    assert stored.config["maxTrialNumber"] == 7  # where resume reads it
    assert stored.config["maxExperimentDuration"] == "2h"
    assert pending(requests_dir(tmp_path / "home", exp.id)) == []


def test_lowering_concurrency_kills_nothing_and_launches_fewer(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=6)
    controller = rig.controller()
    exp = controller.create()
    started = rig.clock.now()
    _request_at(rig, controller, 1, {"trialConcurrency": 1})
    assert controller.run() is ExperimentStatus.DONE
    trials = rig.store.trials(exp.id)
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 6
    assert rig.backend.kills == []
    assert _most_running(trials, started) == 2  # the first two ran together...
    assert _most_running(trials, started + 1.5) == 1  # ...every later one alone
    assert rig.store.experiment(exp.id).trial_concurrency == 1


def test_max_trials_below_the_started_ones_ends_after_they_finish(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=6)
    controller = rig.controller()
    exp = controller.create()
    _request_at(rig, controller, 1, {"maxTrialNumber": 1})
    assert controller.run() is ExperimentStatus.DONE
    trials = rig.store.trials(exp.id)
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 2  # not killed, none new
    assert rig.backend.kills == []


def test_a_bad_request_is_ignored_with_a_warning(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=3)
    controller = rig.controller()
    exp = controller.create()
    directory = requests_dir(tmp_path / "home", exp.id)
    directory.mkdir(parents=True)
    (directory / "0001-bad.json").write_text('{"limits": {"trialConcurrency": 0}}')
    assert controller.run() is ExperimentStatus.DONE
    assert len(rig.store.trials(exp.id)) == 3
    warned = [e for e in rig.store.events(exp.id, limit=None) if "ignored a change" in e.message]
    assert len(warned) == 1 and warned[0].level == "warning"
    assert "trialConcurrency" in warned[0].message
    assert pending(directory) == []


def test_resume_with_new_limits_extends_a_finished_experiment(tmp_path: Path) -> None:
    space = {"x": {"_type": "choice", "_value": [1, 2, 3, 4, 5, 6]}}
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=3, searchSpace=space,
              tuner={"name": "GridSearch"})
    first, trials = rig.run()
    assert statuses(trials) == [TrialStatus.SUCCEEDED] * 3
    exp = rig.store.experiment(trials[0].experiment_id)
    rig.config = parse_limits({"maxTrialNumber": 6}).apply(rig.config)
    second = rig.controller(experiment=exp)
    assert second.run() is ExperimentStatus.DONE
    after = rig.store.trials(exp.id)
    assert statuses(after) == [TrialStatus.SUCCEEDED] * 6
    assert [t.id for t in after[:3]] == [t.id for t in trials]  # not re-run
    assert [t.parameter_id for t in after] == list(range(6))
    assert sorted(t.parameters["x"] for t in after) == [1, 2, 3, 4, 5, 6]  # history used
    assert rig.store.experiment(exp.id).max_trial_number == 6
    assert any("limits changed by remotetune resume" in m for m in
               [e.message for e in rig.store.events(exp.id, limit=None)])


@pytest.mark.parametrize("limits, text", [
    ({"trialConcurrency": 0}, "trialConcurrency: expected an integer >= 1"),
    ({"maxTrialNumber": "many"}, "maxTrialNumber: expected an integer"),
    ({"maxExperimentDuration": "soon"}, "maxExperimentDuration: expected a duration"),
    ({"maxExperimentDuration": "0s"}, "must be more than zero seconds"),
    ({"trialCommand": "x"}, "unknown key"),
])
def test_limits_are_checked_like_the_experiment_file(limits: dict[str, Any], text: str,
                                                     tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=text):
        write_request(tmp_path, "exp1", limits)
    assert pending(requests_dir(tmp_path, "exp1")) == []


def test_a_request_is_taken_within_a_second_even_with_a_long_poll_interval(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, {"a": 2}, maxTrialNumber=2, pollInterval="5s")
    controller = rig.controller()
    exp = controller.create()
    written: list[float] = []

    def leave() -> None:
        written.append(rig.clock.now())
        write_request(tmp_path / "home", exp.id, {"maxTrialNumber": 3})

    rig.backend.at.append((rig.clock.now() + 2, leave))
    assert controller.run() is ExperimentStatus.DONE
    applied = [e.time for e in rig.store.events(exp.id, limit=None)
               if e.message.startswith("limits changed")]
    assert len(applied) == 1 and 0 <= applied[0] - written[0] <= 1.0
    assert len(rig.store.trials(exp.id)) == 3


def test_resume_max_trials_past_the_duration_asks_for_a_longer_one(tmp_path: Path) -> None:
    import argparse
    import time

    from remotetune.cli_update import resume_config

    rig = Rig(tmp_path, maxExperimentDuration="1m")
    exp = rig.controller().create()
    started = argparse.Namespace(started_at=time.time() - 600, id=exp.id)
    args = argparse.Namespace(max_trials=10, max_duration=None)
    with pytest.raises(ConfigError, match="give a longer --max-duration"):
        resume_config(args, rig.config, started)
    longer = resume_config(argparse.Namespace(max_trials=10, max_duration="1h"), rig.config,
                           started)
    assert (longer.max_trial_number, longer.max_experiment_duration) == (10, 3600.0)
    assert resume_config(argparse.Namespace(max_trials=None, max_duration=None), rig.config,
                         started) is rig.config  # nothing given: as stored


def test_running_holder_tells_whether_a_controller_holds_the_lock(tmp_path: Path) -> None:
    import os

    from remotetune.lock import ExperimentLock, running_holder

    assert running_holder(tmp_path, "exp1") is None  # never run here
    with ExperimentLock(tmp_path, "exp1"):
        holder = running_holder(tmp_path, "exp1")
        assert holder is not None and holder.pid == os.getpid()
    assert running_holder(tmp_path, "exp1") is None  # released
    ExperimentLock(tmp_path, "exp1").acquire().release()  # the look left it free
