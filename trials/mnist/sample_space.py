"""Check the search space: train random configurations from it and print accuracy and time.

    python sample_space.py [--samples 12] [--concurrency 2] [--seed 0] [-- extra mnist.py args]

Each sample runs ``mnist.py`` as its own process, ``--concurrency`` at a time, as an experiment
would run them, with the hyperparameters on the command line, drawn by remotetune's own
sampler (NNI's Random tuner). Prints each run's accuracy, wall time and CPU time (user + system:
what the run costs on an idle machine), then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FINAL = re.compile(r"final validation accuracy ([0-9.]+)")


@dataclass(frozen=True)
class Outcome:
    params: dict[str, Any]
    accuracy: float | None  # None: the run failed
    seconds: float  # wall time
    cpu: float  # user + system time of the process: what it costs on an idle machine
    error: str = ""


def load_space(path: Path) -> Any:
    """The search space as remotetune parses it (from a source checkout if not installed)."""
    try:
        from remotetune.space import SearchSpace
    except ImportError:
        sys.path.insert(0, str(HERE.parents[1]))
        from remotetune.space import SearchSpace
    return SearchSpace.parse(json.loads(path.read_text()), file=str(path))


def run_one(params: dict[str, Any], extra: list[str]) -> Outcome:
    command = [sys.executable, str(HERE / "mnist.py"), *extra]
    for name, value in params.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        cpu = usage.ru_utime + usage.ru_stime
        out.seek(0)
        err.seek(0)
        match = FINAL.search(out.read())
        if proc.returncode != 0 or match is None:
            return Outcome(params, None, seconds, cpu, err.read().strip()[-300:])
    return Outcome(params, float(match.group(1)), seconds, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", type=Path, default=HERE / "search_space.json")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("extra", nargs="*", help="passed to mnist.py (after --)")
    args = parser.parse_args(argv)
    space = load_space(args.space)
    rng = random.Random(args.seed)
    configs = [space.sample(rng) for _ in range(args.samples)]
    started = time.monotonic()
    with ThreadPoolExecutor(args.concurrency) as pool:
        outcomes = list(pool.map(lambda p: run_one(p, args.extra), configs))
    wall = time.monotonic() - started
    for i, o in enumerate(outcomes):
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.params.items()
        )
        acc = f"{o.accuracy:.4f}" if o.accuracy is not None else f"FAILED {o.error}"
        print(f"{i:2d}  {acc}  {o.seconds:5.1f} s wall  {o.cpu:5.1f} s cpu  {shown}")
    good = [o.accuracy for o in outcomes if o.accuracy is not None]
    times = [o.seconds for o in outcomes]
    cpus = [o.cpu for o in outcomes]
    hits = sum(1 for a in good if a >= args.target)
    print(
        f"{len(good)}/{len(outcomes)} finished; {hits} reached >= {args.target:.2f}; "
        f"best {max(good, default=float('nan')):.4f}, median {statistics.median(good or [0]):.4f}; "
        f"per run: wall median {statistics.median(times):.1f} s, max {max(times):.1f} s; "
        f"cpu median {statistics.median(cpus):.1f} s, max {max(cpus):.1f} s, "
        f"total {sum(cpus):.1f} s; wall {wall:.1f} s at concurrency {args.concurrency}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
