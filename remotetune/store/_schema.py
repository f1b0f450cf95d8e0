"""The store's schema as named, recorded migrations.

Each migration is a function applied once, in list order, inside one transaction that also
records its name and time in ``_migrations``. Never edit or reorder a released migration:
append a new one. A database that records a migration this code does not know was written by
a newer remotetune; opening it raises :class:`StoreError` instead of guessing.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remotetune.errors import StoreError
from remotetune.store._fresh import SQUASHED, STATEMENTS

if TYPE_CHECKING:  # imported only when a migration runs: opening a current store needs none
    from sqlite_utils import Database

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "_migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[Database], None]


def _m001_initial(db: Database) -> None:
    db.table("experiments").create(
        {
            "id": str,
            "name": str,
            "status": str,
            "config": str,  # JSON
            "config_file": str,
            "machines": str,  # JSON list of host specs (no secrets)
            "tuner": str,
            "optimize_mode": str,
            "max_trial_number": int,
            "max_experiment_duration": float,
            "trial_concurrency": int,
            "created_at": float,
            "started_at": float,
            "ended_at": float,
            "message": str,
            "source": str,
        },
        pk="id",
        not_null=["name", "status", "config", "source"],
    )
    db.table("trials").create(
        {
            "experiment_id": str,
            "id": str,
            "sequence": int,
            "parameter_id": int,
            "attempt": int,
            "retry_of": str,
            "parameters": str,  # JSON
            "status": str,
            "host": str,
            "gpus": str,  # JSON list of GPU indices
            "pid": int,
            "trial_dir": str,
            "created_at": float,
            "started_at": float,
            "ended_at": float,
            "exit_code": int,
            "final": float,
            "best_intermediate": float,
            "latest_intermediate": float,
            "intermediate_count": int,
            "message": str,
            "stdout_tail": str,
            "stderr_tail": str,
            "metrics_offset": int,
        },
        pk=("experiment_id", "id"),
        not_null=["sequence", "parameters", "status", "metrics_offset"],
        defaults={"metrics_offset": 0, "intermediate_count": 0, "attempt": 1},
        foreign_keys=[("experiment_id", "experiments", "id")],
    )
    db.table("trials").create_index(["experiment_id", "sequence"], index_name="idx_trials_sequence")
    db.table("trials").create_index(["experiment_id", "status"], index_name="idx_trials_status")
    db.table("metrics").create(
        {
            "experiment_id": str,
            "trial_id": str,
            "seq": int,
            "kind": str,
            "value": float,
            "raw": str,  # JSON
            "time": float,
        },
        pk=("experiment_id", "trial_id", "seq"),  # the unique (experiment_id, trial_id, seq)
        not_null=["kind", "value", "raw"],
        foreign_keys=[("experiment_id", "experiments", "id")],
    )
    db.table("events").create(
        {
            "id": int,
            "experiment_id": str,
            "time": float,
            "kind": str,
            "level": str,
            "message": str,
            "trial_id": str,
            "host": str,
        },
        pk="id",
        not_null=["experiment_id", "time", "kind", "level", "message"],
        foreign_keys=[("experiment_id", "experiments", "id")],
    )
    db.table("events").create_index(["experiment_id", "id"], index_name="idx_events_experiment")
    db.table("hosts").create(
        {
            "experiment_id": str,
            "host": str,
            "reachable": int,
            "gpus": str,  # JSON list of GpuInfo objects
            "gpu_holders": str,  # JSON object: GPU index -> trial ids
            "slots": int,
            "running": int,
            "message": str,
            "updated_at": float,
        },
        pk=("experiment_id", "host"),
        not_null=["reachable", "gpus", "gpu_holders"],
        foreign_keys=[("experiment_id", "experiments", "id")],
    )


def _m002_experiment_created_index(db: Database) -> None:
    db.table("experiments").create_index(["created_at"], index_name="idx_experiments_created")


def _m003_code_manifests(db: Database) -> None:
    # The trial code as it was when an experiment started (its sync manifest, JSON), so
    # a resumed experiment ships the same code. Was $REMOTETUNE_HOME/experiments/<id>/
    # manifest.json before; that file is still read when this row is missing.
    db.table("code_manifests").create(
        {"experiment_id": str, "manifest": str, "created_at": float},
        pk="experiment_id",
        not_null=["manifest"],
        foreign_keys=[("experiment_id", "experiments", "id")],
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", _m001_initial),
    Migration("0002_experiment_created_index", _m002_experiment_created_index),
    Migration("0003_code_manifests", _m003_code_manifests),
)


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute("select 1 from sqlite_master where type = 'table' and name = ?",
                          (MIGRATIONS_TABLE,)).fetchone()
    if not exists:
        return []
    rows = conn.execute(f"select name from {MIGRATIONS_TABLE} order by rowid").fetchall()
    return [name for (name,) in rows]


def check_current(
    conn: sqlite3.Connection, path: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> None:
    """Raise :class:`StoreError` unless the store has exactly these migrations (for readers).

    A reader never migrates: an older store asks the user to run a writing command once.
    """
    done = applied_migrations(conn)
    _refuse_unknown(done, migrations, path)
    missing = [m.name for m in migrations if m.name not in done]
    if missing:
        raise StoreError(
            f"{path}: the store was written by an older remotetune and needs upgrading "
            f"(missing migrations {', '.join(missing)}); run any writing command once "
            "to upgrade it (for example `remotetune run` or `remotetune import-nni`)"
        )


def _refuse_unknown(done: list[str], migrations: tuple[Migration, ...], path: str) -> None:
    known = {m.name for m in migrations}
    unknown = [name for name in done if name not in known]
    if unknown:
        raise StoreError(
            f"{path}: the store records migrations this remotetune does not know "
            f"({', '.join(unknown)}); it was written by a newer remotetune "
            "(upgrade remotetune, or set REMOTETUNE_HOME to use another store)"
        )


def migrate(conn: sqlite3.Connection, path: str,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply the pending migrations in order; return the names applied now.

    Runs under ``BEGIN IMMEDIATE`` so two processes opening a new file at once do not both
    create the tables: the second waits (busy timeout), then finds nothing left to do. A new
    store gets the squashed schema (``store/_fresh.py``) in one step; a store with some
    migrations applied gets the rest through sqlite_utils' ``Database``, imported only then.
    """
    done = applied_migrations(conn)
    _refuse_unknown(done, migrations, path)
    if len(done) == len(migrations):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"create table if not exists {MIGRATIONS_TABLE} "
            "(name text primary key, applied_at real not null)"
        )
        applied = _apply(conn, path, migrations, set(applied_migrations(conn)))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def _apply(conn: sqlite3.Connection, path: str, migrations: tuple[Migration, ...],
           done: set[str]) -> list[str]:
    pending = [m for m in migrations if m.name not in done]
    if not done and tuple(m.name for m in migrations) == SQUASHED:
        logger.info("store %s: creating the schema of migrations %s", path, ", ".join(SQUASHED))
        for statement in STATEMENTS:
            conn.execute(statement)
    else:
        from remotetune.store._sqlite import Database

        db = Database(conn, execute_plugins=False)
        for migration in pending:
            logger.info("store %s: applying migration %s", path, migration.name)
            migration.apply(db)
    now = time.time()
    for migration in pending:
        conn.execute(f"insert into {MIGRATIONS_TABLE} (name, applied_at) values (?, ?)",
                     (migration.name, now))
    return [m.name for m in pending]
