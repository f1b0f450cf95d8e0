"""Check: remotetune's Medianstop decides as NNI 3.0's own ``MedianstopAssessor`` does.

Random event streams (trials reporting in random interleavings, curves of random lengths with
ties, trials ending succeeded or failed) are fed to both: NNI's class runs in NNI's venv (a
subprocess, ``--nni-venv``, default ``/tmp/nni-venv``), which gets the stream as JSON and
answers its verdict for every report; remotetune's gets the same reports as ``TrialView``s
with every other trial's curve and status. Prints the number of decisions compared and any
that differ, per optimize mode and ``start_step``; exit 1 when any differ.

    python bench/medianstop_parity.py [--streams 30] [--trials 40] [--nni-venv DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from remotetune.assessors import CurvePoint, TrialView, create_assessor  # noqa: E402
from remotetune.model import TrialStatus  # noqa: E402

# Runs inside NNI's venv: the stream on stdin, one verdict (1: stop) per report on stdout.
NNI_SIDE = """
import json, sys
from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor
from nni.assessor import AssessResult
out = []
for case in json.load(sys.stdin):
    a = MedianstopAssessor(optimize_mode=case["mode"], start_step=case["start_step"])
    hist = {}
    for ev in case["events"]:
        if ev[0] == "report":
            hist.setdefault(ev[1], []).append(ev[2])
            out.append(int(a.assess_trial(ev[1], list(hist[ev[1]])) is AssessResult.Bad))
        else:
            a.trial_end(ev[1], ev[2])
json.dump(out, sys.stdout)
"""


def stream(rng: random.Random, trials: int) -> list[list[Any]]:
    """Reports ``["report", id, value]`` and ends ``["end", id, succeeded]``, interleaved."""
    lengths = {f"t{i}": rng.randint(1, 12) for i in range(trials)}
    quality = {t: rng.uniform(0.2, 0.9) for t in lengths}
    done = {t: 0 for t in lengths}
    waiting = list(lengths)
    running: list[str] = []
    events: list[list[Any]] = []
    while waiting or running:
        while waiting and len(running) < 4:
            running.append(waiting.pop(0))
        tid = rng.choice(running)
        done[tid] += 1
        value = round(quality[tid] * (1 - 0.8 ** done[tid]) + rng.gauss(0, 0.03), 2)
        events.append(["report", tid, value])
        if done[tid] == lengths[tid]:
            running.remove(tid)
            events.append(["end", tid, rng.random() < 0.8])
    return events


def ours(case: dict[str, Any]) -> list[int]:
    assessor = create_assessor("Medianstop", {"start_step": case["start_step"]},
                               optimize_mode=case["mode"])
    curves: dict[str, list[float]] = {}
    status: dict[str, TrialStatus] = {}
    out = []

    def view(tid: str) -> TrialView:
        points = tuple(CurvePoint(i + 1, v) for i, v in enumerate(curves[tid]))
        return TrialView(tid, {}, points, status[tid])

    for ev in case["events"]:
        tid = ev[1]
        if ev[0] == "report":
            curves.setdefault(tid, []).append(ev[2])
            status[tid] = TrialStatus.RUNNING
            others = [view(t) for t in curves if t != tid]
            out.append(int(assessor.assess(view(tid), others).stop))
        else:
            status[tid] = TrialStatus.SUCCEEDED if ev[2] else TrialStatus.FAILED
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nni-venv", type=Path, default=Path("/tmp/nni-venv"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    cases = [{"mode": mode, "start_step": start, "events": stream(rng, args.trials)}
             for mode in ("maximize", "minimize") for start in (0, 1, 2, 5)
             for _ in range(args.streams)]
    done = subprocess.run([str(args.nni_venv / "bin" / "python"), "-c", NNI_SIDE],
                          input=json.dumps(cases), capture_output=True, text=True, check=True)
    theirs = json.loads(done.stdout)
    differ = compared = stops = 0
    at = 0
    for case in cases:
        mine = ours(case)
        for a, b in zip(mine, theirs[at:at + len(mine)], strict=True):
            compared += 1
            stops += b
            differ += a != b
        at += len(mine)
    assert at == len(theirs), (at, len(theirs))
    print(f"{compared} decisions compared ({stops} stops by NNI) over {len(cases)} streams "
          f"(maximize and minimize, start_step 0/1/2/5): {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
