"""Benchmark: early stopping on synthetic learning curves (prints figures; not a test).

Workload (issue 10): ``trials`` configurations (default 64) of ``trials/curves`` curves,
``epochs`` epochs each (default 20) of ``epoch`` seconds (0.1), ``concurrency`` at a time.
Policies: no assessor, Medianstop, ASHA, and the Hyperband tuner (R = epochs, eta = 3, the same
number of trials). Prints, per policy, the trial-epochs run, trial-seconds, wall time, the trials
stopped early and the best final found (the best final of the trials that ran to the end of
their budget), with the goals: Medianstop and ASHA use at most half the trial-seconds of no
assessor, with a best final within 2% of it.

``--mode sim`` (the default and, until the controller runs assessors, the only mode) replays
the assessors' decisions on the curves with a virtual clock: no process, no sleep; every
report is assessed when it is made, against every other trial's curve so far, as the
controller will do. The real run (the trial script ``trials/curves/curve_trial.py`` through
``remotetune run``, and NNI 3.0 side by side) is wired once the controller drives assessors.

    python bench/bench_early_stop.py [--trials 64] [--epochs 20] [--concurrency 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "trials" / "curves"))

import curves  # noqa: E402

from remotetune.assessors import (  # noqa: E402
    Assessor,
    CurvePoint,
    EarlyStopping,
    TrialView,
    create_assessor,
    value_for_tuner,
)
from remotetune.model import TrialStatus  # noqa: E402
from remotetune.space import SearchSpace  # noqa: E402
from remotetune.tuners import BUDGET_KEY, Tuner, create_tuner  # noqa: E402


@dataclass
class SimTrial:
    index: int
    params: dict[str, Any]
    epochs: int
    points: list[CurvePoint] = field(default_factory=list)
    status: TrialStatus = TrialStatus.RUNNING
    final: float | None = None

    def view(self) -> TrialView:
        return TrialView(f"t{self.index:04d}", self.params, tuple(self.points), self.status,
                         self.final, self.index)


@dataclass(frozen=True)
class Outcome:
    policy: str
    trials: int
    trial_epochs: int
    wall: float
    stopped: int
    best: float


def simulate(policy: str, tuner: Tuner, assessor: Assessor | None, *, trials: int, epochs: int,
             concurrency: int, epoch_s: float) -> Outcome:
    """Run ``trials`` trials from ``tuner`` on a virtual clock, ``concurrency`` at a time."""
    clock, issued, spent = 0.0, 0, 0
    running: list[tuple[float, int]] = []  # (time of its next report, trial index)
    book: dict[int, SimTrial] = {}
    judge = None if assessor is None else EarlyStopping(assessor, policy)

    def fill() -> None:
        nonlocal issued
        while len(running) < concurrency and issued < trials:
            params = tuner.suggest(issued, ())
            if params is None:
                return  # not now (Hyperband between rounds) or exhausted
            budget = int(params.get(BUDGET_KEY, epochs))
            book[issued] = SimTrial(issued, params, budget)
            heapq.heappush(running, (clock + epoch_s, issued))
            issued += 1

    fill()
    while running:
        clock, index = heapq.heappop(running)
        trial = book[index]
        step = len(trial.points) + 1
        trial.points.append(CurvePoint(step, curves.value(trial.params, step), clock))
        spent += 1
        stop = False
        if judge is not None:
            others = [t.view() for i, t in book.items() if i != index]
            stop = judge.reported(trial.view(), others) is not None
        if stop or step >= trial.epochs:
            trial.status = TrialStatus.EARLY_STOPPED if stop else TrialStatus.SUCCEEDED
            trial.final = None if stop else trial.points[-1].value
            tuner.observe(index, trial.params, value_for_tuner(trial.view()), trial.status)
            if judge is not None:
                judge.finished(trial.view())
            fill()
        else:
            heapq.heappush(running, (clock + epoch_s, index))
    finals = [t.final for t in book.values() if t.final is not None and t.epochs >= epochs]
    return Outcome(policy, issued, spent, clock, sum(
        t.status is TrialStatus.EARLY_STOPPED for t in book.values()), max(finals, default=0.0))


def policies(args: argparse.Namespace) -> dict[str, Callable[[], tuple[Tuner, Assessor | None]]]:
    space = SearchSpace.parse(curves.SPACE)

    def random() -> Tuner:
        return create_tuner("Random", {}, space, seed=args.seed)

    hyperband: Mapping[str, Any] = {"R": args.epochs, "eta": 3}
    return {
        "none": lambda: (random(), None),
        "Medianstop": lambda: (random(), create_assessor(
            "Medianstop", {"start_step": args.start_step})),
        "ASHA": lambda: (random(), create_assessor(
            "ASHA", {"min_resource": args.asha_min, "eta": args.asha_eta,
                     "max_resource": args.epochs})),
        "Hyperband": lambda: (create_tuner("Hyperband", hyperband, space, seed=args.seed), None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["sim"], default="sim")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=curves.EPOCHS)
    parser.add_argument("--epoch", type=float, default=0.1, help="seconds per epoch")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--start-step", type=int, default=2, help="Medianstop's start_step")
    parser.add_argument("--asha-min", type=int, default=3, help="ASHA's min_resource")
    parser.add_argument("--asha-eta", type=int, default=3, help="ASHA's eta")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = []
    for name, make in policies(args).items():
        tuner, assessor = make()
        results.append(simulate(name, tuner, assessor, trials=args.trials, epochs=args.epochs,
                                concurrency=args.concurrency, epoch_s=args.epoch))
    base = results[0]
    print(f"{args.trials} trials x {args.epochs} epochs of {args.epoch:g} s, concurrency "
          f"{args.concurrency}, seed {args.seed} (simulated: virtual clock)")
    print(f"{'policy':<11} {'trials':>6} {'epochs':>7} {'trial-s':>8} {'saved':>6} "
          f"{'wall s':>7} {'stopped':>7} {'best final':>10} {'vs none':>8}")
    for r in results:
        saved = 1 - r.trial_epochs / base.trial_epochs
        print(f"{r.policy:<11} {r.trials:>6} {r.trial_epochs:>7} "
              f"{r.trial_epochs * args.epoch:>8.1f} {saved:>6.0%} {r.wall:>7.1f} "
              f"{r.stopped:>7} {r.best:>10.4f} {r.best / base.best - 1:>+8.2%}")
    for r in results:
        if r.policy in ("Medianstop", "ASHA"):
            half = r.trial_epochs <= base.trial_epochs / 2
            close = r.best >= 0.98 * base.best
            print(f"goal {r.policy}: trial-seconds <= half of none: {'met' if half else 'MISSED'}"
                  f"; best final within 2%: {'met' if close else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
