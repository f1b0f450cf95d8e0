"""The CLI's commands that change an experiment's limits: ``update`` and ``resume``'s flags.

``update`` never writes the store (the controller is its only writer): it leaves a
request (:mod:`remotetune.change_requests`) and waits a little for the controller to take it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from remotetune.cli_support import make_console
from remotetune.errors import ConfigError, ExperimentNotRunning
from remotetune.home import default_home
from remotetune.view._safe import clean

EXIT_OK = 0
_FLAGS = (("max_trials", "maxTrialNumber"), ("max_duration", "maxExperimentDuration"),
          ("concurrency", "trialConcurrency"))


def add_limit_flags(p: argparse.ArgumentParser, *, concurrency: bool) -> None:
    p.add_argument("--max-trials", type=int, metavar="N", help="new maxTrialNumber")
    p.add_argument("--max-duration", metavar="D",
                   help="new maxExperimentDuration, counted from the experiment's start "
                        "(30m, 2h, 1d or seconds)")
    if concurrency:
        p.add_argument("--concurrency", type=int, metavar="C", help="new trialConcurrency")


def add_update_parser(sub: Any) -> None:
    p = sub.add_parser("update", help="change the limits of a running experiment")
    p.add_argument("experiment", metavar="EXP")
    add_limit_flags(p, concurrency=True)
    p.add_argument("--wait", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for the controller to apply it (default: 5)")
    p.set_defaults(func=cmd_update)


def limits_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as experiment-file keys (checked by parse_limits later)."""
    out = {}
    for attr, key in _FLAGS:
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


def cmd_update(args: argparse.Namespace) -> int:
    from remotetune.change_requests import requests_dir, write_request
    from remotetune.config import parse_limits
    from remotetune.lock import running_holder
    from remotetune.store import Store

    limits = limits_from(args)
    if not limits:
        raise ConfigError("nothing to change",
                          hint="give --max-trials N, --max-duration D or --concurrency C")
    parse_limits(limits)  # bad values are bad input, running or not
    store = Store.open_default(readonly=True)
    exp = store.experiment(args.experiment)
    store.close()
    home = default_home()
    if running_holder(home, exp.id) is None:
        raise ExperimentNotRunning(f"experiment {exp.id} is not running; use remotetune resume "
                             f"{exp.id} --max-trials N to extend it")
    path = write_request(home, exp.id, limits)
    deadline = time.monotonic() + max(0.0, args.wait)
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    console = make_console()
    asked = ", ".join(f"{k} {v}" for k, v in limits.items())
    if not path.exists():
        console.print(clean(f"experiment {exp.id}: applied {asked}"), highlight=False)
    elif running_holder(home, exp.id) is None:
        path.unlink(missing_ok=True)
        raise ExperimentNotRunning(f"experiment {exp.id} stopped before it applied the change; "
                             f"use remotetune resume {exp.id} --max-trials N to extend it")
    else:
        console.print(clean(f"experiment {exp.id}: asked for {asked}; the controller has not "
                            f"applied it yet (request in {requests_dir(home, exp.id)})"),
                      highlight=False)
    return EXIT_OK


def resume_config(args: argparse.Namespace, config: Any, exp: Any) -> Any:
    """``config`` with the limits given to ``resume`` (the controller stores them)."""
    from remotetune.config import parse_limits

    limits = parse_limits(limits_from(args))
    if limits.empty():
        return config
    config = limits.apply(config)
    budget, started = config.max_experiment_duration, exp.started_at
    if budget is not None and started is not None and time.time() - started >= budget:
        raise ConfigError(
            f"experiment {exp.id} has used its maxExperimentDuration ({budget:g} s, counted "
            f"from its start {time.time() - started:.0f} s ago), so no new trial would start",
            hint="give a longer --max-duration as well")
    return config
