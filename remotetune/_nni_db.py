"""Reading an NNI experiment database (``nni.sqlite``): its three append-only tables as rows.

Only reads (SQLite ``mode=ro``); :mod:`remotetune.nni_import` turns the rows into records.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotetune.errors import StoreError

NNI_TABLES = ("ExperimentProfile", "TrialJobEvent", "MetricData")


@dataclass(frozen=True)
class Profile:
    nni_id: str
    params: Mapping[str, Any]
    start_ms: int | None
    end_ms: int | None
    log_dir: str | None
    revision: int
    exec_duration: int | None


@dataclass(frozen=True)
class Event:
    time: float
    trial_id: str
    event: str
    data: str | None
    log_path: str | None
    sequence: int | None


@dataclass(frozen=True)
class Metric:
    time: float
    trial_id: str
    parameter_id: str
    kind: str
    sequence: int | None
    data: str


def read_nni(file: Path) -> tuple[list[Profile], list[Event], list[Metric]]:
    if not file.is_file():
        raise StoreError(
            f"{file}: no such NNI database (NNI keeps it in "
            "~/nni-experiments/<experiment id>/db/nni.sqlite)"
        )
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{file}: cannot open it as SQLite: {exc}") from exc
    try:
        try:
            tables = {r[0] for r in conn.execute("select name from sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{file}: not an NNI database ({exc})") from exc
        missing = [t for t in NNI_TABLES if t not in tables]
        if missing:
            raise StoreError(
                f"{file}: not an NNI database: missing table(s) {', '.join(missing)} "
                "(pass the nni.sqlite from ~/nni-experiments/<experiment id>/db/)"
            )
        return _profiles(file, conn), _events(conn), _metrics(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"{file}: reading the NNI database failed: {exc}") from exc
    finally:
        conn.close()


def _profiles(file: Path, conn: sqlite3.Connection) -> list[Profile]:
    latest: dict[str, tuple[Any, ...]] = {}
    rows = conn.execute(
        "select id, params, startTime, endTime, logDir, revision, execDuration "
        "from ExperimentProfile order by rowid"
    )
    for row in rows:
        nni_id = str(row[0])
        if nni_id not in latest or (row[5] or 0) >= (latest[nni_id][5] or 0):
            latest[nni_id] = row
    if not latest:
        raise StoreError(
            f"{file}: the NNI database holds no experiment (ExperimentProfile is empty)"
        )
    profiles = []
    for nni_id, (_, params, start, end, log_dir, revision, exec_s) in latest.items():
        decoded = decode_json(params)
        if not isinstance(decoded, Mapping):
            raise StoreError(f"{file}: experiment {nni_id}: its params are not a JSON object")
        profiles.append(
            Profile(nni_id, decoded, start or None, end or None, log_dir, revision or 0, exec_s)
        )
    return sorted(profiles, key=lambda p: (p.start_ms or 0, p.nni_id))


def _events(conn: sqlite3.Connection) -> list[Event]:
    rows = conn.execute(
        "select timestamp, trialJobId, event, data, logPath, sequenceId from TrialJobEvent "
        "where trialJobId is not null and trialJobId != '' order by timestamp, rowid"
    )
    return [Event(seconds(r[0]) or 0.0, str(r[1]), str(r[2]), r[3], r[4], r[5]) for r in rows]


def _metrics(conn: sqlite3.Connection) -> list[Metric]:
    rows = conn.execute(
        "select timestamp, trialJobId, parameterId, type, sequence, data from MetricData "
        "order by timestamp, rowid"
    )
    return [
        Metric(seconds(r[0]) or 0.0, str(r[1]), str(r[2]), str(r[3]), r[4], r[5]) for r in rows
    ]


def assign_trials(profiles: Sequence[Profile], events: Sequence[Event]) -> dict[str, set[str]]:
    """Which trials belong to which experiment (NNI's trial tables carry no experiment id).

    One experiment (the normal case) gets every trial. With several, a trial goes to the
    experiment whose id appears in its log path, else to the last one started.
    """
    ids = [p.nni_id for p in profiles]
    owners: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        owner = ids[-1]
        if len(ids) > 1:
            owner = next((i for i in ids if ev.log_path and f"/{i}/" in ev.log_path), owner)
            if any(ev.trial_id in s for s in owners.values()):
                continue
        owners[owner].add(ev.trial_id)
    return owners



def seconds(ms: int | float | None) -> float | None:
    return None if ms is None else float(ms) / 1000.0


def decode_json(text: Any) -> Any:
    """JSON that may be encoded more than once (NNI double-encodes metric data)."""
    value = text
    for _ in range(3):
        if not isinstance(value, (str, bytes)):
            return value
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # nested too deep to be a metric
            return value if value is not text else None
    return value
