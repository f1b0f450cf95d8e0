"""Opening the store's file: a writer's connection, a ``mode=ro`` reader's, and a new store
made whole before anyone can see it."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from remotetune.errors import StoreError
from remotetune.home import HOME_ENV

BUSY_TIMEOUT_S = 10.0


def _make_directory(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store's directory {path.parent}: {exc.strerror} "
            f"(set {HOME_ENV} to a writable directory)"
        ) from exc


def connect_writer(path: Path) -> sqlite3.Connection:
    _make_directory(path)
    try:
        return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: open failed: {exc}") from exc


def create_atomically(path: Path, make: Callable[[Path], None]) -> None:
    """Create and migrate a new store beside ``path``, then link it into place.

    A reader that finds the file therefore always finds it migrated (it never sees a store
    that a starting controller has created but not yet filled with its tables). When two
    writers create the same store at once, the first link wins and the other uses it.
    """
    _make_directory(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        make(tmp)  # a writer's last close checkpoints and removes its WAL
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: a rename, first writer or not
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def connect_reader(path: Path) -> sqlite3.Connection:
    """A ``mode=ro`` connection: SQLite refuses every write on it, and creates no file."""
    if not path.is_file():
        raise StoreError(
            f"no store at {path} (run an experiment first, or set {HOME_ENV} to the "
            "directory that holds remotetune.db)"
        )
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: open for reading failed: {exc}") from exc


def enable_wal(conn: sqlite3.Connection) -> None:
    """Write-ahead logging (readers see a consistent snapshot beside the writer); outside
    a transaction, as SQLite requires. Stays set in the file."""
    (mode,) = conn.execute("pragma journal_mode").fetchone()
    if str(mode).lower() != "wal":
        conn.execute("pragma journal_mode = wal")


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction, or inside one a savepoint: all of the block or none of it.

    If the block raises, its changes are rolled back (to the savepoint, when nested) and the
    error goes on; an error that already ended the whole transaction leaves nothing to roll
    back. Explicit statements, not the sqlite3 module's implicit ones, so nesting works.
    """
    if not conn.in_transaction:
        conn.execute("begin")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise
        conn.execute("commit")
        return
    name = f"rt_{secrets.token_hex(8)}"
    conn.execute(f"savepoint {name}")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute(f"rollback to savepoint {name}")
            conn.execute(f"release savepoint {name}")
        raise
    conn.execute(f"release savepoint {name}")
