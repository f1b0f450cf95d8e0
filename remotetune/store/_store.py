"""The SQLite store: one file, WAL mode, the controller its only writer.

Readers (``remotetune view/ls/trials/best/show/export``) open the same file read-only
(:meth:`Store.open_readonly`, SQLite's ``mode=ro``) from other processes while the controller
runs: they never migrate or write, WAL lets them read a consistent snapshot without blocking
the writer, and the busy timeout covers the short moments a checkpoint needs the lock.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from remotetune.errors import ExperimentNotFound, StoreError
from remotetune.home import DB_NAME, HOME_ENV, default_home
from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    HostState,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import _codec as codec
from remotetune.store._open import (
    BUSY_TIMEOUT_S,
    atomic,
    connect_reader,
    connect_writer,
    create_atomically,
    enable_wal,
)
from remotetune.store._schema import check_current, migrate

logger = logging.getLogger(__name__)

_EXPERIMENT_ALPHABET = string.ascii_lowercase + string.digits
_TRIAL_ALPHABET = string.ascii_letters + string.digits  # NNI's trial id alphabet

_INSERT_TRIAL = (
    f"insert into trials ({', '.join(codec.TRIAL_COLUMNS)}) "
    f"values ({', '.join('?' * len(codec.TRIAL_COLUMNS))}) "
    "on conflict (experiment_id, id) do update set "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.TRIAL_COLUMNS[2:])
)
_UPSERT_EXPERIMENT = (
    f"insert into experiments ({', '.join(codec.EXPERIMENT_COLUMNS)}) "
    f"values ({', '.join('?' * len(codec.EXPERIMENT_COLUMNS))}) "
    "on conflict (id) do update set "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.EXPERIMENT_COLUMNS[1:])
)
_INSERT_METRIC = (
    "insert or ignore into metrics (experiment_id, trial_id, seq, kind, value, raw, time) "
    "values (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "insert into events (experiment_id, time, kind, level, message, trial_id, host) "
    "values (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_HOST = (
    "insert into hosts (experiment_id, host, reachable, gpus, gpu_holders, slots, running, "
    "message, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "on conflict (experiment_id, host) do update set reachable = excluded.reachable, "
    "gpus = excluded.gpus, gpu_holders = excluded.gpu_holders, slots = excluded.slots, "
    "running = excluded.running, message = excluded.message, updated_at = excluded.updated_at"
)


def _random_id(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Store:
    """Experiments, trials, metrics, events and host states in one SQLite file.

    Thread-safe (one connection behind a lock); every write is its own short transaction.
    Every method raises :class:`StoreError` (naming the file) for SQLite failures.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, _in_place: bool = False
    ) -> None:
        """Open (creating and migrating when needed) the store at ``path`` for writing.

        With ``readonly=True`` (see :meth:`open_readonly`) the file is opened with SQLite's
        ``mode=ro``: nothing is created, migrated or written, and every write method raises
        :class:`StoreError`.
        """
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self._lock = threading.RLock()
        if not readonly and not _in_place and not self.path.exists():
            create_atomically(self.path, lambda tmp: Store(tmp, _in_place=True).close())
        conn = connect_reader(self.path) if readonly else connect_writer(self.path)
        try:
            self._conn = conn
            conn.execute(f"pragma busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if readonly:
                check_current(conn, str(self.path))
                applied: list[str] = []
            else:
                enable_wal(conn)
                conn.execute("pragma synchronous = normal")
                applied = migrate(conn, str(self.path))
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("open", exc) from exc
        except BaseException:
            conn.close()
            raise
        if applied:
            logger.info("store %s: applied migrations %s", self.path, ", ".join(applied))

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Store:
        """Open an existing, up-to-date store for reading only (the CLI's readers use this).

        Never creates, migrates or writes the file, so readers may run beside the controller
        (WAL gives them a consistent snapshot). Raises :class:`StoreError` when the file is
        missing, or was written by an older remotetune (run any writing command once to
        upgrade it) or a newer one.
        """
        return cls(path, readonly=True)

    # --- opening and closing -----------------------------------------------------------------

    @staticmethod
    def default_path() -> Path:
        """``$REMOTETUNE_HOME/remotetune.db``, else ``~/.remotetune/remotetune.db``."""
        return default_home() / DB_NAME

    @classmethod
    def open_default(cls, *, readonly: bool = False) -> Store:
        return cls(cls.default_path(), readonly=readonly)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        hint = ""
        if "locked" in text or "busy" in text:
            hint = (
                f" (another process held the write lock for over {BUSY_TIMEOUT_S:.0f} s; "
                "only one remotetune controller should write a store at a time)"
            )
        elif "not a database" in text:
            hint = f" (not a remotetune store; move it away or set {HOME_ENV})"
        elif "readonly" in text or "unable to open" in text:
            hint = " (check the file and its directory are writable)"
        return StoreError(f"{self.path}: {action} failed: {text}{hint}")

    @contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"{self.path}: {action} refused: this store was opened read-only")
        with self._guard(action) as conn, atomic(conn):
            yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several writes into one transaction (all or nothing, and faster).

        Every write method called inside the block becomes a savepoint of one transaction
        that commits when the block ends and rolls back if it raises. Other threads using
        this Store wait until the block ends.
        """
        with self._write("batch"):
            yield

    def _rows(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._guard(action) as conn:
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            return list(cursor.execute(sql, params).fetchall())

    # --- experiments -------------------------------------------------------------------------

    def new_experiment_id(self) -> str:
        """8 lowercase letters and digits, not used by any experiment in this store."""
        while True:
            candidate = _random_id(_EXPERIMENT_ALPHABET, 8)
            if not self._rows("new id", "select 1 from experiments where id = ?", (candidate,)):
                return candidate

    def save_experiment(self, rec: ExperimentRecord) -> None:
        """Insert or replace the whole record (its trials, metrics and events stay).

        Keys that name a secret (``password``, ``passphrase``, ``token``...) are dropped from
        ``config`` and ``machines`` with a warning: a secret never lands in the store.
        """
        row = list(codec.experiment_row(rec))
        config, dropped = codec.scrub_secrets(dict(rec.config), "config")
        machines, dropped_m = codec.scrub_secrets([dict(m) for m in rec.machines], "machines")
        if dropped or dropped_m:
            logger.warning(
                "experiment %s: not storing secret values of %s",
                rec.id,
                ", ".join(dropped + dropped_m),
            )
            row[3] = codec.dumps(config)
            row[5] = codec.dumps(machines)
        with self._write("save experiment") as conn:
            conn.execute(_UPSERT_EXPERIMENT, row)

    def experiment(self, experiment_id: str) -> ExperimentRecord:
        """The experiment with this id, or with the only id that starts with it."""
        rows = self._rows(
            "read experiment", "select * from experiments where id = ?", (experiment_id,)
        )
        if not rows and experiment_id:
            pattern = experiment_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._rows(
                "read experiment",
                "select * from experiments where id like ? escape '\\' order by id",
                (pattern + "%",),
            )
        if not rows:
            raise ExperimentNotFound(experiment_id)
        if len(rows) > 1:
            names = ", ".join(f"{r['id']} ({r['name']})" for r in rows[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            raise StoreError(
                f"experiment id prefix {experiment_id!r} is ambiguous: it matches "
                f"{names}{more} (type more characters of the id)"
            )
        return codec.experiment_from_row(rows[0])

    def experiments(self) -> list[ExperimentRecord]:
        """All experiments, newest first."""
        rows = self._rows(
            "list experiments",
            "select * from experiments order by coalesce(created_at, started_at) is null, "
            "coalesce(created_at, started_at) desc, rowid desc",
        )
        return [codec.experiment_from_row(r) for r in rows]

    # --- trials ------------------------------------------------------------------------------

    def new_trial_id(self, experiment_id: str) -> str:
        """5 letters and digits like NNI's, unused in that experiment (ignoring case)."""
        while True:
            candidate = _random_id(_TRIAL_ALPHABET, 5)
            if not self._rows(
                "new trial id",
                "select 1 from trials where experiment_id = ? and lower(id) = lower(?)",
                (experiment_id, candidate),
            ):
                return candidate

    def save_trial(self, rec: TrialRecord) -> None:
        """Insert or update the whole record; ``metrics_offset`` is left as it is."""
        with self._write("save trial") as conn:
            conn.execute(_INSERT_TRIAL, codec.trial_row(rec))

    def trial(self, experiment_id: str, trial_id: str) -> TrialRecord:
        rows = self._rows(
            "read trial",
            "select * from trials where experiment_id = ? and id = ?",
            (experiment_id, trial_id),
        )
        if not rows:
            raise StoreError(
                f"no trial {trial_id!r} in experiment {experiment_id!r} "
                f"(run `remotetune trials {experiment_id}` to list them)"
            )
        return codec.trial_from_row(rows[0])

    def trials(
        self, experiment_id: str, statuses: Iterable[TrialStatus] | None = None
    ) -> list[TrialRecord]:
        """The experiment's trials by sequence, optionally only those with these statuses."""
        sql = "select * from trials where experiment_id = ?"
        params: list[Any] = [experiment_id]
        if statuses is not None:
            wanted = sorted({TrialStatus(s).value for s in statuses})
            if not wanted:
                return []
            sql += f" and status in ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        rows = self._rows("list trials", sql + " order by sequence, id", params)
        return [codec.trial_from_row(r) for r in rows]

    def next_sequence(self, experiment_id: str) -> int:
        rows = self._rows(
            "next sequence",
            "select max(sequence) from trials where experiment_id = ?",
            (experiment_id,),
        )
        top = rows[0][0]
        return 0 if top is None else int(top) + 1

    # --- metrics -----------------------------------------------------------------------------

    def add_metrics(
        self,
        experiment_id: str,
        trial_id: str,
        points: Sequence[MetricPoint],
        new_offset: int,
    ) -> int:
        """Insert new points and move the trial's ``metrics_offset``, in one transaction.

        Points already stored (same experiment, trial and seq) are ignored, so re-reading a
        metrics file after a crash is harmless. Returns how many points were inserted.
        """
        for point in points:
            if point.trial_id != trial_id:
                raise StoreError(
                    f"add_metrics for trial {trial_id!r} got a point of trial "
                    f"{point.trial_id!r} (seq {point.seq}); nothing was stored"
                )
        with self._write("add metrics") as conn:
            before = conn.total_changes
            conn.executemany(_INSERT_METRIC, [codec.metric_row(experiment_id, p) for p in points])
            inserted = conn.total_changes - before
            cur = conn.execute(
                "update trials set metrics_offset = ? where experiment_id = ? and id = ?",
                (new_offset, experiment_id, trial_id),
            )
            if cur.rowcount != 1:
                raise StoreError(
                    f"add_metrics: no trial {trial_id!r} in experiment {experiment_id!r} "
                    "(save_trial it first); nothing was stored"
                )
        return inserted

    def metrics_offset(self, experiment_id: str, trial_id: str) -> int:
        rows = self._rows(
            "read metrics offset",
            "select metrics_offset from trials where experiment_id = ? and id = ?",
            (experiment_id, trial_id),
        )
        return int(rows[0][0]) if rows else 0

    def metrics(self, experiment_id: str, trial_id: str | None = None) -> list[MetricPoint]:
        """Metric points ordered by trial (its sequence) then seq."""
        if trial_id is not None:
            rows = self._rows(
                "read metrics",
                "select * from metrics where experiment_id = ? and trial_id = ? order by seq",
                (experiment_id, trial_id),
            )
        else:
            rows = self._rows(
                "read metrics",
                "select m.* from metrics m left join trials t "
                "on t.experiment_id = m.experiment_id and t.id = m.trial_id "
                "where m.experiment_id = ? order by t.sequence is null, t.sequence, "
                "m.trial_id, m.seq",
                (experiment_id,),
            )
        return [codec.metric_from_row(r) for r in rows]

    # --- code manifests ----------------------------------------------------------------------

    def save_manifest(self, experiment_id: str, manifest_json: str) -> None:
        """The experiment's code manifest (written once, when it starts)."""
        with self._write("save code manifest") as conn:
            conn.execute(
                "insert or replace into code_manifests (experiment_id, manifest, created_at) "
                "values (?, ?, ?)", (experiment_id, manifest_json, time.time()))

    def manifest(self, experiment_id: str) -> str | None:
        rows = self._rows("read code manifest",
                          "select manifest from code_manifests where experiment_id = ?",
                          (experiment_id,))
        return str(rows[0][0]) if rows else None

    # --- events ------------------------------------------------------------------------------

    def add_event(self, ev: EventRecord) -> None:
        with self._write("add event") as conn:
            conn.execute(_INSERT_EVENT, codec.event_row(ev))

    def events(self, experiment_id: str, limit: int | None = 100) -> list[EventRecord]:
        """The last ``limit`` events (all when None), oldest first."""
        if limit is not None and limit <= 0:
            return []
        sql = "select * from events where experiment_id = ? order by id desc"
        params: list[Any] = [experiment_id]
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        rows = self._rows("read events", sql, params)
        return [codec.event_from_row(r) for r in reversed(rows)]

    # --- hosts -------------------------------------------------------------------------------

    def save_host_state(self, st: HostState) -> None:
        with self._write("save host state") as conn:
            conn.execute(_UPSERT_HOST, codec.host_row(st))

    def host_states(self, experiment_id: str) -> list[HostState]:
        rows = self._rows(
            "read host states",
            "select * from hosts where experiment_id = ? order by host",
            (experiment_id,),
        )
        return [codec.host_from_row(r) for r in rows]

    # --- best --------------------------------------------------------------------------------

    def best_trial(self, experiment_id: str) -> TrialRecord | None:
        """The trial with the best final metric under the experiment's optimize_mode.

        Ties go to the earliest trial. None when no trial has a final metric yet.
        """
        exp = self.experiment(experiment_id)
        order = "desc" if exp.optimize_mode is OptimizeMode.MAXIMIZE else "asc"
        rows = self._rows(
            "best trial",
            "select * from trials where experiment_id = ? and final is not null "
            f"order by final {order}, sequence, id limit 1",
            (exp.id,),
        )
        return codec.trial_from_row(rows[0]) if rows else None
