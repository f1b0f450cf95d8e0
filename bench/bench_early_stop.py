"""Benchmark: early stopping on synthetic learning curves (prints figures; not a test).

Workload (issue 10): ``--trials`` configurations (default 64) of ``trials/curves`` curves
(``--workload smooth``, the default, or ``lr-sweep``: a fifth of the learning rates diverge),
``--epochs`` epochs each (default 20) of ``--epoch`` seconds (0.1), ``--concurrency`` at a time
(4), a Random tuner (``--seed``). Policies: no assessor, Medianstop, ASHA, the Hyperband
advisor (R = epochs, eta = 3, the same number of trials) and Curvefitting; and NNI 3.0 with
its Medianstop (``--nni-policies``: also none and Curvefitting) on the same configurations:
NNI's GridSearch walks the list remotetune's seeded Random tuner draws, handed to the trial
as one JSON ``config``.

``--mode real`` (the default) runs each policy as a real experiment on this machine:
``python -m remotetune.cli run exp.yml --plain`` as a subprocess, ``REMOTETUNE_HOME`` in a
temporary directory, the trial ``trials/curves/curve_trial.py``. Then, in the same run, NNI 3.0
(``nnictl create``, local training service, from its own venv, see ``_nni.py``) with its
Medianstop on the same workload and the same trial file (which imports the real ``nni`` there).
Per policy: the trials, those stopped early, the epochs run (intermediate results, of
trials x epochs), the total trial-seconds (the sum over trials of end - start: remotetune's
store, NNI's REST API), the wall time (remotetune: from spawning the
CLI to its exit; NNI: from spawning ``nnictl create`` to the last trial's end) and the best final
(of the trials that ran their full epochs). Goals: Medianstop and ASHA use at most half the
trial-seconds of no assessor, with a best final within 2% of it; remotetune with Medianstop
takes at most a third of NNI-with-Medianstop's wall time.

``--mode sim`` replays the assessors' decisions on the curves with a virtual clock: no process,
no sleep; every report is assessed when it is made, against every other trial's curve so far.

    python bench/bench_early_stop.py [--mode real|sim] [--trials 64] [--epochs 20] [--epoch 0.1]
        [--concurrency 4] [--seed 0] [--workload smooth|lr-sweep] [--start-step 0]
    python bench/bench_early_stop.py --mode sim --seeds 10 --workload all   # goals by seed
        [--policies none,Medianstop,ASHA,Hyperband,Curvefitting]
        [--no-nni] [--nni-policies Medianstop] [--nni-venv /tmp/nni-venv]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "trials" / "curves"))
sys.path.insert(0, str(ROOT / "bench"))

import _nni  # noqa: E402
import curves  # noqa: E402
import yaml  # noqa: E402

from remotetune.assessors import (  # noqa: E402
    Assessor,
    CurvePoint,
    EarlyStopping,
    TrialView,
    create_assessor,
    value_for_tuner,
)
from remotetune.model import MetricKind, TrialStatus  # noqa: E402
from remotetune.space import SearchSpace  # noqa: E402
from remotetune.store import Store  # noqa: E402
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
             concurrency: int, epoch_s: float, workload: str = "smooth") -> Outcome:
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
        trial.points.append(CurvePoint(step, curves.value(trial.params, step, workload), clock))
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


# Curvefitting's classArgs besides epoch_num: NNI's defaults
CURVEFITTING: Mapping[str, Any] = {"start_step": 6, "threshold": 0.95, "gap": 1}


def file_space() -> SearchSpace:
    """The space as the experiment file gives it: ``yaml.safe_dump`` sorts the keys, and a
    tuner draws the parameters in the space's order."""
    return SearchSpace.parse(yaml.safe_load(yaml.safe_dump(curves.SPACE)))


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The configurations remotetune's Random tuner draws with ``--seed``, in order (it draws
    the same whatever it observes); NNI's GridSearch is given this list."""
    tuner = create_tuner("Random", {}, file_space(), seed=args.seed)
    out = []
    for i in range(args.trials):
        params = tuner.suggest(i, ())
        assert params is not None
        out.append(params)
    return out


def policies(args: argparse.Namespace) -> dict[str, Callable[[], tuple[Tuner, Assessor | None]]]:
    space = file_space()  # the real runs' draws

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
        "Curvefitting": lambda: (random(), create_assessor(
            "Curvefitting", {"epoch_num": args.epochs, **CURVEFITTING})),
    }


