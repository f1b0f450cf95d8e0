"""Import an NNI experiment database (``~/nni-experiments/<id>/db/nni.sqlite``) into the store.

NNI's tables are append-only logs (see docs/store.md, "Importing from NNI"):

- ``ExperimentProfile``: one row per save; the row with the highest ``revision`` wins.
- ``TrialJobEvent``: a trial's status is its last status event; parameters ride on the events
  that carry ``data`` (WAITING, ADD_HYPERPARAMETER...).
- ``MetricData``: ``data`` is JSON encoded twice; ``parameterId`` names the parameters the
  metric was reported for, and wins over the trial's own event when the two disagree.

Timestamps are epoch milliseconds there and epoch seconds here. Secret values (passwords,
passphrases) in NNI's config are dropped. Importing the same NNI experiment again does not
duplicate it: the existing remotetune id is returned (``created=False`` in the report).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remotetune.errors import StoreError
from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    MetricKind,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
    metric_value,
)
from remotetune.store import Store, scrub_secrets

logger = logging.getLogger(__name__)

NNI_TABLES = ("ExperimentProfile", "TrialJobEvent", "MetricData")
IMPORT_KEY = "importedFrom"  # config key recording where an imported experiment came from

_STATUS_EVENTS: Mapping[str, TrialStatus] = {
    "WAITING": TrialStatus.WAITING,
    "RUNNING": TrialStatus.RUNNING,
    "SUCCEEDED": TrialStatus.SUCCEEDED,
    "FAILED": TrialStatus.FAILED,
    "USER_CANCELED": TrialStatus.USER_CANCELED,
    "USER_TO_CANCEL": TrialStatus.USER_CANCELED,
    "SYS_CANCELED": TrialStatus.SYS_CANCELED,
    "EARLY_STOPPED": TrialStatus.EARLY_STOPPED,
    "UNKNOWN": TrialStatus.FAILED,  # NNI lost track of it; we have no "unknown" state
}
_METRIC_KINDS: Mapping[str, MetricKind] = {
    "PERIODICAL": MetricKind.INTERMEDIATE,
    "FINAL": MetricKind.FINAL,
}
_LOG_PATH = re.compile(r"^file://(?P<host>[^:/]*):(?P<path>.*)$")
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)\s*$", re.IGNORECASE)
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class NniImport:
    """What importing one NNI experiment did."""

    nni_id: str
    experiment_id: str  # remotetune's id
    created: bool  # False: it had been imported before, nothing was written
    trials: int
    metrics: int
    skipped_metrics: int = 0  # points whose value was not a number (or dict with a number)


@dataclass(frozen=True)
class _Profile:
    nni_id: str
    params: Mapping[str, Any]
    start_ms: int | None
    end_ms: int | None
    log_dir: str | None
    revision: int
    exec_duration: int | None


@dataclass(frozen=True)
class _Event:
    time: float
    trial_id: str
    event: str
    data: str | None
    log_path: str | None
    sequence: int | None


@dataclass(frozen=True)
class _Metric:
    time: float
    trial_id: str
    parameter_id: str
    kind: str
    sequence: int | None
    data: str


@dataclass(frozen=True)
class _Parameters:
    parameter_id: str
    values: Mapping[str, Any]


def import_nni(store: Store, path: str | os.PathLike[str]) -> list[str]:
    """Import every experiment in an ``nni.sqlite``; return their remotetune ids.

    An experiment imported before is not duplicated: its existing id is returned.
    """
    return [r.experiment_id for r in import_nni_report(store, path)]


def import_nni_report(store: Store, path: str | os.PathLike[str]) -> list[NniImport]:
    """Like :func:`import_nni`, with what each import did (for the CLI to report)."""
    file = Path(path).expanduser()
    profiles, events, metrics = _read(file)
    owners = _assign_trials(profiles, events)
    owned = set().union(*owners.values()) if owners else set()
    existing = _already_imported(store)
    results: list[NniImport] = []
    for profile in profiles:
        if profile.nni_id in existing:
            logger.info(
                "NNI experiment %s was already imported as %s",
                profile.nni_id,
                existing[profile.nni_id],
            )
            results.append(NniImport(profile.nni_id, existing[profile.nni_id], False, 0, 0))
            continue
        mine = owners.get(profile.nni_id, set())
        # metrics of a trial without events go with the last experiment (and get skipped)
        last = profile is profiles[-1]
        results.append(
            _import_one(
                store,
                file,
                profile,
                [e for e in events if e.trial_id in mine],
                [m for m in metrics if m.trial_id in mine or (last and m.trial_id not in owned)],
            )
        )
    return results


# --- reading NNI's file ----------------------------------------------------------------------


def _read(file: Path) -> tuple[list[_Profile], list[_Event], list[_Metric]]:
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


def _profiles(file: Path, conn: sqlite3.Connection) -> list[_Profile]:
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
        decoded = _decode_json(params)
        if not isinstance(decoded, Mapping):
            raise StoreError(f"{file}: experiment {nni_id}: its params are not a JSON object")
        profiles.append(
            _Profile(nni_id, decoded, start or None, end or None, log_dir, revision or 0, exec_s)
        )
    return sorted(profiles, key=lambda p: (p.start_ms or 0, p.nni_id))


def _events(conn: sqlite3.Connection) -> list[_Event]:
    rows = conn.execute(
        "select timestamp, trialJobId, event, data, logPath, sequenceId from TrialJobEvent "
        "where trialJobId is not null and trialJobId != '' order by timestamp, rowid"
    )
    return [_Event(_seconds(r[0]) or 0.0, str(r[1]), str(r[2]), r[3], r[4], r[5]) for r in rows]


def _metrics(conn: sqlite3.Connection) -> list[_Metric]:
    rows = conn.execute(
        "select timestamp, trialJobId, parameterId, type, sequence, data from MetricData "
        "order by timestamp, rowid"
    )
    return [
        _Metric(_seconds(r[0]) or 0.0, str(r[1]), str(r[2]), str(r[3]), r[4], r[5]) for r in rows
    ]


def _assign_trials(profiles: Sequence[_Profile], events: Sequence[_Event]) -> dict[str, set[str]]:
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


def _already_imported(store: Store) -> dict[str, str]:
    found: dict[str, str] = {}
    for exp in store.experiments():
        origin = exp.config.get(IMPORT_KEY) if exp.source == "nni" else None
        if isinstance(origin, Mapping) and origin.get("experimentId"):
            found.setdefault(str(origin["experimentId"]), exp.id)
    return found


# --- decoding --------------------------------------------------------------------------------


def _seconds(ms: int | float | None) -> float | None:
    return None if ms is None else float(ms) / 1000.0


def _decode_json(text: Any) -> Any:
    """JSON that may be encoded more than once (NNI double-encodes metric data)."""
    value = text
    for _ in range(3):
        if not isinstance(value, (str, bytes)):
            return value
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to be a metric
            return value if value is not text else None
    return value


def _parameters(data: str | None) -> _Parameters | None:
    if not data:
        return None
    form = _decode_json(data)
    if not isinstance(form, Mapping) or not isinstance(form.get("parameters"), Mapping):
        return None
    return _Parameters(str(form.get("parameter_id")), dict(form["parameters"]))


def _int_id(parameter_id: str, fallback: int) -> int:
    head = parameter_id.split("_", 1)[0]
    return int(head) if head.isdigit() else fallback


def _duration(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    return float(match["n"]) * _UNIT_S[match["unit"].lower()] if match else None


def _algorithm(params: Mapping[str, Any]) -> tuple[str, OptimizeMode]:
    for key in ("tuner", "advisor"):
        spec = params.get(key)
        if not isinstance(spec, Mapping):
            continue
        name = (
            spec.get("name")
            or spec.get("builtinTunerName")
            or spec.get("builtinAdvisorName")
            or spec.get("className")
            or ""
        )
        args = spec.get("classArgs")
        mode_text = str(args.get("optimize_mode", "maximize")) if isinstance(args, Mapping) else ""
        try:
            mode = OptimizeMode(mode_text.lower() or "maximize")
        except ValueError:
            logger.warning("NNI %s optimize_mode %r unknown; using maximize", key, mode_text)
            mode = OptimizeMode.MAXIMIZE
        return str(name), mode
    return "", OptimizeMode.MAXIMIZE


def _machines(params: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    services = params.get("trainingService")
    candidates: list[Any] = [params.get("machineList")]  # NNI v1
    if isinstance(services, Mapping):
        candidates.append(services.get("machineList"))
    elif isinstance(services, list):
        candidates.extend(s.get("machineList") for s in services if isinstance(s, Mapping))
    return tuple(
        dict(m)
        for lst in candidates
        if isinstance(lst, list)
        for m in lst
        if isinstance(m, Mapping)
    )


# --- building records ------------------------------------------------------------------------


def _import_one(
    store: Store,
    file: Path,
    profile: _Profile,
    events: Sequence[_Event],
    metrics: Sequence[_Metric],
) -> NniImport:
    params, dropped = scrub_secrets(dict(profile.params))
    if dropped:
        logger.info(
            "NNI experiment %s: not importing secret values of %s",
            profile.nni_id,
            ", ".join(dropped),
        )
    if isinstance(params.get("searchSpace"), str):  # NNI v1 keeps it as a JSON string
        params["searchSpace"] = _decode_json(params["searchSpace"])
    tuner, mode = _algorithm(params)
    by_parameter_id: dict[str, _Parameters] = {}
    trial_events: dict[str, list[_Event]] = defaultdict(list)
    for ev in events:
        trial_events[ev.trial_id].append(ev)
        form = _parameters(ev.data)
        if form is not None:
            by_parameter_id[form.parameter_id] = form
    trial_metrics: dict[str, list[_Metric]] = defaultdict(list)
    for m in metrics:
        trial_metrics[m.trial_id].append(m)
    orphans = sorted(set(trial_metrics) - set(trial_events))
    if orphans:
        logger.warning(
            "NNI experiment %s: metrics of unknown trials %s skipped",
            profile.nni_id,
            ", ".join(orphans),
        )

    exp_id = store.new_experiment_id()
    trials: list[TrialRecord] = []
    points: dict[str, list[MetricPoint]] = {}
    skipped = sum(len(trial_metrics[t]) for t in orphans)
    used_sequences: set[int] = set()
    for trial_id, evs in trial_events.items():
        pts, bad = _points(trial_id, trial_metrics.get(trial_id, []))
        skipped += bad
        points[trial_id] = pts
        trials.append(
            _trial(
                exp_id,
                trial_id,
                evs,
                trial_metrics.get(trial_id, []),
                pts,
                by_parameter_id,
                mode,
                used_sequences,
            )
        )
    trials = _unique_sequences(trials)

    active = any(not t.status.is_finished() for t in trials)
    status = (
        ExperimentStatus.RUNNING if profile.end_ms is None and active else ExperimentStatus.DONE
    )
    params[IMPORT_KEY] = {
        "format": "nni",
        "experimentId": profile.nni_id,
        "file": str(file.resolve()),
        "revision": profile.revision,
        "logDir": profile.log_dir,
        "execDuration": profile.exec_duration,
        "importedAt": time.time(),
    }
    name = str(params.get("experimentName") or "").strip()
    record = ExperimentRecord(
        id=exp_id,
        name=f"{name} (nni {profile.nni_id})" if name else f"nni {profile.nni_id}",
        status=status,
        config=params,
        machines=_machines(params),
        tuner=tuner,
        optimize_mode=mode,
        max_trial_number=_optional_int(params.get("maxTrialNumber", params.get("maxTrialNum"))),
        max_experiment_duration=_duration(
            params.get("maxExperimentDuration", params.get("maxExecDuration"))
        ),
        trial_concurrency=_optional_int(params.get("trialConcurrency")) or 1,
        created_at=_seconds(profile.start_ms),
        started_at=_seconds(profile.start_ms),
        ended_at=_seconds(profile.end_ms),
        message=f"imported from NNI database {file}",
        source="nni",
    )
    stored = 0
    with store.batch():
        for trial in trials:
            store.save_trial(trial)
            pts = points[trial.id]
            stored += store.add_metrics(exp_id, trial.id, pts, 0) if pts else 0
        store.add_event(
            EventRecord(
                exp_id,
                time.time(),
                "experiment",
                f"imported NNI experiment {profile.nni_id} from {file}: "
                f"{len(trials)} trials, {stored} metrics",
            )
        )
        store.save_experiment(record)
    logger.info(
        "imported NNI experiment %s as %s (%d trials, %d metrics)",
        profile.nni_id,
        exp_id,
        len(trials),
        stored,
    )
    return NniImport(profile.nni_id, exp_id, True, len(trials), stored, skipped)


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _points(trial_id: str, metrics: Sequence[_Metric]) -> tuple[list[MetricPoint], int]:
    """The trial's metric points, numbered 0, 1, 2... in the order NNI received them."""
    out: list[MetricPoint] = []
    bad = 0
    for m in metrics:
        kind = _METRIC_KINDS.get(m.kind)
        raw = _decode_json(m.data)
        try:
            if kind is None:
                raise ValueError(f"metric type {m.kind!r}")
            value = metric_value(raw)
        except ValueError as exc:
            logger.warning("NNI trial %s: skipping metric %r (%s)", trial_id, m.data, exc)
            bad += 1
            continue
        out.append(MetricPoint(trial_id, len(out), kind, value, raw, m.time))
    return out, bad


