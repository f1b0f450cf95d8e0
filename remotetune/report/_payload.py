"""The report's data as one JSON document: figures, tables, config, hosts and events.

The same document is embedded in ``report.html`` and served by ``remotetune serve`` for the
live page to poll. Non-finite numbers become ``null`` (``JSON.parse`` rejects NaN), and
:func:`script_safe` makes the text safe to put inside a ``<script>`` element.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import plotly.io as pio

from remotetune.model import ExperimentRecord, HostState, TrialRecord
from remotetune.report._data import ReportData, flatten_parameters
from remotetune.report._figures import all_figures, gpu_lane
from remotetune.report._importance import Importance, parameter_importance

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_safe(text: str) -> str:
    """JSON text that cannot end the ``<script>`` element it sits in (nor open a comment)."""
    for raw, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def clean(value: Any) -> Any:
    """A JSON-able copy: non-finite floats become None, unknown objects their ``str``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return str(value)


def experiment_json(exp: ExperimentRecord) -> dict[str, Any]:
    return {
        "id": exp.id, "name": exp.name, "status": exp.status.value, "source": exp.source,
        "tuner": exp.tuner, "optimize_mode": exp.optimize_mode.value,
        "max_trial_number": exp.max_trial_number,
        "max_experiment_duration": exp.max_experiment_duration,
        "trial_concurrency": exp.trial_concurrency, "config_file": exp.config_file,
        "created_at": exp.created_at, "started_at": exp.started_at, "ended_at": exp.ended_at,
        "message": exp.message,
    }


def trial_row(t: TrialRecord) -> dict[str, Any]:
    return {
        "id": t.id, "sequence": t.sequence, "status": t.status.value,
        "final": t.final, "best": t.best_intermediate, "points": t.intermediate_count,
        "where": ", ".join(gpu_lane(t)) if t.host else None,
        "started_at": t.started_at, "ended_at": t.ended_at,
        "duration": (t.ended_at - t.started_at) if t.ended_at and t.started_at else None,
        "parameters": flatten_parameters(t.parameters), "message": t.message,
    }


def host_json(h: HostState) -> dict[str, Any]:
    return {
        "host": h.host, "reachable": h.reachable, "slots": h.slots, "running": h.running,
        "message": h.message, "updated_at": h.updated_at,
        "gpus": [{"index": g.index, "name": g.name, "memory_used_pct": g.memory_used_pct,
                  "utilization_pct": g.utilization_pct,
                  "trials": list(h.gpu_holders.get(g.index, ()))} for g in h.gpus],
    }


def build_payload(data: ReportData, imp: Importance | None = None) -> str:
    """The whole document as JSON text (not yet :func:`script_safe`)."""
    exp = data.experiment
    if imp is None:
        imp = parameter_importance(data.trials, exp.optimize_mode)
    tables = clean({
        "experiment": experiment_json(exp),
        "config": exp.config,
        "machines": list(exp.machines),
        "trials": [trial_row(t) for t in data.trials],
        "hosts": [host_json(h) for h in data.hosts],
        "events": [{"time": e.time, "kind": e.kind, "level": e.level, "message": e.message,
                    "trial_id": e.trial_id, "host": e.host} for e in data.events],
        "importance": {"values": [list(v) for v in imp.values], "note": imp.note},
        "generated_at": data.generated_at,
        "version": data.version,
    })
    figures = ", ".join(
        f"{json.dumps(name)}: {pio.to_json(fig, validate=False, engine='json')}"
        for name, fig in all_figures(data, imp).items()
    )
    body = json.dumps(tables, allow_nan=False, separators=(",", ":"))
    return body[:-1] + f', "figures": {{{figures}}}}}'