def run_seeds(args: argparse.Namespace) -> int:
    """``--seeds N``: the simulation on seeds seed .. seed+N-1 of each workload, one line a
    seed, and on how many seeds each goal policy met both goals."""
    workloads = curves.WORKLOADS if args.workload == "all" else (args.workload,)
    names = ("none",) + GOAL_POLICIES
    print(f"{args.trials} trials x {args.epochs} epochs, concurrency {args.concurrency}, "
          f"Medianstop start_step {args.start_step}, ASHA min_resource {args.asha_min} eta "
          f"{args.asha_eta} (simulated; epochs run, of none's, and best final vs none)")
    print(f"{'workload':<9} {'seed':>4}  " + "  ".join(f"{n:>22}" for n in GOAL_POLICIES))
    for workload in workloads:
        met = dict.fromkeys(GOAL_POLICIES, 0)
        for seed in range(args.seed, args.seed + args.seeds):
            one = argparse.Namespace(**{**vars(args), "seed": seed, "workload": workload})
            made = policies(one)
            runs = {}
            for name in names:
                tuner, assessor = made[name]()
                runs[name] = simulate(name, tuner, assessor, trials=args.trials,
                                      epochs=args.epochs, concurrency=args.concurrency,
                                      epoch_s=args.epoch, workload=workload)
            base, cells = runs["none"], []
            for name in GOAL_POLICIES:
                share, best = runs[name].trial_epochs / base.trial_epochs, runs[name].best
                ok = share <= 0.5 and best >= 0.98 * base.best
                met[name] += ok
                verdict = "met" if ok else "-"
                cells.append(f"{share:>6.0%} {best / base.best - 1:>+7.2%} {verdict:>6}")
            print(f"{workload:<9} {seed:>4}  " + "  ".join(f"{c:>22}" for c in cells))
        print(f"{workload}: both goals met on " + ", ".join(
            f"{name} {met[name]} of {args.seeds} seeds" for name in GOAL_POLICIES))
    return 0


def run_sim(args: argparse.Namespace) -> int:
    if args.seeds > 1 or args.workload == "all":
        return run_seeds(args)
    results = []
    for name, make in policies(args).items():
        tuner, assessor = make()
        results.append(simulate(name, tuner, assessor, trials=args.trials, epochs=args.epochs,
                                concurrency=args.concurrency, epoch_s=args.epoch,
                                workload=args.workload))
    base = results[0]
    print(f"{args.trials} trials x {args.epochs} epochs of {args.epoch:g} s, concurrency "
          f"{args.concurrency}, seed {args.seed}, workload {args.workload} (simulated)")
    print(f"{'policy':<11} {'trials':>6} {'epochs':>7} {'trial-s':>8} {'saved':>6} "
          f"{'wall s':>7} {'stopped':>7} {'best final':>10} {'vs none':>8}")
    for r in results:
        saved = 1 - r.trial_epochs / base.trial_epochs
        print(f"{r.policy:<11} {r.trials:>6} {r.trial_epochs:>7} "
              f"{r.trial_epochs * args.epoch:>8.1f} {saved:>6.0%} {r.wall:>7.1f} "
              f"{r.stopped:>7} {r.best:>10.4f} {r.best / base.best - 1:>+8.2%}")
    for r in results:
        if r.policy in GOAL_POLICIES:
            half = r.trial_epochs <= base.trial_epochs / 2
            close = r.best >= 0.98 * base.best
            print(f"goal {r.policy}: trial-seconds <= half of none: {'met' if half else 'MISSED'}"
                  f"; best final within 2%: {'met' if close else 'MISSED'}")
    return 0


# ---------------------------------------------------------------------------- real runs

GOAL_POLICIES = ("Medianstop", "ASHA")
NNI_POLICIES = ("none", "Medianstop", "Curvefitting")


@dataclass(frozen=True)
class RealOutcome:
    policy: str
    trials: int
    stopped: int
    epochs: int  # intermediate results reported, over all trials
    trial_seconds: float
    wall: float
    best: float | None
    note: str = ""


