"""Benchmark: the core engine on the local machine (prints figures; not a test).

Workload (issue 2): 40 trials of `sleep 0.6` with trialConcurrency 4. Prints the wall time,
the time from start to the first running trial, the median and maximum gap between a slot
freeing and the next trial starting, and the TPE suggestion latency after 1,000 finished
trials. Goals: wall <= 7.5 s (ideal 6 s), first trial <= 1 s, median refill gap <= 50 ms.

    python bench/bench_local.py [--trials 40] [--concurrency 4] [--sleep 0.6]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# REMOTETUNE_BENCH_TREE: measure another checkout with this script (issue14/compare.sh).
ROOT = Path(os.environ.get("REMOTETUNE_BENCH_TREE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from remotetune.config import local_machine, parse_experiment  # noqa: E402
from remotetune.controller import Controller, ControllerOptions  # noqa: E402
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus  # noqa: E402
from remotetune.space import SearchSpace  # noqa: E402
from remotetune.store import Store  # noqa: E402
from remotetune.tuners import create_tuner  # noqa: E402

# The controller imports its host pool and code sync when it starts (the CLI's start-up is
# lighter for it); this in-process bench imports them before its clock starts, so that
# "first trial" measures the controller's work and not module imports, as it always did
# (bench_ssh.py's workload runs the CLI and counts every import).
for _module in ("remotetune.backends.hostpool", "remotetune.symlinks", "remotetune.sync",
                "remotetune.transport.local"):
    if importlib.util.find_spec(_module) is not None:  # an older tree lacks some
        importlib.import_module(_module)


def run_workload(n: int, concurrency: int, sleep: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        code = Path(tmp) / "code"
        code.mkdir()
        (code / "README").write_text("sleep trial\n")
        config = parse_experiment(
            {
                "experimentName": "bench-local",
                "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
                "trialCommand": f"sleep {sleep}",
                "trialCodeDirectory": str(code),
                "trialConcurrency": concurrency,
                "maxTrialNumber": n,
                "tuner": {"name": "Random"},
            },
            file=None,
            base_dir=Path(tmp),
        )
        os.environ["REMOTETUNE_HOME"] = str(home)
        store = Store(home / "remotetune.db")
        t0 = time.time()
        controller = Controller(
            config, (local_machine(concurrency),), store, ControllerOptions(home=home)
        )
        exp = controller.create()
        controller.run()
        wall = time.time() - t0
        trials = store.trials(exp.id)
        assert all(t.status is TrialStatus.SUCCEEDED for t in trials), [
            (t.status, t.message) for t in trials
        ]
        starts = sorted(t.started_at for t in trials if t.started_at)
        ends = sorted(t.ended_at for t in trials if t.ended_at)
        gaps = [starts[k + concurrency] - ends[k] for k in range(len(starts) - concurrency)]
        store.close()
        return {
            "wall": wall,
            "first": starts[0] - t0,
            "gap_median": statistics.median(gaps),
            "gap_max": max(gaps),
            "ideal": n / concurrency * sleep,
        }


def tpe_latency(finished: int = 1000) -> float:
    space = SearchSpace.parse(
        {
            "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
            "dropout": {"_type": "uniform", "_value": [0.1, 0.9]},
            "hidden": {"_type": "choice", "_value": [64, 128, 256, 512]},
            "batch": {"_type": "choice", "_value": [16, 32, 64]},
        }
    )
    rng = random.Random(0)
    history = []
    for i in range(finished):
        params = space.sample(rng)
        history.append(
            TrialRecord(
                id=f"t{i}", experiment_id="bench", sequence=i, parameters=params,
                status=TrialStatus.SUCCEEDED, parameter_id=i, final=rng.random(),
            )
        )
    tuner = create_tuner("TPE", {"optimize_mode": OptimizeMode.MAXIMIZE.value}, space, seed=1)
    tuner.restore(history)
    times = []
    for j in range(5):
        t = time.perf_counter()
        tuner.suggest(finished + j, history)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.6)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeat):
        r = run_workload(args.trials, args.concurrency, args.sleep)
        print(
            f"{args.trials} trials of sleep {args.sleep} at {args.concurrency}: "
            f"wall {r['wall']:.2f} s (ideal {r['ideal']:.1f} s, goal <= 7.5 s), "
            f"first trial running after {r['first'] * 1000:.0f} ms (goal <= 1000 ms), "
            f"refill gap median {r['gap_median'] * 1000:.1f} ms (goal <= 50 ms), "
            f"max {r['gap_max'] * 1000:.1f} ms"
        )
    latency = tpe_latency()
    print(f"TPE suggestion latency after 1,000 finished trials: {latency * 1000:.1f} ms")


if __name__ == "__main__":
    main()
