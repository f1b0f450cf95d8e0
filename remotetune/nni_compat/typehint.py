"""``nni.typehint``: the names NNI code annotates with."""

from __future__ import annotations

from typing import Any, Dict, Optional, TypedDict

__all__ = ["Parameters", "ParameterRecord", "SearchSpace", "TrialMetric", "TrialRecord"]

Parameters = Dict[str, Any]
SearchSpace = Dict[str, Any]
TrialMetric = float


class TrialRecord(TypedDict):
    parameter: Parameters
    value: TrialMetric


class ParameterRecord(TypedDict):
    parameter_id: Optional[int]
    parameters: Parameters


