"""The CLI's file and host commands: ``export``, ``import-nni``, ``check``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from remotetune.cli_support import hide_secrets, make_console, open_store, print_json
from remotetune.errors import ConfigError
from remotetune.view._safe import clean, clean_record

EXIT_OK, EXIT_HOST = 0, 3


def cmd_export(args: argparse.Namespace) -> int:
    from remotetune.export import export_trials

    store = open_store(readonly=True)
    exp = store.experiment(args.experiment)
    neutralize = not args.raw_csv
    if args.output and args.output != "-":
        try:
            out = open(args.output, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}",
                              hint="pick a file in a directory that exists") from None
        with out:
            n = export_trials(store, exp.id, args.format, out, neutralize=neutralize)
        print(f"wrote {n} trials to {args.output}", file=sys.stderr)
    else:
        export_trials(store, exp.id, args.format, sys.stdout, neutralize=neutralize)
    return EXIT_OK


def cmd_import_nni(args: argparse.Namespace) -> int:
    from remotetune.nni_import import import_nni

    with open_store() as store:  # a writer: closed (its WAL checkpointed) before the quick exit
        ids = import_nni(store, args.path)
        for exp_id in ids:
            exp = store.experiment(exp_id)
            print(clean(f"imported {exp.id}: {exp.name} ({len(store.trials(exp_id))} trials)"))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from remotetune import config as cfg
    from remotetune.check import check_hosts, render_checks

    hosts = cfg.load_machines(args.machines) if args.machines else (cfg.local_machine(1),)
    hosts = hide_secrets(hosts)  # local setup lines see no passwordEnv/passphraseEnv value
    checks = check_hosts(hosts, timeout=args.timeout, accept_new=args.accept_new)
    if args.json:
        print_json([asdict(c) for c in checks])
    else:
        make_console().print(render_checks([clean_record(c) for c in checks]))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_HOST


def add_check_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="check that every host can run trials")
    p.add_argument("--machines", metavar="FILE")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--accept-new", action="store_true",
                   help="record the host keys of hosts seen for the first time in known_hosts "
                   "(or knownHostsFile), printing their fingerprints, as ssh's "
                   "StrictHostKeyChecking=accept-new does; a changed key is still refused")
    p.set_defaults(func=cmd_check)
