"""Conversions between the model's records and the store's rows (JSON columns both ways)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    GpuInfo,
    HostState,
    MetricKind,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)


class Row(Protocol):
    """A result row read by column name (``sqlite3.Row`` or a dict)."""

    def __getitem__(self, key: str) -> Any: ...


# Key names (lowercase, without "_" or "-") whose values are secrets. "passwordEnv" and
# friends name an environment variable and are kept.
SECRET_KEYS = frozenset(
    {"password", "passwd", "passphrase", "sshpassphrase", "secret", "token", "apikey", "secretkey"}
)


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and re.sub(r"[_\-]", "", key.lower()) in SECRET_KEYS


def scrub_secrets(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """A copy of ``value`` without secret-named keys, and the dotted paths it dropped."""
    dropped: list[str] = []
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if is_secret_key(key):
                dropped.append(path)
                continue
            out[key], inner = scrub_secrets(item, path)
            dropped.extend(inner)
        return out, dropped
    if isinstance(value, (list, tuple)):
        items = []
        for index, item in enumerate(value):
            clean, inner = scrub_secrets(item, f"{where}[{index}]")
            items.append(clean)
            dropped.extend(inner)
        return items, dropped
    return value, dropped


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # key order kept (search-space order)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a row written before lines were checked: keep text
        return text


def _finite_or_none(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


# --- experiments -----------------------------------------------------------------------------

EXPERIMENT_COLUMNS = (
    "id",
    "name",
    "status",
    "config",
    "config_file",
    "machines",
    "tuner",
    "optimize_mode",
    "max_trial_number",
    "max_experiment_duration",
    "trial_concurrency",
    "created_at",
    "started_at",
    "ended_at",
    "message",
    "source",
)


def experiment_row(rec: ExperimentRecord) -> tuple[Any, ...]:
    return (
        rec.id,
        rec.name,
        rec.status.value,
        dumps(dict(rec.config)),
        rec.config_file,
        dumps([dict(m) for m in rec.machines]),
        rec.tuner,
        rec.optimize_mode.value,
        rec.max_trial_number,
        rec.max_experiment_duration,
        rec.trial_concurrency,
        rec.created_at,
        rec.started_at,
        rec.ended_at,
        rec.message,
        rec.source,
    )


def experiment_from_row(row: Row) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"],
        name=row["name"],
        status=ExperimentStatus(row["status"]),
        config=loads(row["config"], {}),
        config_file=row["config_file"],
        machines=tuple(loads(row["machines"], [])),
        tuner=row["tuner"] or "",
        optimize_mode=OptimizeMode(row["optimize_mode"] or OptimizeMode.MAXIMIZE.value),
        max_trial_number=row["max_trial_number"],
        max_experiment_duration=row["max_experiment_duration"],
        trial_concurrency=row["trial_concurrency"] if row["trial_concurrency"] is not None else 1,
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        message=row["message"],
        source=row["source"],
    )


# --- trials ----------------------------------------------------------------------------------

# Every trials column except metrics_offset, which only add_metrics moves.
TRIAL_COLUMNS = (
    "experiment_id",
    "id",
    "sequence",
    "parameter_id",
    "attempt",
    "retry_of",
    "parameters",
    "status",
    "host",
    "gpus",
    "pid",
    "trial_dir",
    "created_at",
    "started_at",
    "ended_at",
    "exit_code",
    "final",
    "best_intermediate",
    "latest_intermediate",
    "intermediate_count",
    "message",
    "stdout_tail",
    "stderr_tail",
)


def trial_row(rec: TrialRecord) -> tuple[Any, ...]:
    return (
        rec.experiment_id,
        rec.id,
        rec.sequence,
        rec.parameter_id,
        rec.attempt,
        rec.retry_of,
        dumps(dict(rec.parameters)),
        rec.status.value,
        rec.host,
        dumps(list(rec.gpus)),
        rec.pid,
        rec.trial_dir,
        rec.created_at,
        rec.started_at,
        rec.ended_at,
        rec.exit_code,
        _finite_or_none(rec.final),
        _finite_or_none(rec.best_intermediate),
        _finite_or_none(rec.latest_intermediate),
        rec.intermediate_count,
        rec.message,
        rec.stdout_tail,
        rec.stderr_tail,
    )


def trial_from_row(row: Row) -> TrialRecord:
    return TrialRecord(
        id=row["id"],
        experiment_id=row["experiment_id"],
        sequence=row["sequence"],
        parameters=loads(row["parameters"], {}),
        status=TrialStatus(row["status"]),
        parameter_id=row["parameter_id"] if row["parameter_id"] is not None else 0,
        attempt=row["attempt"] if row["attempt"] is not None else 1,
        retry_of=row["retry_of"],
        host=row["host"],
        gpus=tuple(loads(row["gpus"], [])),
        pid=row["pid"],
        trial_dir=row["trial_dir"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        final=row["final"],
        best_intermediate=row["best_intermediate"],
        latest_intermediate=row["latest_intermediate"],
        intermediate_count=row["intermediate_count"] or 0,
        message=row["message"],
        stdout_tail=row["stdout_tail"],
        stderr_tail=row["stderr_tail"],
    )


# --- metrics, events, hosts ------------------------------------------------------------------


def metric_row(experiment_id: str, point: MetricPoint) -> tuple[Any, ...]:
    return (
        experiment_id,
        point.trial_id,
        point.seq,
        point.kind.value,
        point.value,
        point.to_json(),
        point.time,
    )


def metric_from_row(row: Row) -> MetricPoint:
    return MetricPoint(
        trial_id=row["trial_id"],
        seq=row["seq"],
        kind=MetricKind(row["kind"]),
        value=row["value"],
        raw=loads(row["raw"]),
        time=row["time"],
    )


def event_row(ev: EventRecord) -> tuple[Any, ...]:
    return (ev.experiment_id, ev.time, ev.kind, ev.level, ev.message, ev.trial_id, ev.host)


def event_from_row(row: Row) -> EventRecord:
    return EventRecord(
        experiment_id=row["experiment_id"],
        time=row["time"],
        kind=row["kind"],
        message=row["message"],
        trial_id=row["trial_id"],
        host=row["host"],
        level=row["level"],
    )


def _gpu_dict(gpu: GpuInfo) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "name": gpu.name,
        "memory_total_mib": gpu.memory_total_mib,
        "memory_used_mib": gpu.memory_used_mib,
        "utilization_pct": gpu.utilization_pct,
    }


def host_row(st: HostState) -> tuple[Any, ...]:
    holders = {str(gpu): list(ids) for gpu, ids in sorted(st.gpu_holders.items())}
    return (
        st.experiment_id,
        st.host,
        int(st.reachable),
        dumps([_gpu_dict(g) for g in st.gpus]),
        dumps(holders),
        st.slots,
        st.running,
        st.message,
        st.updated_at,
    )


def host_from_row(row: Row) -> HostState:
    holders = loads(row["gpu_holders"], {})
    return HostState(
        experiment_id=row["experiment_id"],
        host=row["host"],
        reachable=bool(row["reachable"]),
        gpus=tuple(GpuInfo(**g) for g in loads(row["gpus"], [])),
        gpu_holders={int(gpu): tuple(ids) for gpu, ids in holders.items()},
        slots=row["slots"] or 0,
        running=row["running"] or 0,
        message=row["message"],
        updated_at=row["updated_at"],
    )
