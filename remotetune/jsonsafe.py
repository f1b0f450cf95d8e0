"""Strict RFC 8259 JSON for machines: no ``NaN`` or ``Infinity``, ever.

A non-finite float is written as ``null``; :func:`strict` says how many it replaced so the
caller can say so (the CLI notes it on stderr).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def strict(value: Any) -> tuple[Any, int]:
    """``value`` with every non-finite float replaced by None, and how many were replaced."""
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, Mapping):
        out, count = {}, 0
        for k, v in value.items():
            out[k], n = strict(v)
            count += n
        return out, count
    if isinstance(value, (list, tuple)):
        items, count = [], 0
        for v in value:
            item, n = strict(v)
            items.append(item)
            count += n
        return items, count
    return value, 0


def dumps(value: Any, **kwargs: Any) -> tuple[str, int]:
    """Strict JSON text of ``value`` and the number of non-finite numbers written as null."""
    clean, count = strict(value)
    return json.dumps(clean, allow_nan=False, default=str, **kwargs), count
