"""Decoding the lines a trial writes to its metrics file.

Everything a trial writes is untrusted: a line either decodes to a :class:`MetricPoint`, or
:func:`decode_metric_line` raises :class:`MetricLineError`, which the caller records as a
warning before it moves on. No other exception may escape: not for ``10**400``, a line
nested 100,000 deep, ``NaN``, ``Infinity``, ``1e999``, a bool or a list.

A metric is a finite number, or a JSON object whose ``default`` is a finite number. JSON's
non-standard constants (``NaN``, ``Infinity``) are refused anywhere in the line, so what the
store keeps re-encodes as strict JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from remotetune.model import MetricKind, MetricPoint, metric_value

MAX_DEPTH = 64  # nesting of a line's JSON; deeper lines are warnings, not recursion errors
# The agent replaces a line longer than its limit by this marker and the line's size, so
# the controller's usual warning for an unreadable line names the trial and the size.
SKIPPED_LINE_MARKER = "\x00remotetune:skipped-line:"


class MetricLineError(ValueError):
    """A metric line remotetune cannot use; the message says why."""


def skipped_line(size: int, limit: int) -> str:
    return f"{SKIPPED_LINE_MARKER}{int(size)}:{int(limit)}"


def _refuse_constant(name: str) -> Any:
    raise MetricLineError(f"{name} is not a metric (only finite numbers are)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MetricLineError(f"{text[:40]} is out of the range of a float")
    return value


def _depth_ok(data: Any) -> bool:
    """Whether no value sits deeper than MAX_DEPTH (the line's object is level 1): no
    non-empty object or list at level MAX_DEPTH or below. Walks containers only."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth >= MAX_DEPTH and children:
            return False
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))
    return True


# One decoder for every line (json.loads with hooks builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_KINDS = {kind.value: kind for kind in MetricKind}


def _skipped(line: str) -> MetricLineError:
    size, _, limit = line[len(SKIPPED_LINE_MARKER):].partition(":")
    return MetricLineError(
        f"a line of {size} bytes is longer than the {int(limit or 0) >> 20} MiB limit; skipped")


def _load(line: str) -> dict[str, Any]:
    if line.startswith(SKIPPED_LINE_MARKER):
        raise _skipped(line)
    if line.startswith("\ufeff"):  # what json.loads says of it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
    data = _DECODER.decode(line)
    if not isinstance(data, dict):
        raise MetricLineError(f"a metric line must be a JSON object, got {type(data).__name__}")
    if not _depth_ok(data):
        raise MetricLineError(f"the line is nested deeper than {MAX_DEPTH} levels")
    return data


def _seq(data: dict[str, Any], default: int) -> int:
    seq = data.get("seq", default)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1 << 62:
        raise MetricLineError(f"'seq' must be a non-negative integer, got {str(seq)[:40]}")
    return seq


def _time(data: dict[str, Any], now: float) -> float:
    stamp = data.get("time", now)
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        return now
    try:
        value = float(stamp)
    except OverflowError:
        return now
    return value if math.isfinite(value) else now


def decode_metric_line(line: str, trial_id: str, *, default_seq: int, now: float) -> MetricPoint:
    """The metric point of one line of ``metrics.jsonl``, or :class:`MetricLineError`."""
    try:
        data = _load(line)
        kind_name = data.get("type")
        if not isinstance(kind_name, str):
            raise MetricLineError("'type' must be FINAL or PERIODICAL")
        kind = _KINDS.get(kind_name) or MetricKind(kind_name)  # the enum says what is wrong
        if "value" not in data:
            raise MetricLineError("the line has no 'value'")
        value = metric_value(data["value"])
        return MetricPoint(trial_id, _seq(data, default_seq), kind, value, data["value"],
                           _time(data, now))
    except MetricLineError:
        raise
    except RecursionError:
        raise MetricLineError("the line is nested too deeply") from None
    except MemoryError:
        raise MetricLineError("the line is too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - untrusted input: every failure is a warning
        text = str(exc) or type(exc).__name__
        raise MetricLineError(text[:300]) from None
