"""What a report shows, read from the store in one go (reads only).

:class:`ReportData` is an immutable picture of one experiment: its record, trials,
intermediate curves, host states and events. Everything in it came from the store, so
every string in it is untrusted text: the page escapes it (see ``_page``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    HostState,
    MetricKind,
    TrialRecord,
)

if TYPE_CHECKING:
    from remotetune.store import Store

EVENTS_SHOWN = 500  # the last events a report lists
MAX_CURVE_POINTS = 200  # points drawn per trial curve; longer curves are downsampled


@dataclass(frozen=True)
class Curve:
    """A trial's intermediate results: step (1, 2, ...) and value, maybe downsampled."""

    steps: tuple[int, ...]
    values: tuple[float, ...]
    total: int  # points the trial reported (before downsampling)


@dataclass(frozen=True)
class ReportData:
    experiment: ExperimentRecord
    trials: tuple[TrialRecord, ...]
    curves: Mapping[str, Curve]  # trial id -> its intermediate curve (trials with points only)
    hosts: tuple[HostState, ...]
    events: tuple[EventRecord, ...]  # oldest first, the last EVENTS_SHOWN
    generated_at: float
    version: str  # changes whenever what the report shows changes (see version_of)


def load_report_data(
    store: Store, experiment_id: str, *, now: float | None = None
) -> ReportData:
    """Read everything a report of ``experiment_id`` (or an id prefix) shows."""
    exp = store.experiment(experiment_id)
    trials = tuple(store.trials(exp.id))
    hosts = tuple(store.host_states(exp.id))
    events = tuple(store.events(exp.id, limit=EVENTS_SHOWN))
    now = time.time() if now is None else now
    steps: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    for point in store.metrics(exp.id):
        if point.kind is not MetricKind.INTERMEDIATE:
            continue
        ys = values.setdefault(point.trial_id, [])
        ys.append(point.value)
        steps.setdefault(point.trial_id, []).append(len(ys))
    curves = {tid: downsample(steps[tid], ys, MAX_CURVE_POINTS) for tid, ys in values.items()}
    return ReportData(
        experiment=exp,
        trials=trials,
        curves=curves,
        hosts=hosts,
        events=events,
        generated_at=now,
        version=version_of(exp, trials, hosts, events[-1:], now),
    )


def current_version(store: Store, experiment_id: str, *, now: float | None = None) -> str:
    """What :func:`load_report_data` would give as ``version``, without reading metrics."""
    exp = store.experiment(experiment_id)
    return version_of(exp, store.trials(exp.id), store.host_states(exp.id),
                      store.events(exp.id, limit=1), time.time() if now is None else now)


VERSION_TICK_S = 10.0  # running trials' timeline bars grow: a new version this often


def version_of(
    exp: ExperimentRecord,
    trials: Sequence[TrialRecord],
    hosts: Sequence[HostState],
    last_events: Sequence[EventRecord],
    now: float,
) -> str:
    """A short hash of everything that changes when the controller records progress.

    New metric points change their trial's ``intermediate_count``, so metrics need not be
    read. While trials run, the version also moves every ``VERSION_TICK_S`` seconds.
    """
    running = any(not t.status.is_finished() for t in trials)
    tick = int(now // VERSION_TICK_S) if running else 0
    text = repr((exp, tuple(trials), tuple(hosts), tuple(last_events), tick))
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


def downsample(steps: list[int], values: list[float], limit: int) -> Curve:
    """At most ``limit`` points: evenly spaced ones, always keeping the first and last.

    The highest and lowest points are kept too, so the drawn curve reaches the same extreme.
    """
    n = len(values)
    if n <= limit or limit < 4:
        return Curve(tuple(steps), tuple(values), n)
    keep = {round(i * (n - 1) / (limit - 3)) for i in range(limit - 2)}
    keep.add(max(range(n), key=values.__getitem__))
    keep.add(min(range(n), key=values.__getitem__))
    chosen = sorted(keep)
    return Curve(tuple(steps[i] for i in chosen), tuple(values[i] for i in chosen), n)


def flatten_parameters(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested choices as flat keys: ``{"opt": {"_name": "sgd", "lr": 0.1}}`` becomes
    ``{"opt": "sgd", "opt/lr": 0.1}``; lists and other values become their JSON-ish text."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if "_name" in value:
                flat[name] = value["_name"]
            rest = {k: v for k, v in value.items() if k != "_name"}
            flat.update(flatten_parameters(rest, name + "/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
