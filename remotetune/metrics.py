"""Decoding the lines a trial writes to its metrics file.

Everything a trial writes is untrusted: a line either decodes to a :class:`MetricPoint`, or
:func:`decode_metric_line` raises :class:`MetricLineError`, which the caller records as a
warning before it moves on. No other exception may escape.
"""

from __future__ import annotations

import json

from remotetune.model import MetricKind, MetricPoint, metric_value


class MetricLineError(ValueError):
    """A metric line remotetune cannot use; the message says why."""


def decode_metric_line(line: str, trial_id: str, *, default_seq: int, now: float) -> MetricPoint:
    """The metric point of one line of ``metrics.jsonl``, or :class:`MetricLineError`."""
    try:
        data = json.loads(line)
        kind = MetricKind(data["type"])
        value = metric_value(data["value"])
        seq = int(data.get("seq", default_seq))
        return MetricPoint(trial_id, seq, kind, value, data["value"],
                           float(data.get("time", now)))
    except (ValueError, KeyError, TypeError) as exc:
        raise MetricLineError(str(exc)) from exc
