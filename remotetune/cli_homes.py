"""The CLI's experiment homes and NNI migration: ``ls``, ``convert``, and where a run's store goes.

An experiment file's ``experimentWorkingDirectory`` (NNI v1: ``logDir``) is that
experiment's remotetune home (store, logs, locks), as ``REMOTETUNE_HOME`` is for every
experiment; the file's key wins, since it is written for that experiment (a container image
may set ``REMOTETUNE_HOME`` for everything). ``run`` leaves a pointer to such a home in the
default home's ``homes/`` directory, so that ``ls`` lists its experiments and the commands
that take an experiment id (``show``, ``resume``, ``view``...) find it there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from remotetune.cli_support import make_console, print_json
from remotetune.errors import StoreError
from remotetune.home import HOME_ENV, default_home
from remotetune.view._safe import clean

EXIT_OK = 0
POINTERS = "homes"


def use_experiment_home(config: Any) -> Path | None:
    """Make the experiment's own home (if its file names one) this process's home."""
    home = config.home
    default = default_home()
    if home is None or Path(home).resolve() == default.resolve():
        return None
    Path(home).mkdir(parents=True, exist_ok=True)
    try:  # best effort: a read-only default home only costs `ls` the pointer
        pointers = default / POINTERS
        pointers.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
        (pointers / digest).write_text(f"{home}\n", encoding="utf-8")
    except OSError:
        pass
    os.environ[HOME_ENV] = str(home)
    return Path(home)


def home_note(home: Path) -> str:
    return (f"store and logs in {home} (the file's experimentWorkingDirectory/logDir); "
            f"`remotetune ls` on this machine lists it; elsewhere: "
            f"REMOTETUNE_HOME={home} remotetune ls")


def known_homes() -> list[Path]:
    """The default home, then every other home a run left a pointer to (that still has a
    store), each once."""
    default = default_home()
    homes = [default]
    pointers = default / POINTERS
    try:
        files = sorted(pointers.iterdir()) if pointers.is_dir() else []
    except OSError:
        files = []
    for file in files:
        try:
            home = Path(file.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            continue
        if (home / "remotetune.db").is_file() and home.resolve() not in \
                {h.resolve() for h in homes}:
            homes.append(home)
    return homes


def locate_experiment(args: argparse.Namespace) -> None:
    """For a command given an experiment id: when the default store lacks it, use the home
    (from the pointers) whose store has it."""
    exp_id = getattr(args, "experiment", None)
    if not isinstance(exp_id, str) or not exp_id:
        return
    from remotetune.store import Store  # only now: `run` imports it while hosts connect

    for index, home in enumerate(known_homes()):
        path = home / "remotetune.db"
        if not path.is_file():
            continue
        try:
            with Store.open_readonly(path) as store:
                store.experiment(exp_id)
        except StoreError:
            continue
        if index > 0:
            os.environ[HOME_ENV] = str(home)
        return


def cmd_ls(args: argparse.Namespace) -> int:
    from remotetune.store import Store

    homes = known_homes()
    rows: list[tuple[Path, Any, Any]] = []
    for index, home in enumerate(homes):
        if not (home / "remotetune.db").is_file():
            continue  # nothing run yet: an empty list, not an error
        try:
            store = Store.open_readonly(home / "remotetune.db")
        except StoreError:
            if index == 0:
                raise
            continue  # another home's store from another version: `ls` there says why
        rows.extend((home, store, e) for e in store.experiments())
    if args.json:
        print_json([_row_json(home, store, e) for home, store, e in rows])
        return EXIT_OK
    from rich.table import Table

    several = len({home for home, _, _ in rows}) > 1
    table = Table("id", "name", "status", "trials", "best", "created", *(["home"] * several))
    for home, store, e in rows:
        best = store.best_trial(e.id)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created_at or 0))
        table.add_row(e.id, clean(e.name), e.status.value, str(len(store.trials(e.id))),
                      f"{best.final:.6g}" if best and best.final is not None else "-", created,
                      *([clean(str(home))] * several))
    make_console().print(table)
    return EXIT_OK


def _row_json(home: Path, store: Any, e: Any) -> dict[str, Any]:
    best = store.best_trial(e.id)
    return {"id": e.id, "name": e.name, "status": e.status.value, "tuner": e.tuner,
            "trials": len(store.trials(e.id)), "source": e.source,
            "created_at": e.created_at, "ended_at": e.ended_at,
            "best": best.final if best else None, "home": str(home)}


def cmd_convert(args: argparse.Namespace) -> int:
    from remotetune.config import convert_file

    converted = convert_file(args.experiment_file)
    sys.stdout.write(converted.text)
    err = make_console(stderr=True)
    if not converted.was_v1:
        err.print("(already a v2 file: printed as remotetune reads it)", highlight=False)
    for var in converted.secret_variables:
        err.print(f"export {var}=...   # the secret this variable holds; never in the file",
                  highlight=False, markup=False)
    return EXIT_OK


def add_convert_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="print an NNI v1 experiment file as the v2 file "
                       "remotetune reads")
    p.add_argument("experiment_file", metavar="EXPERIMENT_FILE")
    p.set_defaults(func=cmd_convert)
