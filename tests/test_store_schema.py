"""A new store's squashed schema (store/_fresh.py) against the migrations it stands for."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from remotetune.store import MIGRATIONS
from remotetune.store._fresh import SQUASHED, STATEMENTS
from remotetune.store._schema import applied_migrations, migrate


def _master(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    return conn.execute(
        "select type, name, tbl_name, sql from sqlite_master order by type, name").fetchall()


def _one_by_one(path: Path) -> sqlite3.Connection:
    """Each migration through sqlite_utils, as a store of an older remotetune gets them."""
    conn = sqlite3.connect(path, isolation_level=None)
    for count in range(1, len(MIGRATIONS) + 1):
        migrate(conn, str(path), MIGRATIONS[:count])
    return conn


def test_squashed_schema_equals_the_migrations(tmp_path: Path) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    assert migrate(fresh, "fresh.db") == [m.name for m in MIGRATIONS]
    stepwise = _one_by_one(tmp_path / "stepwise.db")
    current = [sql for (sql,) in stepwise.execute(
        "select sql from sqlite_master where sql is not null and name != '_migrations' "
        "order by rowid")]
    assert SQUASHED == tuple(m.name for m in MIGRATIONS), (
        "a migration was added: set store/_fresh.py's SQUASHED to the migrations' names and "
        f"STATEMENTS to:\n{current!r}")
    assert _master(fresh) == _master(stepwise)
    assert applied_migrations(fresh) == applied_migrations(stepwise) == list(SQUASHED)
    assert list(STATEMENTS) == current


def test_a_new_store_does_not_import_sqlite_utils(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from remotetune.store import Store
        with Store({str(tmp_path / 'remotetune.db')!r}) as store:
            store.experiments()
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite_utils', 'click')))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_an_older_store_gets_the_rest_through_sqlite_utils(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), MIGRATIONS[:1])  # what an older remotetune left behind
    assert migrate(conn, str(path)) == [m.name for m in MIGRATIONS[1:]]
    assert _master(conn) == _master(_one_by_one(tmp_path / "stepwise.db"))