def _trial(
    exp_id: str,
    trial_id: str,
    events: Sequence[_Event],
    metrics: Sequence[_Metric],
    points: Sequence[MetricPoint],
    by_parameter_id: Mapping[str, _Parameters],
    mode: OptimizeMode,
    used_sequences: set[int],
) -> TrialRecord:
    status = TrialStatus.WAITING
    last_status_event = ""
    own: _Parameters | None = None
    started = ended = None
    log_path = None
    sequence = next((e.sequence for e in events if e.sequence is not None), None)
    for ev in events:
        form = _parameters(ev.data)
        if form is not None:
            own = form
        if ev.log_path:
            log_path = ev.log_path
        if ev.event in _STATUS_EVENTS:
            status = _STATUS_EVENTS[ev.event]
            last_status_event = ev.event
            if status is TrialStatus.RUNNING and started is None:
                started = ev.time
            if status.is_finished():
                ended = ev.time
    # the metrics' parameterId wins: the FINAL one's, else the last reported one's
    chosen = own
    reported = [m for m in metrics if m.kind == "FINAL"] or list(metrics)
    if reported:
        pid = reported[-1].parameter_id
        if pid in by_parameter_id and (own is None or own.parameter_id != pid):
            chosen = by_parameter_id[pid]
    host, trial_dir = _where(log_path)
    inter = [p.value for p in points if p.kind is MetricKind.INTERMEDIATE]
    finals = [p.value for p in points if p.kind is MetricKind.FINAL]
    best = None
    for value in inter:
        best = value if best is None or mode.better(value, best) else best
    seq = sequence if sequence is not None and sequence not in used_sequences else -1
    if seq >= 0:
        used_sequences.add(seq)
    return TrialRecord(
        id=trial_id,
        experiment_id=exp_id,
        sequence=seq,
        parameters=dict(chosen.values) if chosen else {},
        status=status,
        parameter_id=_int_id(chosen.parameter_id, -1) if chosen else -1,
        host=host,
        trial_dir=trial_dir,
        created_at=events[0].time if events else None,
        started_at=started,
        ended_at=ended if status.is_finished() else None,
        final=finals[-1] if finals else None,
        best_intermediate=best,
        latest_intermediate=inter[-1] if inter else None,
        intermediate_count=len(inter),
        message="NNI reported status UNKNOWN" if last_status_event == "UNKNOWN" else None,
    )


def _unique_sequences(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Number trials without a usable NNI sequenceId (-1) after the others, in creation order.

    A trial without a numeric parameter id (-1) gets its sequence as parameter id.
    """
    ordered = sorted(trials, key=lambda t: (t.sequence < 0, t.sequence, t.created_at or 0.0))
    taken = {t.sequence for t in ordered if t.sequence >= 0}
    nxt = max(taken, default=-1) + 1
    out = []
    for t in ordered:
        if t.sequence < 0:
            t = replace(t, sequence=nxt)
            nxt += 1
        if t.parameter_id < 0:
            t = replace(t, parameter_id=t.sequence)
        out.append(t)
    return out


def _where(log_path: str | None) -> tuple[str | None, str | None]:
    """``file://host:/path`` -> (host, path); anything else is kept as the trial dir."""
    if not log_path:
        return None, None
    match = _LOG_PATH.match(log_path)
    if match:
        return match["host"] or None, match["path"] or None
    return None, log_path
