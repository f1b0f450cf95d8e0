"""A one-line metric curve made of block characters."""

from __future__ import annotations

import math
from collections.abc import Sequence

_BLOCKS = "▁▂▃▄▅▆▇█"


def _buckets(values: Sequence[float], width: int) -> list[float]:
    """Average ``values`` down to ``width`` buckets (kept as they are when they fit)."""
    if len(values) <= width:
        return list(values)
    out: list[float] = []
    for i in range(width):
        lo = i * len(values) // width
        hi = max(lo + 1, (i + 1) * len(values) // width)
        chunk = [v for v in values[lo:hi] if math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return out


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Draw ``values`` as at most ``width`` block characters, lowest ``▁`` to highest ``█``.

    Longer series are averaged into ``width`` buckets; a flat series draws at mid height;
    NaN and infinite values draw as a space. An empty series gives ``""``.
    """
    if width < 1:
        raise ValueError(f"sparkline width must be at least 1, got {width}")
    points = _buckets(values, width)
    finite = [v for v in points if math.isfinite(v)]
    if not finite:
        return " " * len(points)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    top = len(_BLOCKS) - 1
    chars = []
    for v in points:
        if not math.isfinite(v):
            chars.append(" ")
        elif span == 0:
            chars.append(_BLOCKS[top // 2])
        else:
            chars.append(_BLOCKS[round((v - lo) / span * top)])
    return "".join(chars)
