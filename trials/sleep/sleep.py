"""A trivial trial for benchmarks and tests: sleeps, then reports a metric from its parameters.

    python3 sleep.py [--seconds S] [--steps N] [--exit-code C] [--no-final]

Parameters from the tuner override the options of the same name (``seconds``, ``steps``,
``exit_code``); every other numeric parameter, nested ones included, is summed into the
objective ``value``. The trial sleeps ``seconds`` in ``steps`` equal parts, reporting
``value * k / steps`` after part ``k`` (so the last intermediate result equals the final one),
then reports ``value`` as the final result (unless ``--no-final``) and exits with ``exit_code``.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONTROL = ("seconds", "steps", "exit_code")


def objective(params: Mapping[str, Any]) -> float:
    """The sum of the numeric parameters (nested dicts included), control keys left out."""
    total = 0.0
    for key, value in params.items():
        if key in CONTROL or key == "_name":
            continue
        if isinstance(value, Mapping):
            total += objective(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total += float(value)
    return total


def _trial_api() -> Any:
    """``remotetune.trial``, from a source checkout when remotetune is not installed."""
    try:
        from remotetune import trial
    except ImportError:
        parents = Path(__file__).resolve().parents
        if len(parents) < 3:
            raise
        sys.path.insert(0, str(parents[2]))  # trials/<name>/ in a source checkout
        from remotetune import trial
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time to sleep (default 1)")
    parser.add_argument("--steps", type=int, default=3,
                        help="intermediate results to report (default 3; 0 for none)")
    parser.add_argument("--exit-code", type=int, default=0, help="exit status (default 0)")
    parser.add_argument("--no-final", action="store_true", help="do not report a final result")
    args = parser.parse_args(argv)
    api = _trial_api()
    params = api.get_next_parameter()
    seconds = float(params.get("seconds", args.seconds))
    steps = int(params.get("steps", args.steps))
    exit_code = int(params.get("exit_code", args.exit_code))
    value = objective(params)
    print(f"trial {api.get_trial_id()} (pid {os.getpid()}): sleeping {seconds:g} s in "
          f"{max(steps, 1)} part(s), objective {value:g}", flush=True)
    for k in range(1, max(steps, 1) + 1):
        time.sleep(seconds / max(steps, 1))
        if steps > 0:
            api.report_intermediate_result(value * k / steps)
    if not args.no_final:
        api.report_final_result(value)
    print(f"final {value:g}; exit {exit_code}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
