"""Numeric parameters seen through their prior's quantile function.

``from_unit(p, u)`` maps ``u`` in (0, 1) to the value at quantile ``u`` of ``p``'s prior (so
``u ~ U(0, 1)`` gives NNI's sampling distribution); ``to_unit`` is its inverse. Grid points,
local moves (anneal, evolution) and Optuna's view of the normal family all go through them.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Any

from remotetune.space import Parameter, ParamType

EPS = 1e-9


def from_unit(p: Parameter, u: float) -> Any:
    u = min(max(u, EPS), 1.0 - EPS)
    t = p.type
    if t is ParamType.RANDINT:
        span = int(p.high) - int(p.low)
        return int(p.low) + min(int(u * span), span - 1)
    if t.bounded:
        if t.log:
            lo, hi = math.log(p.low), math.log(p.high)
            x = min(max(math.exp(lo + u * (hi - lo)), p.low), p.high)
        else:
            x = p.low + u * (p.high - p.low)
    else:
        x = NormalDist(p.mu, p.sigma).inv_cdf(u)
        if t.log:
            x = math.exp(min(x, 700.0))
    return p.quantize(x)


def to_unit(p: Parameter, value: Any) -> float | None:
    """The quantile of ``value`` under ``p``'s prior, or None when it is not a usable number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    t = p.type
    if t is ParamType.RANDINT:
        u = (value - p.low + 0.5) / (p.high - p.low)
    elif t.bounded:
        if t.log:
            if value <= 0:
                return None
            lo, hi = math.log(p.low), math.log(p.high)
            u = (math.log(value) - lo) / (hi - lo)
        else:
            u = (value - p.low) / (p.high - p.low)
    else:
        x = value
        if t.log:
            if value <= 0:
                return EPS
            x = math.log(value)
        u = NormalDist(p.mu, p.sigma).cdf(x)
    return min(max(u, EPS), 1.0 - EPS)


def leaves(params: tuple[Parameter, ...], values: Any) -> list[tuple[Parameter, Any]]:
    """The parameters active in ``values`` (nested ones included), with their values."""
    out: list[tuple[Parameter, Any]] = []
    if not isinstance(values, dict):
        return out
    for p in params:
        if p.name not in values:
            continue
        v = values[p.name]
        out.append((p, v))
        if p.type is ParamType.CHOICE and isinstance(v, dict) and "_name" in v:
            option = next((o for o in p.options if o.name == v["_name"]), None)
            if option is not None:
                out.extend(leaves(option.params, v))
    return out


def move(p: Parameter, value: Any, rng: random.Random, width: float) -> Any:
    """A value near ``value``: for numbers, uniform in a window of ``width`` (in quantile
    space, clipped to (0, 1)) centred on it, as hyperopt's anneal does; for a choice, another
    random option with probability ``width`` (else the same)."""
    if p.type is ParamType.CHOICE:
        if rng.random() < width or not p.contains(value):
            return p.sample(rng)
        return value
    u = to_unit(p, value)
    if u is None:
        return p.sample(rng)
    return from_unit(p, rng.uniform(max(0.0, u - width / 2), min(1.0, u + width / 2)))


def move_all(
    params: tuple[Parameter, ...], values: Any, rng: random.Random, width: float
) -> dict[str, Any]:
    """Every parameter moved by :func:`move`; nested options keep or resample their inners."""
    values = values if isinstance(values, dict) else {}
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in values:
            out[p.name] = p.sample(rng)
            continue
        new = move(p, values[p.name], rng, width)
        old = values[p.name]
        if (
            p.type is ParamType.CHOICE
            and isinstance(new, dict)
            and isinstance(old, dict)
            and new.get("_name") == old.get("_name")
        ):
            option = next(o for o in p.options if o.name == new["_name"])
            new = {"_name": option.name, **move_all(option.params, old, rng, width)}
        out[p.name] = new
    return out
