"""Export an experiment's trials as CSV or JSON (one row per trial).

Columns: id, sequence, status, host, gpus, parameter_id, started, ended (ISO 8601, UTC),
duration_s, exit_code, one ``param.<name>`` column per parameter (nested choices flattened:
``param.model._name``, ``param.model.kernel``), final, best_intermediate (under the
experiment's optimize_mode), latest_intermediate, intermediate_count. CSV has a header over the
union of every trial's parameter columns; JSON is a list of objects that also carry the nested
``parameters`` object.
"""

from __future__ import annotations

import csv
import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from remotetune import jsonsafe
from remotetune.errors import ConfigError
from remotetune.model import MetricKind, MetricPoint, OptimizeMode, TrialRecord
from remotetune.store import Store

PARAM_PREFIX = "param."
LEADING_COLUMNS = (
    "id",
    "sequence",
    "status",
    "host",
    "gpus",
    "parameter_id",
    "started",
    "ended",
    "duration_s",
    "exit_code",
)
TRAILING_COLUMNS = ("final", "best_intermediate", "latest_intermediate", "intermediate_count")


class ExportFormat(str, enum.Enum):
    CSV = "csv"
    JSON = "json"


def export_trials(store: Store, experiment_id: str, fmt: str | ExportFormat, out: TextIO,
                  *, neutralize: bool = True) -> int:
    """Write the experiment's trials to ``out``; return the number of trials written.

    CSV cells holding text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return get a leading ``'`` so a spreadsheet shows them as text instead of running them
    as formulas (OWASP's CSV-injection rule); numbers are never changed. ``neutralize=False``
    (``remotetune export --raw-csv``) writes the text as it is. JSON is strict: a non-finite
    number is written as null.

    ``experiment_id`` may be a unique prefix. Raises ``ConfigError`` for an unknown format and
    ``ExperimentNotFound`` for an unknown experiment.
    """
    try:
        form = ExportFormat(fmt.lower() if isinstance(fmt, str) else fmt)
    except ValueError:
        raise ConfigError(
            f"unknown export format {fmt!r}", key="format", hint="use csv or json"
        ) from None
    exp = store.experiment(experiment_id)
    trials = store.trials(exp.id)
    points = _points_by_trial(store.metrics(exp.id))
    rows = [_row(t, points.get(t.id, ()), exp.optimize_mode) for t in trials]
    if form is ExportFormat.CSV:
        _write_csv(rows, out, neutralize)
    else:
        text, _ = jsonsafe.dumps([_json_row(r, t) for r, t in zip(rows, trials, strict=True)],
                                 indent=2)
        out.write(text + "\n")
    return len(rows)


def flatten_parameters(parameters: Mapping[str, Any], prefix: str = PARAM_PREFIX) -> dict[str, Any]:
    """``{"model": {"_name": "svm", "C": 1}}`` -> ``{"param.model._name": "svm", ...}``."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_parameters(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _points_by_trial(points: Iterable[MetricPoint]) -> dict[str, list[MetricPoint]]:
    out: dict[str, list[MetricPoint]] = {}
    for p in points:
        out.setdefault(p.trial_id, []).append(p)
    return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _row(trial: TrialRecord, points: Sequence[MetricPoint], mode: OptimizeMode) -> dict[str, Any]:
    inter = [p.value for p in points if p.kind is MetricKind.INTERMEDIATE]
    finals = [p.value for p in points if p.kind is MetricKind.FINAL]
    if inter:
        best: float | None = inter[0]
        for value in inter[1:]:
            best = value if best is None or mode.better(value, best) else best
        latest: float | None = inter[-1]
        count = len(inter)
    else:  # no points stored (an old or partial store): trust the trial record
        best, latest, count = (
            trial.best_intermediate,
            trial.latest_intermediate,
            trial.intermediate_count,
        )
    duration = None
    if trial.started_at is not None and trial.ended_at is not None:
        duration = round(trial.ended_at - trial.started_at, 3)
    row: dict[str, Any] = {
        "id": trial.id,
        "sequence": trial.sequence,
        "status": trial.status.value,
        "host": trial.host,
        "gpus": list(trial.gpus),
        "parameter_id": trial.parameter_id,
        "started": _iso(trial.started_at),
        "ended": _iso(trial.ended_at),
        "duration_s": duration,
        "exit_code": trial.exit_code,
    }
    row.update(flatten_parameters(trial.parameters))
    row["final"] = trial.final if trial.final is not None else (finals[-1] if finals else None)
    row["best_intermediate"] = best
    row["latest_intermediate"] = latest
    row["intermediate_count"] = count
    return row


def _param_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}  # insertion-ordered set: first appearance order
    for row in rows:
        for key in row:
            if key.startswith(PARAM_PREFIX):
                seen.setdefault(key, None)
    return list(seen)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(column: str, value: Any, neutralize: bool = True) -> Any:
    if value is None:
        return ""
    if column == "gpus":
        return ",".join(str(v) for v in value)  # "0,1"
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, dict, bool)):
        value = json.dumps(value)
    if neutralize and isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value  # text, not a formula; numbers (-0.5) are not strings here
    return value


def _write_csv(rows: Sequence[Mapping[str, Any]], out: TextIO, neutralize: bool = True) -> None:
    columns = [*LEADING_COLUMNS, *_param_columns(rows), *TRAILING_COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(c, row.get(c), neutralize) for c in columns])


def _json_row(row: Mapping[str, Any], trial: TrialRecord) -> dict[str, Any]:
    return {**row, "parameters": dict(trial.parameters)}
