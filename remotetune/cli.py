"""Command line: builds the library objects and calls them. The only place that prints.

Exit status: 0 done; 1 the experiment failed or an unexpected error; 2 bad input (a config
or machines file, an unknown experiment, no host that could ever run a trial); 3 a host could
not be used; 130 stopped by the user (Ctrl-C or SIGTERM), state saved for ``resume``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remotetune import __version__
from remotetune.cli_commands import add_check_parser, cmd_export, cmd_import_nni
from remotetune.cli_homes import (
    add_convert_parser,
    cmd_ls,
    locate_experiment,
)
from remotetune.cli_report import add_report_parsers
from remotetune.cli_run import cmd_resume, cmd_run
from remotetune.cli_support import (
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    error_text,
    exit_now,
    make_console,
    open_store,
    print_json,
    surely_not_terminal,
    trial_json,
)
from remotetune.cli_update import add_limit_flags, add_update_parser
from remotetune.errors import ConfigError, RemotetuneError, StoreError
from remotetune.model import TrialRecord
from remotetune.view._safe import CleanLogFilter, clean

_print_json = print_json


# ---------------------------------------------------------------------------- queries


def cmd_trials(args: argparse.Namespace) -> int:
    store = open_store(readonly=True)
    exp = store.experiment(args.experiment)
    trials = store.trials(exp.id)
    if args.json:
        _print_json([trial_json(t) for t in trials])
        return EXIT_OK
    from rich.table import Table

    table = Table("id", "status", "host", "final", "best", "parameters", "message",
                  title=clean(exp.name))
    for t in trials:
        table.add_row(t.id, t.status.value, _where(t), _num(t.final), _num(t.best_intermediate),
                      json.dumps(dict(t.parameters), sort_keys=True), clean(t.message or ""))
    make_console().print(table)
    return EXIT_OK


def _where(t: TrialRecord) -> str:
    if not t.host:
        return "-"
    return clean(f"{t.host}:{','.join(map(str, t.gpus))}" if t.gpus else t.host)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def cmd_best(args: argparse.Namespace) -> int:
    store = open_store(readonly=True)
    exp = store.experiment(args.experiment)
    best = store.best_trial(exp.id)
    if args.json:
        _print_json(trial_json(best) if best else None)
        return EXIT_OK
    if best is None:
        make_console().print(f"experiment {exp.id} has no trial with a final metric yet")
        return EXIT_OK
    make_console().print(
        f"best trial {best.id} ({exp.optimize_mode.value}): final={best.final:.6g}",
        highlight=False)
    _print_json(dict(best.parameters))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store(readonly=True)
    exp = store.experiment(args.experiment)
    trial = store.trial(exp.id, args.trial)
    metrics = store.metrics(exp.id, trial.id)
    if args.json:
        data = trial_json(trial)
        data.update({
            "trial_dir": trial.trial_dir,
            "stdout_tail": trial.stdout_tail,
            "stderr_tail": trial.stderr_tail,
            "metrics": [{"seq": m.seq, "type": m.kind.value, "value": m.value, "raw": m.raw,
                         "time": m.time} for m in metrics],
        })
        _print_json(data)
        return EXIT_OK
    from remotetune.view import render_trial

    make_console().print(render_trial(exp, trial, metrics))
    return EXIT_OK


def cmd_view(args: argparse.Namespace) -> int:
    from remotetune.view import watch

    store = open_store(readonly=True)
    exp = store.experiment(args.experiment)
    path = store.path
    store.close()
    try:
        watch(Path(path), exp.id, console=make_console(layout=True))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remotetune",
        description="Hyperparameter tuning across remote GPU machines over plain SSH.",
    )
    parser.add_argument("--version", action="version", version=f"remotetune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def runner_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--machines", metavar="FILE",
                       help="machines.yml (default: the local machine)")
        p.add_argument("--on-interrupt", choices=["ask", "kill", "leave"], default="ask",
                       help="on Ctrl-C: ask (on a terminal), kill the running trials, or leave "
                            "them running for `remotetune resume` (default: ask; SIGTERM and "
                            "no terminal: kill)")
        p.add_argument("--plain", action="store_true",
                       help="plain log lines instead of the live view")
        p.add_argument("--seed", type=int, help="seed for the tuner")

    p = sub.add_parser("run", help="run an experiment in the foreground until it is done")
    p.add_argument("experiment_file", nargs="?", metavar="EXPERIMENT_FILE",
                   help="experiment YAML (default: ./experiment.yml)")
    runner_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="resume a stopped, crashed or finished experiment")
    p.add_argument("experiment", metavar="EXP")
    runner_flags(p)
    add_limit_flags(p, concurrency=False)
    p.set_defaults(func=cmd_resume)

    add_check_parser(sub)
    add_update_parser(sub)
    add_convert_parser(sub)
    _add_reader_commands(sub)
    return parser


def _add_reader_commands(sub: Any) -> None:
    """The commands that read the store and never run anything."""
    p = sub.add_parser("ls", help="list experiments")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    for name, func, text in (("trials", cmd_trials, "list the trials of an experiment"),
                             ("best", cmd_best, "the best trial of an experiment")):
        p = sub.add_parser(name, help=text)
        p.add_argument("experiment", metavar="EXP")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    p = sub.add_parser("show", help="one trial: parameters, metric curve, host, logs")
    p.add_argument("experiment", metavar="EXP")
    p.add_argument("trial", metavar="TRIAL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("view", help="attach the live view to an experiment (read-only)")
    p.add_argument("experiment", metavar="EXP")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("export", help="export trials as CSV or JSON")
    p.add_argument("experiment", metavar="EXP")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    p.add_argument("--raw-csv", action="store_true",
                   help="write CSV cells as they are (default: text starting with = + - @ "
                        "gets a leading ' so spreadsheets do not run it as a formula)")
    p.set_defaults(func=cmd_export)

    add_report_parsers(sub)

    p = sub.add_parser("import-nni", help="import an NNI experiment database (nni.sqlite)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_import_nni)


def _log_handler() -> logging.Handler:
    """On a terminal, rich's handler (it prints above a live view instead of tearing
    through it); elsewhere (a pipe, a container job's log) plain lines, never padded to the
    console's width, and rich is not imported for them."""
    if not surely_not_terminal(sys.stderr):
        err = make_console(stderr=True)
        if err.is_terminal:
            from rich.logging import RichHandler

            return RichHandler(console=err, show_path=False, show_time=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
    return handler


def _print_error(message: str) -> None:
    make_console(stderr=True).print(error_text(message), highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _log_handler()
    handler.addFilter(CleanLogFilter())  # log lines carry host and trial text: data
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[handler],
    )
    if not args.verbose:  # paramiko logs tracebacks for failures we report ourselves
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    try:
        locate_experiment(args)  # an experiment whose file put it in another home
        return int(args.func(args))
    except (ConfigError, StoreError) as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except RemotetuneError as exc:
        _print_error(str(exc))
        return exc.exit_code if exc.exit_code != 2 else EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_STOPPED
    except BrokenPipeError:  # `remotetune export ... | head`: the reader has had enough
        _quiet_stdout()
        return EXIT_OK


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    exit_now(main())  # no interpreter teardown (cli_support.exit_now)