def _assessor_keys(policy: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``assessor`` of ``policy`` with NNI's names and classArgs (None: no assessor)."""
    if policy == "Medianstop":
        return {"name": "Medianstop", "classArgs": {"start_step": args.start_step}}
    if policy == "ASHA":
        return {"name": "ASHA", "classArgs": {
            "min_resource": args.asha_min, "eta": args.asha_eta, "max_resource": args.epochs}}
    if policy == "Curvefitting":
        return {"name": "Curvefitting", "classArgs": {"epoch_num": args.epochs, **CURVEFITTING}}
    if policy in ("none", "Hyperband"):
        return None
    raise SystemExit(f"unknown policy {policy!r} (none, Medianstop, ASHA, Hyperband, "
                     "Curvefitting)")


def _policy_keys(policy: str, args: argparse.Namespace) -> dict[str, Any]:
    """The experiment-file keys that make ``policy`` (NNI's names and classArgs)."""
    if policy == "Hyperband":
        return {"advisor": {"name": "Hyperband", "classArgs": {"R": args.epochs, "eta": 3}}}
    keys: dict[str, Any] = {"tuner": {"name": "Random"}}
    assessor = _assessor_keys(policy, args)
    if assessor is not None:
        keys["assessor"] = assessor
    return keys


def _workload(args: argparse.Namespace, base: Path, python: str) -> dict[str, Any]:
    """Keys shared by remotetune and NNI: the trial (copied to ``base/code``) and its space."""
    code = base / "code"
    shutil.copytree(ROOT / "trials" / "curves", code,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {
        "searchSpace": curves.SPACE,
        "trialCommand": f"{python} curve_trial.py --epochs {args.epochs} "
                        f"--epoch-seconds {args.epoch:g} --workload {args.workload}",
        "trialCodeDirectory": str(code),
        "trialConcurrency": args.concurrency,
        "maxTrialNumber": args.trials,
    }


def _full_budget(trial: Any, epochs: int) -> bool:
    return int(trial.parameters.get(BUDGET_KEY, epochs)) >= epochs


def run_remotetune(policy: str, args: argparse.Namespace,
                   configs: list[dict[str, Any]]) -> RealOutcome:
    """One experiment through the CLI, on this machine; figures from its store."""
    with tempfile.TemporaryDirectory(prefix="bench-es-") as tmp:
        base = Path(tmp)
        experiment = {"experimentName": f"bench-es-{policy}", "seed": args.seed,
                      **_workload(args, base, sys.executable), **_policy_keys(policy, args)}
        (base / "experiment.yml").write_text(yaml.safe_dump(experiment))
        env = dict(os.environ, REMOTETUNE_HOME=str(base / "home"),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "remotetune.cli", "run", str(base / "experiment.yml"),
             "--plain"], env=env, capture_output=True, text=True, timeout=3600, cwd=base)
        wall = time.time() - t0
        if done.returncode != 0:
            raise RuntimeError(f"remotetune {policy} failed ({done.returncode}):\n"
                               f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        with Store(base / "home" / "remotetune.db") as store:
            (exp,) = store.experiments()
            trials = store.trials(exp.id)
            epochs = sum(m.kind is MetricKind.INTERMEDIATE for m in store.metrics(exp.id))
    spans = [t.ended_at - t.started_at for t in trials if t.started_at and t.ended_at]
    finals = [t.final for t in trials if t.status is TrialStatus.SUCCEEDED
              and t.final is not None and _full_budget(t, args.epochs)]
    stopped = sum(t.status is TrialStatus.EARLY_STOPPED for t in trials)
    note = ""
    if policy != "Hyperband":  # the others draw from the same seeded Random tuner
        drawn = {t.parameter_id: dict(t.parameters) for t in trials}
        other = sum(drawn.get(i) != c for i, c in enumerate(configs))
        note = f"{other} configurations differ from the list NNI ran" if other else ""
    return RealOutcome(policy, len(trials), stopped, epochs, sum(spans), wall,
                       max(finals, default=None), note)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_nni(policy: str, args: argparse.Namespace,
            configs: list[dict[str, Any]]) -> RealOutcome:
    """NNI 3.0, local training service, GridSearch over ``configs``; REST API figures.

    ``nnictl create`` is tried twice: under load its manager sometimes misses its start-up
    check (``Expecting value``), which says nothing about the experiment.
    """
    for attempt in (1, 2):
        try:
            return _nni_once(policy, args, configs)
        except RuntimeError as exc:
            if attempt == 2 or "nnictl create failed" not in str(exc):
                raise
            print(f"  NNI: {str(exc).splitlines()[0]}; trying once more", flush=True)
    raise AssertionError("unreachable")


# NNI 3.0's local training service marks a trial its assessor stopped USER_CANCELED, not
# EARLY_STOPPED: ``V3asV1.cancelTrialJob`` sets ``isEarlyStopped`` only after awaiting
# ``stopTrial``, and by then ``onTrialEnd`` has set the status. Nothing else cancels a trial
# here, so both count as stopped by the assessor.
NNI_STOPPED = ("EARLY_STOPPED", "USER_CANCELED")


def _nni_config(policy: str, args: argparse.Namespace, base: Path,
                configs: list[dict[str, Any]]) -> dict[str, Any]:
    workload = _workload(args, base, str(args.nni_venv / "bin" / "python"))
    listed = [json.dumps(c, sort_keys=True) for c in configs]
    config = {
        "experimentName": f"bench-es-nni-{policy}",
        **workload,
        "searchSpace": {"config": {"_type": "choice", "_value": listed}},
        "tuner": {"name": "GridSearch"},  # walks the choices in order: configs[0], [1], ...
        "experimentWorkingDirectory": str(base / "nni-experiments"),
        "trainingService": {"platform": "local"},
    }
    assessor = _assessor_keys(policy, args)
    if assessor is not None:
        args_ = {"optimize_mode": "maximize", **assessor["classArgs"]}
        if policy == "Curvefitting":
            args_.pop("optimize_mode")  # NNI's Curvefitting maximizes and has no such arg
        config["assessor"] = {"name": assessor["name"], "classArgs": args_}
    return config


def _nni_once(policy: str, args: argparse.Namespace,
              configs: list[dict[str, Any]]) -> RealOutcome:
    with tempfile.TemporaryDirectory(prefix="bench-es-nni-") as tmp:
        base = Path(tmp)
        (base / "config.yml").write_text(yaml.safe_dump(_nni_config(policy, args, base,
                                                                    configs)))
        port = _free_port()
        t0 = time.time()
        with _nni.created(args.nni_venv, base / "config.yml", port):
            status, jobs = _nni.wait(port, timeout=3600, interval=1.0, patient=True)
            metrics = _nni.api(port, "metric-data")
        if status.get("status") != "DONE":
            raise RuntimeError(f"NNI ended {status}")
    ended = [j for j in jobs if j.get("startTime") and j.get("endTime")]
    if len(ended) != len(jobs) or len(jobs) != args.trials:
        raise RuntimeError(f"NNI: {len(jobs)} trials, {len(ended)} with a start and an end")
    finals = [v for j in jobs if j.get("status") == "SUCCEEDED"
              and (v := _nni.final_value(j)) is not None]
    epochs = sum(m.get("type") == "PERIODICAL" for m in metrics)
    return RealOutcome(
        f"NNI {policy}", len(jobs), sum(j.get("status") in NNI_STOPPED for j in jobs), epochs,
        sum(j["endTime"] - j["startTime"] for j in ended) / 1000,
        max(j["endTime"] for j in ended) / 1000 - t0, max(finals, default=None))


def _ratio(value: float | None, base: float | None) -> str:
    return "" if value is None or not base else f"{value / base:.0%}"


def _table(results: list[RealOutcome], args: argparse.Namespace) -> None:
    base = next((r for r in results if r.policy == "none"), None)
    full = args.trials * args.epochs
    print(f"{'policy':<17} {'trials':>6} {'stopped':>7} {'trial-s':>8} {'vs none':>7} "
          f"{'wall s':>7} {'best final':>10} {'vs none':>8} {'epochs':>6} {'of all':>6}")
    for r in results:
        best = "" if r.best is None else f"{r.best:.4f}"
        delta = "" if r.best is None or base is None or base.best is None \
            else f"{r.best / base.best - 1:+.2%}"
        own_base = next((b for b in results if b.policy == "NNI none"), None) \
            if r.policy.startswith("NNI") else base
        print(f"{r.policy:<17} {r.trials:>6} {r.stopped:>7} {r.trial_seconds:>8.1f} "
              f"{_ratio(r.trial_seconds, own_base and own_base.trial_seconds):>7} "
              f"{r.wall:>7.1f} {best:>10} {delta:>8} {r.epochs:>6} {r.epochs / full:>6.0%}")
    for r in results:
        if r.note:
            print(f"note: {r.policy}: {r.note}")


def print_real(results: list[RealOutcome], args: argparse.Namespace) -> None:
    _table(results, args)
    by_name = {r.policy: r for r in results}
    base = by_name.get("none")
    for name in GOAL_POLICIES:
        r = by_name.get(name)
        if r is None or base is None:
            continue
        half = r.trial_seconds <= base.trial_seconds / 2
        close = r.best is not None and base.best is not None and r.best >= 0.98 * base.best
        print(f"goal {name}: trial-seconds {_ratio(r.trial_seconds, base.trial_seconds)} of "
              f"none (<= 50%: {'met' if half else 'MISSED'}); best final within 2%: "
              f"{'met' if close else 'MISSED'}")
    for name in ("Medianstop", "Curvefitting"):
        ours, theirs = by_name.get(name), by_name.get(f"NNI {name}")
        if ours and theirs:
            full = args.trials * args.epochs
            print(f"rule {name}, same configurations: epochs run remotetune "
                  f"{ours.epochs / full:.0%} ({ours.stopped} stopped), NNI "
                  f"{theirs.epochs / full:.0%} ({theirs.stopped} stopped)")
    ours, theirs = by_name.get("Medianstop"), by_name.get("NNI Medianstop")
    if ours and theirs:
        share = ours.wall / theirs.wall
        print(f"goal wall: remotetune Medianstop {ours.wall:.1f} s = {share:.0%} of NNI "
              f"Medianstop {theirs.wall:.1f} s (<= 33%: {'met' if share <= 1 / 3 else 'MISSED'})")


def run_real(args: argparse.Namespace) -> int:
    print(time.strftime("%Y-%m-%d %H:%M"), f"{os.cpu_count()} cores, load",
          " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
    print(f"{args.trials} trials x {args.epochs} epochs of {args.epoch:g} s, concurrency "
          f"{args.concurrency}, seed {args.seed}, workload {args.workload} (real: remotetune "
          f"CLI on this machine; NNI 3.0 local)", flush=True)
    configs = configurations(args)
    results: list[RealOutcome] = []
    for policy in args.policies.split(","):
        results.append(run_remotetune(policy.strip(), args, configs))
        print(f"  ran remotetune {policy}: wall {results[-1].wall:.1f} s", flush=True)
    why = "skipped (--no-nni)" if args.no_nni else _nni.missing(args.nni_venv)
    for policy in [] if why else args.nni_policies.split(","):
        if policy.strip() not in NNI_POLICIES:
            raise SystemExit(f"--nni-policies: {policy!r} is not one of {NNI_POLICIES}")
        try:
            results.append(run_nni(policy.strip(), args, configs))
            print(f"  ran NNI {policy}: wall {results[-1].wall:.1f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - report it, print the rest
            why = f"{policy} failed: {exc}"
            break
    print_real(results, args)
    if why is not None:
        print(f"NNI 3.0 {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["real", "sim"], default="real")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=curves.EPOCHS)
    parser.add_argument("--epoch", type=float, default=0.1, help="seconds per epoch")
    parser.add_argument("--concurrency", type=int, default=4, help="trialConcurrency")
    parser.add_argument("--workload", choices=curves.WORKLOADS + ("all",), default="smooth",
                        help="sim mode also takes 'all'")
    parser.add_argument("--start-step", type=int, default=0,
                        help="Medianstop's start_step (NNI's default, 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="sim mode: seeds seed .. seed+N-1, one line each")
    parser.add_argument("--asha-min", type=int, default=3, help="ASHA's min_resource")
    parser.add_argument("--asha-eta", type=int, default=3, help="ASHA's eta")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", default="none,Medianstop,ASHA,Hyperband,Curvefitting",
                        help="real mode: remotetune policies to run, comma-separated")
    parser.add_argument("--no-nni", action="store_true", help="real mode: skip NNI")
    parser.add_argument("--nni-policies", default="Medianstop",
                        help="real mode: NNI runs, comma-separated (none, Medianstop, "
                             "Curvefitting)")
    parser.add_argument("--nni-venv", type=Path, default=_nni.DEFAULT_VENV)
    args = parser.parse_args(argv)
    return run_sim(args) if args.mode == "sim" else run_real(args)


if __name__ == "__main__":
    sys.exit(main())
