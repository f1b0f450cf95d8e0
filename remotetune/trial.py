"""The API a trial imports: parameters in, metrics out, through files.

Standard library only: this module is shipped to bare hosts next to the trial code.

remotetune starts a trial with these environment variables::

    REMOTETUNE_EXPERIMENT_ID  REMOTETUNE_TRIAL_ID  REMOTETUNE_SEQUENCE_ID
    REMOTETUNE_TRIAL_DIR      the trial's own directory (parameters.json lives there)
    REMOTETUNE_METRICS_FILE   where reports are appended (default: TRIAL_DIR/metrics.jsonl)

Each report appends one JSON line ``{"seq": n, "type": "PERIODICAL"|"FINAL", "value": v,
"time": t}`` and flushes it, so a controller that reads the file by byte offset sees
whole lines (a torn last line is left for the next read). Outside remotetune (no
variables set) ``get_next_parameter()`` returns ``{}`` and reports go to stderr, so a trial
script also runs by hand.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any

__all__ = [
    "get_next_parameter",
    "get_next_parameters",
    "get_current_parameter",
    "report_intermediate_result",
    "report_final_result",
    "get_trial_id",
    "get_experiment_id",
    "get_sequence_id",
    "get_trial_dir",
]

_lock = threading.Lock()
_state: dict[str, Any] = {"params": None, "seq": None, "final_sent": False}


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def get_trial_id() -> str:
    return _env("REMOTETUNE_TRIAL_ID", "STANDALONE")


def get_experiment_id() -> str:
    return _env("REMOTETUNE_EXPERIMENT_ID", "STANDALONE")


def get_sequence_id() -> int:
    return int(_env("REMOTETUNE_SEQUENCE_ID", "0") or 0)


def get_trial_dir() -> str | None:
    return os.environ.get("REMOTETUNE_TRIAL_DIR") or None


def _metrics_path() -> str | None:
    path = os.environ.get("REMOTETUNE_METRICS_FILE")
    if path:
        return path
    trial_dir = get_trial_dir()
    return os.path.join(trial_dir, "metrics.jsonl") if trial_dir else None


def get_next_parameter() -> dict[str, Any]:
    """The parameters chosen for this trial (``{}`` when run by hand)."""
    with _lock:
        if _state["params"] is None:
            trial_dir = get_trial_dir()
            params: dict[str, Any] = {}
            if trial_dir:
                with open(os.path.join(trial_dir, "parameters.json"), encoding="utf-8") as f:
                    params = json.load(f).get("parameters", {})
            _state["params"] = params
        return dict(_state["params"])


def get_next_parameters() -> dict[str, Any]:
    """NNI's alias of :func:`get_next_parameter`."""
    return get_next_parameter()


def get_current_parameter(tag: str | None = None) -> Any:
    """The parameter ``tag`` of this trial, or all of them (a dict) when ``tag`` is None.

    As NNI's, except that it also works before ``get_next_parameter()`` was called (NNI
    returns None then). An unknown ``tag`` raises KeyError, as in NNI.
    """
    params = get_next_parameter()
    return params if tag is None else params[tag]


def _plain(value: Any) -> Any:
    """``value`` with numpy (or torch) scalars and 0-d arrays turned into Python numbers.

    Duck-typed, so numpy is never imported here: a value with ``.item()`` and an empty
    ``shape`` is a scalar; any other non-number with ``__float__`` (``Decimal``) is a float.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and tuple(getattr(value, "shape", (None,))) == ():
        return item()
    if hasattr(type(value), "__float__") and not hasattr(value, "shape"):
        return float(value)
    return value


def _check(value: Any) -> Any:
    value = _plain(value)
    number = value.get("default") if isinstance(value, dict) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise TypeError(
            "a metric must be a number (a numpy scalar or 0-d array will do) or a dict with "
            f"a numeric 'default' key, got {value!r}"
        )
    if isinstance(number, float) and math.isnan(number):
        raise ValueError("a metric must not be NaN")
    if isinstance(number, float) and math.isinf(number):
        raise ValueError("a metric must be finite, got %r" % number)
    if isinstance(number, int):
        try:
            float(number)
        except OverflowError:
            raise ValueError("a metric must fit in a float; this integer has %d bits"
                             % number.bit_length()) from None
    try:  # fails early on values strict JSON cannot hold (NaN or infinity inside a dict)
        json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError("a metric must hold only finite numbers: %s" % exc) from None
    return value


def _next_seq(path: str | None) -> int:
    if _state["seq"] is None:
        # A restarted trial process continues the sequence instead of repeating numbers.
        count = 0
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                count = sum(1 for line in f if line.endswith(b"\n"))
        _state["seq"] = count
    seq = int(_state["seq"])
    _state["seq"] = seq + 1
    return seq


def _report(kind: str, value: Any) -> None:
    value = _check(value)
    path = _metrics_path()
    with _lock:
        seq = _next_seq(path)
        line = json.dumps(
            {"seq": seq, "type": kind, "value": value, "time": time.time()}, sort_keys=True
        )
        if path is None:
            print(f"[remotetune] {kind.lower()} metric: {json.dumps(value)}", file=sys.stderr)
            return
        # One write() of a whole line on an O_APPEND descriptor: readers never see half a
        # line from us unless the disk fills up, and they cope with that too.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


def report_intermediate_result(value: Any) -> None:
    """Report a metric during training (an epoch's validation accuracy, say)."""
    _report("PERIODICAL", value)


def report_final_result(value: Any) -> None:
    """Report the trial's result; the tuner learns from this one."""
    _report("FINAL", value)
    _state["final_sent"] = True
