"""A synthetic training run for early-stopping benchmarks and tests (``curves.py``'s curves).

    python3 curve_trial.py [--epochs 20] [--epoch-seconds 0.1] [--workload smooth|lr-sweep]

Reads its parameters with the trial API (``lr``, ``width``, ``dropout``; ``TRIAL_BUDGET``, when
Hyperband or BOHB gives one, sets the number of epochs; or one ``config``: those parameters
as a JSON string, which is how a benchmark hands NNI's GridSearch a list of configurations
drawn elsewhere), sleeps ``--epoch-seconds`` per epoch,
reports the curve's value after each epoch as an intermediate result and the last one as the
final result. Standard library only. The same file runs under NNI itself: when NNI starts
it (``NNI_PLATFORM`` set, and not to ``remotetune``), it uses the real ``nni`` package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import curves  # noqa: E402


def _trial_api() -> Any:
    """The trial API: NNI's own ``nni`` package when NNI started this trial (``NNI_*`` set
    but no ``REMOTETUNE_TRIAL_ID``: remotetune sets both), else ``remotetune.trial``, from a
    source checkout when remotetune is not installed."""
    by_nni = "NNI_PLATFORM" in os.environ or "NNI_TRIAL_JOB_ID" in os.environ
    if by_nni and "REMOTETUNE_TRIAL_ID" not in os.environ:
        import nni

        return nni
    try:
        from remotetune import trial
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from remotetune import trial
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=curves.EPOCHS)
    parser.add_argument("--epoch-seconds", type=float, default=0.1)
    parser.add_argument("--workload", choices=curves.WORKLOADS, default="smooth")
    args = parser.parse_args(argv)
    api = _trial_api()
    params = api.get_next_parameter()
    if isinstance(params.get("config"), str):
        params = {**json.loads(params["config"]),
                  **{k: v for k, v in params.items() if k != "config"}}
    epochs = int(params.get("TRIAL_BUDGET", args.epochs))
    last = 0.0
    for epoch in range(1, epochs + 1):
        time.sleep(args.epoch_seconds)
        last = curves.value(params, epoch, args.workload)
        api.report_intermediate_result(last)
    api.report_final_result(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
