"""Hyperband and BOHB: NNI's bracket formulas, schedules, 'not now' versus exhausted, restore."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners import (
    BUDGET_KEY,
    BUILTIN_ADVISORS,
    BohbTuner,
    HyperbandTuner,
    Tuner,
    bracket_table,
    create_tuner,
)

ROOT = Path(__file__).resolve().parent.parent
SPACE = SearchSpace.parse({
    "x": {"_type": "uniform", "_value": [0.0, 1.0]},
    "opt": {"_type": "choice", "_value": ["sgd", "adam"]},
})


def nni_table(top: float, eta: int, bottom: float = 1.0) -> list[list[tuple[int, int]]]:
    """NNI's formulas, written out once more: s_max, then n and r per bracket and round."""
    eps = 1e-6
    s_max = math.floor(math.log(top / bottom, eta) + eps)
    out = []
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) * eta**s / (s + 1) - eps)
        r = top / eta**s
        out.append([(math.floor(n / eta**i + eps), math.floor(r * eta**i + eps))
                    for i in range(s + 1)])
    return out


def test_bracket_table_is_nni_and_the_paper() -> None:
    # Li et al. 2018, table 1 (R = 81, eta = 3)
    assert bracket_table(81, 3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    assert bracket_table(60, 3) == [[(27, 2), (9, 6), (3, 20), (1, 60)], [(12, 6), (4, 20),
                                    (1, 60)], [(6, 20), (2, 60)], [(4, 60)]]
    for top, eta, bottom in [(9, 3, 1), (100, 3, 1), (16, 2, 1), (27, 3, 3), (64, 4, 2),
                             (1, 3, 1), (50, 5, 1)]:
        assert bracket_table(top, eta, bottom) == nni_table(top, eta, bottom)


def objective(params: Mapping[str, Any]) -> float:
    """Better with x near 0.7, and with more budget."""
    return -((params["x"] - 0.7) ** 2) + 0.01 * params[BUDGET_KEY]


def strip(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != BUDGET_KEY}


Driver = Callable[[Tuner, int], list[dict[str, Any]]]


def drive(tuner: Tuner, n: int, *, concurrency: int = 4,
          value: Callable[[Mapping[str, Any]], float | None] = objective,
          ) -> tuple[list[dict[str, Any]], list[TrialRecord]]:
    """A tiny controller: up to ``concurrency`` running, oldest finishes first; asks again
    after an observe when the tuner says 'not now'. Returns the suggestions and the history."""
    issued: list[dict[str, Any]] = []
    history: list[TrialRecord] = []
    running: list[int] = []
    clock = 0.0
    while len(issued) < n:
        params = tuner.suggest(len(issued), tuple(history)) if len(running) < concurrency \
            else None
        if params is not None:
            clock += 1
            history.append(TrialRecord(id=f"t{len(issued)}", experiment_id="e",
                                       sequence=len(issued), parameters=params,
                                       status=TrialStatus.RUNNING,
                                       parameter_id=len(issued), created_at=clock))
            running.append(len(issued))
            issued.append(params)
            continue
        assert running, "the tuner waits but nothing is running"
        if len(running) < concurrency:
            assert not tuner.is_exhausted()
        pid = running.pop(0)
        clock += 1
        result = value(issued[pid])
        status = TrialStatus.SUCCEEDED if result is not None else TrialStatus.FAILED
        history[pid] = replace(history[pid], status=status, final=result, ended_at=clock)
        tuner.observe(pid, issued[pid], result, status)
    return issued, history


def test_hyperband_issues_nni_schedule_with_the_budget_as_a_parameter() -> None:
    tuner = create_tuner("Hyperband", {"R": 9, "eta": 3}, SPACE, seed=1)
    issued, _ = drive(tuner, 22, concurrency=100)
    budgets = [p[BUDGET_KEY] for p in issued]
    # parallelism with free slots: the next bracket opens as soon as the queue is empty
    # (s = 2, 1, 0, then a new Hyperband iteration), nothing waits for results
    assert budgets == [1] * 9 + [3] * 5 + [9] * 3 + [1] * 5
    for p in issued:
        assert SPACE.contains({k: v for k, v in p.items() if k != BUDGET_KEY})
        assert isinstance(p[BUDGET_KEY], int)


def test_hyperband_promotes_the_best_of_a_round() -> None:
    tuner = HyperbandTuner(SPACE, seed=3, R=9, eta=3, exec_mode="serial")
    issued, history = drive(tuner, 13, concurrency=9)
    first = [p for p in issued[:9]]
    promoted = [p for p in issued[9:12]]
    assert all(p[BUDGET_KEY] == 3 for p in promoted)
    ranked = sorted(first, key=objective, reverse=True)[:3]
    strip = [{k: v for k, v in p.items() if k != BUDGET_KEY} for p in ranked]
    assert [{k: v for k, v in p.items() if k != BUDGET_KEY} for p in promoted] == strip
    assert issued[12][BUDGET_KEY] == 9


def test_minimize_and_failed_trials_rank_last() -> None:
    tuner = HyperbandTuner(SPACE, OptimizeMode.MINIMIZE, seed=0, R=3, eta=3, exec_mode="serial")
    def value(params: Mapping[str, Any]) -> float | None:
        return None if params["x"] < 0.3 else params["x"]

    issued, _ = drive(tuner, 4, concurrency=3, value=value)
    first, promoted = issued[:3], issued[3]
    ok = [p for p in first if p["x"] >= 0.3]
    expected = min(ok, key=lambda p: p["x"]) if ok else None
    if expected is not None:
        assert promoted["x"] == expected["x"]


def test_serial_hyperband_and_bohb_say_not_now_and_never_exhausted() -> None:
    for tuner in (HyperbandTuner(SPACE, seed=0, R=9, eta=3, exec_mode="serial"),
                  BohbTuner(SPACE, seed=0, min_budget=1, max_budget=9, eta=3)):
        for pid in range(9):
            assert tuner.suggest(pid, ()) is not None
        assert tuner.suggest(9, ()) is None
        assert tuner.is_exhausted() is False
    parallel = HyperbandTuner(SPACE, seed=0, R=9, eta=3)
    assert all(parallel.suggest(pid, ()) is not None for pid in range(40))
    grid = create_tuner("GridSearch", {}, SearchSpace.parse(
        {"a": {"_type": "choice", "_value": [1]}}))
    assert grid.suggest(0, ()) is not None and grid.suggest(1, ()) is None
    assert grid.is_exhausted() is True


def test_bohb_runs_one_bracket_at_a_time_with_nni_budgets() -> None:
    tuner = create_tuner("BOHB", {"min_budget": 1, "max_budget": 9, "eta": 3}, SPACE, seed=2)
    issued, _ = drive(tuner, 9 + 3 + 1 + 5 + 1 + 3 + 9, concurrency=4)
    budgets = [p[BUDGET_KEY] for p in issued]
    assert budgets == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3 + [1] * 9


def test_bohb_samples_from_tpe_once_a_budget_has_enough_results(monkeypatch: Any) -> None:
    tuner = BohbTuner(SPACE, seed=0, min_budget=1, max_budget=9, eta=3,
                      min_points_in_model=4, random_fraction=0.0)
    calls: list[int] = []
    real = tuner._tpe

    def spy(results: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
        calls.append(len(results))
        return real(results)

    monkeypatch.setattr(tuner, "_tpe", spy)
    issued, _ = drive(tuner, 9 + 3 + 1 + 5, concurrency=4)
    assert tuner.model_budget() == 3  # budget 1 has 9 results, 3 has 3 + 5 ... the largest ready
    # configurations are drawn when issued: once budget 1 had 4 results, from the model
    assert calls and calls[0] == 4 and len(calls) >= 5
    for p in issued:
        assert SPACE.contains({k: v for k, v in p.items() if k != BUDGET_KEY})


@pytest.mark.parametrize("name", sorted(BUILTIN_ADVISORS))
def test_restore_rebuilds_the_brackets(name: str) -> None:
    args = {"R": 9, "eta": 3} if name == "Hyperband" else {"max_budget": 9, "eta": 3}
    original = create_tuner(name, args, SPACE, seed=5)
    issued, history = drive(original, 11, concurrency=3)
    resumed = create_tuner(name, args, SPACE, seed=99)
    resumed.restore(history)
    assert resumed.brackets == original.brackets  # same rounds, trials, results
    # both now hold the same brackets: finishing the running trials promotes the same
    running = [r for r in history if r.status is TrialStatus.RUNNING]
    for tuner in (original, resumed):
        for r in running:
            tuner.observe(r.parameter_id, r.parameters, objective(r.parameters),
                          TrialStatus.SUCCEEDED)
    nxt = [[t.suggest(100 + i, ()) for i in range(6)] for t in (original, resumed)]
    assert [p[BUDGET_KEY] if p else None for p in nxt[0]] == \
        [p[BUDGET_KEY] if p else None for p in nxt[1]]
    seen = [strip(p) for p in issued]
    promoted = [[p for p in ps if p and strip(p) in seen] for ps in nxt]  # not new draws
    assert promoted[0] == promoted[1]


def test_advisors_take_no_assessor_and_reject_bad_args() -> None:
    assert not HyperbandTuner.accepts_assessor and not BohbTuner.accepts_assessor
    assert create_tuner("TPE", {}, SPACE).accepts_assessor
    with pytest.raises(Exception, match="exec_mode"):
        create_tuner("Hyperband", {"exec_mode": "fast"}, SPACE)
    with pytest.raises(Exception, match="max_budget must be >= min_budget"):
        create_tuner("BOHB", {"min_budget": 5, "max_budget": 2}, SPACE)
    with pytest.raises(Exception, match="did you mean 'eta'"):
        create_tuner("Hyperband", {"etaa": 3}, SPACE)


def test_hyperband_runs_through_the_cli_and_trials_read_their_budget(tmp_path: Path) -> None:
    """NNI 2's ``advisor:`` key, the curve trial reading ``TRIAL_BUDGET`` with the trial API."""
    (tmp_path / "hb.yml").write_text(
        "experimentName: hb\n"
        "searchSpace:\n"
        "  lr: {_type: loguniform, _value: [0.0001, 1.0]}\n"
        "  width: {_type: choice, _value: [16, 64, 256]}\n"
        "trialCommand: python3 curve_trial.py --epoch-seconds 0.01\n"
        f"trialCodeDirectory: {ROOT / 'trials' / 'curves'}\n"
        "trialConcurrency: 3\n"
        "maxTrialNumber: 12\n"
        "advisor:\n"
        "  name: Hyperband\n"
        "  classArgs: {R: 9, eta: 3}\n"
    )
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "remotetune.cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=180)

    done = cli("run", "hb.yml", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    exp = json.loads(cli("ls", "--json").stdout)[0]["id"]
    trials = json.loads(cli("trials", exp, "--json").stdout)
    assert len(trials) == 12 and all(t["status"] == "SUCCEEDED" for t in trials)
    budgets = [t["parameters"][BUDGET_KEY] for t in trials]
    assert sorted(set(budgets)) == [1, 3] and budgets.count(1) == 9  # first bracket: 9 x 1
    for t in trials:  # each trial ran as many epochs as its budget
        assert t["intermediate_count"] == t["parameters"][BUDGET_KEY]


def test_the_stored_config_reloads_with_the_advisor(tmp_path: Path) -> None:
    from remotetune.config import load_experiment, parse_experiment

    (tmp_path / "exp.yml").write_text(
        "searchSpace: {x: {_type: uniform, _value: [0, 1]}}\ntrialCommand: t\n"
        "trialConcurrency: 1\nadvisor: {name: BOHB, classArgs: {max_budget: 9}}\n")
    cfg = load_experiment(tmp_path / "exp.yml")
    again = parse_experiment(cfg.raw, file=cfg.file, base_dir=tmp_path)  # what resume does
    assert again.tuner == cfg.tuner and again.tuner.name == "BOHB"
