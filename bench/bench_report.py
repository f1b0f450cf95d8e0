"""Benchmark: `remotetune report` on a large experiment (prints figures; not a test).

Workload (issue 11): 1,000 finished trials with 100 intermediate points each, four
parameters (one a nested choice), on 4 hosts x 2 GPUs, in a fresh store. Prints the time to
render the report in this process (imports of plotly and optuna included: they are
imported here first) in wall and CPU time (the CPU time does not grow with the machine's
load), its parts, the file size, and, when Debian's chromium is installed, the
time until the page has drawn in headless chromium. Goals: <= 5 s and <= 15 MB.

    python bench/bench_report.py [--trials 1000] [--points 100] [--no-browser]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from remotetune.model import (  # noqa: E402
    ExperimentRecord,
    ExperimentStatus,
    MetricKind,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import Store  # noqa: E402

T0 = 1_764_000_000.0


def fill(store: Store, n: int, points: int) -> str:
    rng = random.Random(0)
    exp_id = "bench001"
    store.save_experiment(ExperimentRecord(
        id=exp_id, name="bench", status=ExperimentStatus.DONE, config={"searchSpace": {}},
        tuner="TPE", optimize_mode=OptimizeMode.MAXIMIZE, max_trial_number=n,
        trial_concurrency=8, created_at=T0, started_at=T0, ended_at=T0 + n * 10,
    ))
    with store.batch():
        for i in range(n):
            tid = f"t{i:05d}"
            lr = 10 ** rng.uniform(-4, -1)
            stopped = rng.random() < 0.2
            steps = points // 3 if stopped else points
            curve = [0.9 * (1 - math.exp(-0.05 * (k + 1))) + rng.gauss(0, 0.01)
                     for k in range(steps)]
            store.save_trial(TrialRecord(
                id=tid, experiment_id=exp_id, sequence=i,
                parameters={"lr": lr, "dropout": rng.uniform(0, 0.5),
                            "batch_size": rng.choice([16, 32, 64, 128]),
                            "optimizer": rng.choice([{"_name": "sgd", "momentum": 0.9},
                                                     {"_name": "adam"}])},
                status=TrialStatus.EARLY_STOPPED if stopped else TrialStatus.SUCCEEDED,
                host=f"gpu{i % 4}", gpus=(i // 4 % 2,), started_at=T0 + 10 * (i // 8),
                ended_at=T0 + 10 * (i // 8) + 9, final=None if stopped else curve[-1],
                intermediate_count=steps,
            ))
            pts = [MetricPoint(tid, k, MetricKind.INTERMEDIATE, v, v, T0 + k)
                   for k, v in enumerate(curve)]
            store.add_metrics(exp_id, tid, pts, new_offset=len(pts))
    return exp_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "rt.db") as store:
        t = time.perf_counter()
        exp_id = fill(store, args.trials, args.points)
        print(f"store filled: {args.trials} trials x {args.points} points "
              f"in {time.perf_counter() - t:.1f} s")
        t0, c0 = time.perf_counter(), time.process_time()
        from remotetune.report import build_payload, load_report_data, render_page
        from remotetune.report._importance import parameter_importance

        t1 = time.perf_counter()
        data = load_report_data(store, exp_id)
        t2 = time.perf_counter()
        imp = parameter_importance(data.trials, data.experiment.optimize_mode)
        t3 = time.perf_counter()
        payload = build_payload(data, imp)
        t4 = time.perf_counter()
        page = render_page(payload, title="bench")
        t5, c5 = time.perf_counter(), time.process_time()
        out = Path(tmp) / "report.html"
        out.write_text(page, encoding="utf-8")
        size = out.stat().st_size
        print(f"render total      {t5 - t0:6.2f} s   (goal <= 5 s; CPU time {c5 - c0:.2f} s, "
              f"load average {os.getloadavg()[0]:.1f})")
        print(f"  imports         {t1 - t0:6.2f} s   (remotetune.report, plotly)")
        print(f"  read the store  {t2 - t1:6.2f} s")
        print(f"  importance      {t3 - t2:6.2f} s   ({imp.note or len(imp.values)} params; "
              "includes importing optuna and optuna.importance)")
        print(f"  figures + JSON  {t4 - t3:6.2f} s")
        print(f"  page            {t5 - t4:6.2f} s")
        from remotetune.report._page import plotly_js

        print(f"file size         {size / 1e6:6.2f} MB  (goal <= 15 MB; plotly.js "
              f"{len(plotly_js()) / 1e6:.1f} MB of it, data {len(payload) / 1e6:.1f} MB)")
        if not args.no_browser:
            browser_time(out)


def browser_time(page: Path) -> None:
    from chromium import Browser, find_chromium

    binary = find_chromium()
    if binary is None:
        print("chromium: not installed, browser timing skipped")
        return
    with Browser(binary) as b:
        t = time.perf_counter()
        b.open(page.as_uri(), timeout=120)
        b.wait_for("document.getElementById('report').dataset.rendered", timeout=120)
        print(f"chromium drawn    {time.perf_counter() - t:6.2f} s   "
              f"(headless, software WebGL; errors: {b.errors() or 'none'})")


if __name__ == "__main__":
    main()
