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

import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remotetune._nni_db import (
    Event,
    Metric,
    Profile,
    assign_trials,
    decode_json,
    read_nni,
    seconds,
)
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
    profiles, events, metrics = read_nni(file)
    owners = assign_trials(profiles, events)
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


def _already_imported(store: Store) -> dict[str, str]:
    found: dict[str, str] = {}
    for exp in store.experiments():
        origin = exp.config.get(IMPORT_KEY) if exp.source == "nni" else None
        if isinstance(origin, Mapping) and origin.get("experimentId"):
            found.setdefault(str(origin["experimentId"]), exp.id)
    return found


# --- decoding --------------------------------------------------------------------------------


def _parameters(data: str | None) -> _Parameters | None:
    if not data:
        return None
    form = decode_json(data)
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
    profile: Profile,
    events: Sequence[Event],
    metrics: Sequence[Metric],
) -> NniImport:
    params, dropped = scrub_secrets(dict(profile.params))
    if dropped:
        logger.info(
            "NNI experiment %s: not importing secret values of %s",
            profile.nni_id,
            ", ".join(dropped),
        )
    if isinstance(params.get("searchSpace"), str):  # NNI v1 keeps it as a JSON string
        params["searchSpace"] = decode_json(params["searchSpace"])
    tuner, mode = _algorithm(params)
    exp_id = store.new_experiment_id()
    trials, points, skipped = _build_trials(exp_id, profile.nni_id, events, metrics, mode)
    record = _experiment(exp_id, file, profile, params, trials, tuner, mode)
    what = f"imported NNI experiment {profile.nni_id} from {file}"
    stored = _write(store, record, trials, points, what)
    logger.info(
        "imported NNI experiment %s as %s (%d trials, %d metrics)",
        profile.nni_id,
        exp_id,
        len(trials),
        stored,
    )
    return NniImport(profile.nni_id, exp_id, True, len(trials), stored, skipped)


def _build_trials(
    exp_id: str,
    nni_id: str,
    events: Sequence[Event],
    metrics: Sequence[Metric],
    mode: OptimizeMode,
) -> tuple[list[TrialRecord], dict[str, list[MetricPoint]], int]:
    """The trials, their metric points and how many metric rows were skipped."""
    by_parameter_id: dict[str, _Parameters] = {}
    trial_events: dict[str, list[Event]] = defaultdict(list)
    for ev in events:
        trial_events[ev.trial_id].append(ev)
        form = _parameters(ev.data)
        if form is not None:
            by_parameter_id[form.parameter_id] = form
    trial_metrics: dict[str, list[Metric]] = defaultdict(list)
    for m in metrics:
        trial_metrics[m.trial_id].append(m)
    orphans = sorted(set(trial_metrics) - set(trial_events))
    if orphans:
        logger.warning(
            "NNI experiment %s: metrics of unknown trials %s skipped", nni_id, ", ".join(orphans)
        )
    trials: list[TrialRecord] = []
    points: dict[str, list[MetricPoint]] = {}
    skipped = sum(len(trial_metrics[t]) for t in orphans)
    used_sequences: set[int] = set()
    for trial_id, evs in trial_events.items():
        mets = trial_metrics.get(trial_id, [])
        pts, bad = _points(trial_id, mets)
        skipped += bad
        points[trial_id] = pts
        trials.append(
            _trial(exp_id, trial_id, evs, mets, pts, by_parameter_id, mode, used_sequences)
        )
    return _unique_sequences(trials), points, skipped


def _experiment(
    exp_id: str,
    file: Path,
    profile: Profile,
    params: dict[str, Any],
    trials: Sequence[TrialRecord],
    tuner: str,
    mode: OptimizeMode,
) -> ExperimentRecord:
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
    return ExperimentRecord(
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
        created_at=seconds(profile.start_ms),
        started_at=seconds(profile.start_ms),
        ended_at=seconds(profile.end_ms),
        message=f"imported from NNI database {file}",
        source="nni",
    )


def _write(
    store: Store,
    record: ExperimentRecord,
    trials: Sequence[TrialRecord],
    points: Mapping[str, Sequence[MetricPoint]],
    what: str,
) -> int:
    """Write one experiment through the store's writer API, in one transaction.

    The same public methods the controller uses (``save_trial``, ``add_metrics``,
    ``add_event``, ``save_experiment``); all or nothing. Returns the metric points stored.
    """
    stored = 0
    with store.batch():
        for trial in trials:
            store.save_trial(trial)
            pts = points[trial.id]
            stored += store.add_metrics(record.id, trial.id, pts, 0) if pts else 0
        store.add_event(
            EventRecord(
                record.id,
                time.time(),
                "experiment",
                f"{what}: {len(trials)} trials, {stored} metrics",
            )
        )
        store.save_experiment(record)
    return stored


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _points(trial_id: str, metrics: Sequence[Metric]) -> tuple[list[MetricPoint], int]:
    """The trial's metric points, numbered 0, 1, 2... in the order NNI received them."""
    out: list[MetricPoint] = []
    bad = 0
    for m in metrics:
        kind = _METRIC_KINDS.get(m.kind)
        raw = decode_json(m.data)
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
    events: Sequence[Event],
    metrics: Sequence[Metric],
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
    chosen = _chosen_parameters(own, metrics, by_parameter_id)
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


def _chosen_parameters(
    own: _Parameters | None,
    metrics: Sequence[Metric],
    by_parameter_id: Mapping[str, _Parameters],
) -> _Parameters | None:
    """The metrics' parameterId wins: the FINAL one's, else the last reported one's."""
    reported = [m for m in metrics if m.kind == "FINAL"] or list(metrics)
    if reported:
        pid = reported[-1].parameter_id
        if pid in by_parameter_id and (own is None or own.parameter_id != pid):
            return by_parameter_id[pid]
    return own


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
