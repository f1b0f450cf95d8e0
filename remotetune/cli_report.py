"""The CLI's report commands: ``report`` (a self-contained HTML file) and ``serve`` (live).

Moved out of cli.py as they were, to keep that module under 500 lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from remotetune.cli_support import open_store
from remotetune.errors import ConfigError

EXIT_OK = 0


def cmd_report(args: argparse.Namespace) -> int:
    from remotetune.report import ReportServer, ServeOptions, render_report

    store = open_store(readonly=True)  # reads only: never migrates or writes the store
    if args.command == "report":
        exp = store.experiment(args.experiment)
        page = render_report(store, exp.id)
        out = args.output or f"report-{exp.id}.html"
        try:
            Path(out).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the report: {exc.strerror or exc}",
                              file=out) from exc
        print(f"wrote {out} ({len(page.encode()) / 1e6:.1f} MB): open it in a browser",
              file=sys.stderr)
        return EXIT_OK
    if args.experiment is not None:
        store.experiment(args.experiment)  # fail early on an unknown id
    options = ServeOptions(host=args.host, port=args.port, experiment_id=args.experiment,
                           token=os.environ.get("REMOTETUNE_SERVE_TOKEN") or None,
                           require_token=args.token, refresh_ms=int(args.refresh * 1000))
    server = ReportServer(store, options)
    print(f"serving {server.url} (read-only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def add_report_parsers(sub: Any) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of an experiment")
    p.add_argument("experiment", metavar="EXP")
    p.add_argument("-o", "--output", metavar="FILE", help="default: report-EXP.html")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve the report live over HTTP (read-only)")
    p.add_argument("experiment", nargs="?", metavar="EXP", help="default: list experiments")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs a token, which "
                        "is generated and printed)")
    p.add_argument("--port", type=int, default=8080, help="default 8080; 0: any free port")
    p.add_argument("--token", action="store_true",
                   help="require a token on loopback too (generated; $REMOTETUNE_SERVE_TOKEN, "
                        "when set, is always required)")
    p.add_argument("--refresh", type=float, default=2.0, help="page refresh in seconds")
    p.set_defaults(func=cmd_report)
