"""Small text helpers shared by the view's panels: numbers, durations, parameters."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from remotetune.model import TrialRecord, TrialStatus

STATUS_STYLE: Mapping[TrialStatus, str] = {
    TrialStatus.WAITING: "dim",
    TrialStatus.RUNNING: "bold cyan",
    TrialStatus.SUCCEEDED: "green",
    TrialStatus.FAILED: "bold red",
    TrialStatus.EARLY_STOPPED: "yellow",
    TrialStatus.USER_CANCELED: "magenta",
    TrialStatus.SYS_CANCELED: "magenta",
    TrialStatus.LOST: "red",
}

LEVEL_STYLE: Mapping[str, str] = {"info": "", "warning": "yellow", "error": "bold red"}


def fmt_metric(value: float | None) -> str:
    """A metric in at most 6 significant digits; ``-`` when there is none."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def trial_duration(trial: TrialRecord, now: float) -> float | None:
    """Seconds the trial ran: up to ``now`` while it runs, up to its end once finished."""
    if trial.started_at is None:
        return None
    end = trial.ended_at if trial.ended_at is not None else now
    if trial.status.is_finished() and trial.ended_at is None:
        return None
    return end - trial.started_at


def queued(trial: TrialRecord) -> bool:
    """Submitted to a batch queue and not started yet (a Slurm job PENDING): shown WAITING
    with the queue's reason (the trial's message, e.g. ``queued in Slurm (Resources)``)."""
    return (trial.status is TrialStatus.RUNNING and trial.started_at is None
            and bool(trial.message))


def placement(trial: TrialRecord) -> str:
    """``host:0,1`` for a trial on GPUs 0 and 1, ``host`` on a CPU slot, ``-`` unplaced."""
    if trial.host is None:
        return "-"
    if queued(trial):
        reason = (trial.message or "").rpartition("(")[2].rstrip(")")
        return f"{trial.host} ({reason})"
    if not trial.gpus:
        return trial.host
    return f"{trial.host}:{','.join(str(g) for g in trial.gpus)}"


def _fmt_value(value: Any, compact: bool) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if compact else repr(value)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted.key, value)`` pairs.

    A nested choice (NNI's ``{"_name": "sgd", "momentum": 0.9}``) becomes ``opt=sgd`` and
    ``opt.momentum=0.9``; any other nested mapping is flattened with dotted keys.
    """
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if "_name" in value:
                yield name, value["_name"]
            rest = {k: v for k, v in value.items() if k != "_name"}
            yield from flatten_params(rest, prefix=f"{name}.")
        else:
            yield name, value


def params_text(params: Mapping[str, Any], *, compact: bool = True) -> str:
    """``lr=0.01 opt=sgd opt.momentum=0.9``: floats to 4 significant digits when compact."""
    return " ".join(f"{k}={_fmt_value(v, compact)}" for k, v in flatten_params(params))


def full_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every flattened parameter with its exact value, for the best-trial and show panels."""
    return [(k, _fmt_value(v, compact=False)) for k, v in flatten_params(params)]


def tail_lines(text: str | None, count: int) -> list[str]:
    """The last ``count`` non-blank lines of ``text``."""
    if not text:
        return []
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return lines[-count:]
