"""``nni.utils``: the helpers NNI users import from it (``merge_parameter`` above all).

Written from NNI's documented behaviour, standard library only.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, List

__all__ = [
    "ClassArgsValidator",
    "MetricType",
    "NodeType",
    "OptimizeMode",
    "extract_scalar_history",
    "extract_scalar_reward",
    "merge_parameter",
    "split_index",
]


@enum.unique
class OptimizeMode(enum.Enum):
    """``classArgs.optimize_mode``: whether a tuner maximizes or minimizes the metric."""

    Minimize = "minimize"
    Maximize = "maximize"


class NodeType:
    """The reserved keys of a search space."""

    ROOT = "root"
    TYPE = "_type"
    VALUE = "_value"
    INDEX = "_index"
    NAME = "_name"


class MetricType:
    """The kinds of metric a trial reports."""

    FINAL = "FINAL"
    PERIODICAL = "PERIODICAL"
    REQUEST_PARAMETER = "REQUEST_PARAMETER"


def merge_parameter(base_params: Any, override_params: Any) -> Any:
    """Override ``base_params`` (an ``argparse.Namespace`` or a dict) in place with the
    tuner's ``override_params`` (a dict, or None for no change); returns ``base_params``.

    Every overriding key must exist in ``base_params`` and its value must have the type of
    the base value (an int is accepted for a float, and becomes one; any type replaces a
    None); otherwise ValueError, as in NNI.
    """
    if override_params is None:
        return base_params
    if isinstance(base_params, dict):
        for key, value in override_params.items():
            if key not in base_params:
                raise ValueError("Key '%s' not found in base parameters." % key)
            base_params[key] = _same_type(key, base_params[key], value)
        return base_params
    for key, value in override_params.items():
        if not hasattr(base_params, key):
            raise ValueError("Key '%s' not found in base parameters." % key)
        setattr(base_params, key, _same_type(key, getattr(base_params, key), value))
    return base_params


def _same_type(key: str, base: Any, value: Any) -> Any:
    if base is None or isinstance(value, type(base)):
        return value
    if isinstance(base, float) and isinstance(value, int):
        return float(value)
    raise ValueError('Expected "%s" in override parameters to have type %s, but found %s'
                     % (key, type(base).__name__, type(value).__name__))


def extract_scalar_reward(value: Any, scalar_key: str = "default") -> Any:
    """The number in a reported metric: the metric itself, or its ``scalar_key`` entry."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict) and isinstance(value.get(scalar_key), (int, float)):
        return value[scalar_key]
    raise RuntimeError("Incorrect final result: the final result should be float/int, or a "
                       'dict which has a key named "%s" whose value is float/int.' % scalar_key)


def extract_scalar_history(trial_history: List[Any], scalar_key: str = "default") -> List[Any]:
    """:func:`extract_scalar_reward` of each intermediate result."""
    return [extract_scalar_reward(value, scalar_key) for value in trial_history]


def split_index(params: Any) -> Any:
    """``params`` without the ``_index`` wrappers of chosen options."""
    if not isinstance(params, dict):
        return params
    if NodeType.INDEX in params:
        return split_index(params[NodeType.VALUE])
    return {key: split_index(value) for key, value in params.items()}


class ClassArgsValidator:
    """The base of NNI's classArgs validators; remotetune checks no schema with it."""

    def validate_class_args(self, **kwargs: Dict[str, Any]) -> None:
        return None
