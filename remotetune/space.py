"""Search spaces in NNI's JSON format: parsing, validation, sampling, membership.

A space maps parameter names to ``{"_type": ..., "_value": [...]}``. The ten types keep NNI's
semantics (``v2.10:docs/source/hpo/search_space.rst``):

==============  =====================  ===================================================
``_type``       ``_value``             sampled value
==============  =====================  ===================================================
choice          ``[opt, ...]``         one option (a nested sub-space when it is a dict
                                       carrying ``_name``)
randint         ``[low, high]``        an int, ``low <= v < high``
uniform         ``[low, high]``        ``U(low, high)``
quniform        ``[low, high, q]``     ``clip(round(U(low, high) / q) * q, low, high)``
loguniform      ``[low, high]``        ``exp(U(log low, log high))``, ``low > 0``
qloguniform     ``[low, high, q]``     ``clip(round(loguniform / q) * q, low, high)``
normal          ``[mu, sigma]``        ``N(mu, sigma)``
qnormal         ``[mu, sigma, q]``     ``round(N(mu, sigma) / q) * q``
lognormal       ``[mu, sigma]``        ``exp(N(mu, sigma))``
qlognormal      ``[mu, sigma, q]``     ``round(exp(N(mu, sigma)) / q) * q``
==============  =====================  ===================================================

Quantized values are ints when ``q`` (and the bounds, for the bounded types) are ints, so
``{"_type": "quniform", "_value": [16, 128, 16]}`` gives ``32``, not ``32.0``; float results are
rounded to ``q``'s decimals (``0.3``, not ``0.30000000000000004``).

Nested choices: an option that is a dict with ``_name`` is a sub-space; its other keys are
parameters (recursively). Its sampled value is the option with those parameters sampled, e.g.
``{"_name": "conv", "kernel": 3}``. A dict option *without* ``_name`` whose values are plain
data is a literal value (BatchTuner's configurations); one that holds parameter specs, or sits
next to ``_name`` options, is an error.
"""

from __future__ import annotations

import copy
import difflib
import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from remotetune.errors import SearchSpaceError

__all__ = ["Option", "Parameter", "ParamType", "SearchSpace"]

_REL_TOL = 1e-9


class ParamType(str, enum.Enum):
    CHOICE = "choice"
    RANDINT = "randint"
    UNIFORM = "uniform"
    QUNIFORM = "quniform"
    LOGUNIFORM = "loguniform"
    QLOGUNIFORM = "qloguniform"
    NORMAL = "normal"
    QNORMAL = "qnormal"
    LOGNORMAL = "lognormal"
    QLOGNORMAL = "qlognormal"

    @property
    def arity(self) -> int:
        """How many numbers ``_value`` holds (0 for choice: any non-empty list)."""
        if self is ParamType.CHOICE:
            return 0
        return 3 if self.quantized else 2

    @property
    def quantized(self) -> bool:
        return self.value.startswith("q")

    @property
    def bounded(self) -> bool:
        """``_value`` starts with ``[low, high]`` (randint and the uniform family)."""
        return self in _BOUNDED

    @property
    def log(self) -> bool:
        return "log" in self.value

    @property
    def gaussian(self) -> bool:
        """``_value`` starts with ``[mu, sigma]`` (the normal family)."""
        return "normal" in self.value


_BOUNDED = frozenset(
    {
        ParamType.RANDINT,
        ParamType.UNIFORM,
        ParamType.QUNIFORM,
        ParamType.LOGUNIFORM,
        ParamType.QLOGUNIFORM,
    }
)
_VALUE_NAMES = {2: "[low, high]", 3: "[low, high, q]"}
_GAUSS_NAMES = {2: "[mu, sigma]", 3: "[mu, sigma, q]"}


@dataclass(frozen=True)
class Option:
    """One option of a ``choice``: a literal value, or a nested sub-space named ``name``."""

    value: Any = None  # the literal (None for a nested option)
    name: str | None = None  # the option's ``_name`` when nested
    params: tuple[Parameter, ...] = ()

    @property
    def nested(self) -> bool:
        return self.name is not None


@dataclass(frozen=True)
class Parameter:
    """One validated parameter. ``path`` is its dotted name, e.g. ``model[conv].kernel``."""

    name: str
    path: str
    type: ParamType
    options: tuple[Option, ...] = ()  # choice
    low: float = 0.0  # randint and the uniform family
    high: float = 0.0
    mu: float = 0.0  # the normal family
    sigma: float = 1.0
    q: float | None = None  # the q-types
    integer: bool = False  # values are ints (randint; q-types with int q and bounds)

    def quantize(self, x: float) -> float:
        """NNI's ``round(x / q) * q``, clipped to the bounds for bounded types."""
        q = self.q
        if q is None:
            return x
        v: float = round(x / q) * q
        if not self.integer:
            v = round(v, _decimals(q))
        if self.type.bounded:
            v = min(max(v, self.low), self.high)
        return int(round(v)) if self.integer else v

    def sample(self, rng: random.Random) -> Any:
        t = self.type
        if t is ParamType.CHOICE:
            option = self.options[rng.randrange(len(self.options))]
            if option.nested:
                return {"_name": option.name, **_sample(option.params, rng)}
            return copy.deepcopy(option.value)
        if t is ParamType.RANDINT:
            return rng.randrange(int(self.low), int(self.high))
        if t.bounded:
            if t.log:
                x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
                x = min(max(x, self.low), self.high)
            else:
                x = rng.uniform(self.low, self.high)
        else:
            x = rng.gauss(self.mu, self.sigma)
            if t.log:
                x = math.exp(min(x, 700.0))
        return self.quantize(x)

    def contains(self, value: Any) -> bool:
        """True when ``value`` lies in this parameter's domain (floats within 1e-9)."""
        t = self.type
        if t is ParamType.CHOICE:
            return any(_option_contains(o, value) for o in self.options)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if t is ParamType.RANDINT:
            return float(value).is_integer() and self.low <= value < self.high
        if t.bounded and not (_le(self.low, value) and _le(value, self.high)):
            return False
        if t.log and value < 0:
            return False
        if self.q is None:
            return not (t.log and t.bounded and value <= 0)
        if self.integer and not float(value).is_integer():
            return False
        on_grid = math.isclose(value / self.q, round(value / self.q), abs_tol=1e-6)
        at_bound = t.bounded and (_close(value, self.low) or _close(value, self.high))
        return on_grid or at_bound


@dataclass(frozen=True)
class SearchSpace:
    """A validated NNI search space. Building one validates ``raw`` (or raises)."""

    raw: Mapping[str, Any]
    file: str | None = field(default=None, compare=False)
    parameters: tuple[Parameter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = copy.deepcopy(dict(self.raw)) if isinstance(self.raw, Mapping) else self.raw
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "parameters", _Parser(self.file).space(raw))

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, file: str | None = None) -> SearchSpace:
        """Validate ``data``; a :class:`SearchSpaceError` names the parameter and the fix."""
        return cls(data, file=file)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One configuration drawn from the priors (NNI's Random tuner)."""
        return _sample(self.parameters, rng)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """True when ``params`` has exactly this space's keys and every value is in its domain."""
        return _params_contain(self.parameters, params)

    def flatten(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Nested choices as dotted keys: ``{"model._name": "conv", "model.kernel": 3}``."""
        out: dict[str, Any] = {}
        _flatten_into(out, "", params)
        return out


def _sample(params: tuple[Parameter, ...], rng: random.Random) -> dict[str, Any]:
    return {p.name: p.sample(rng) for p in params}


def _params_contain(params: tuple[Parameter, ...], values: Any) -> bool:
    if not isinstance(values, Mapping) or set(values) != {p.name for p in params}:
        return False
    return all(p.contains(values[p.name]) for p in params)


def _option_contains(option: Option, value: Any) -> bool:
    if not option.nested:
        if isinstance(value, bool) != isinstance(option.value, bool):
            return False
        return bool(value == option.value)
    if not isinstance(value, Mapping) or value.get("_name") != option.name:
        return False
    return _params_contain(option.params, {k: v for k, v in value.items() if k != "_name"})


def _flatten_into(out: dict[str, Any], prefix: str, params: Mapping[str, Any]) -> None:
    for key, value in params.items():
        if isinstance(value, Mapping) and "_name" in value:
            out[f"{prefix}{key}._name"] = value["_name"]
            _flatten_into(out, f"{prefix}{key}.", {k: v for k, v in value.items() if k != "_name"})
        else:
            out[f"{prefix}{key}"] = value


def _decimals(q: float) -> int:
    exponent = Decimal(repr(float(q))).as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 12


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-12)


def _le(a: float, b: float) -> bool:
    return a <= b or _close(a, b)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


_LOG_HINT = (
    "use a positive low bound, e.g. [1e-5, 0.1]; if 0 means 'off' (a grad_clip of 0 disables "
    'clipping), use a choice instead: {"_type": "choice", "_value": [0, 0.1, 1, 10]}'
)


class _Parser:
    """Turns raw JSON into :class:`Parameter` tuples, raising errors with dotted keys."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    def error(self, key: str | None, message: str, hint: str | None = None) -> SearchSpaceError:
        return SearchSpaceError(message, file=self.file, key=key, hint=hint)

    def space(self, raw: Any) -> tuple[Parameter, ...]:
        if not isinstance(raw, Mapping):
            raise self.error(
                None,
                f"a search space must be a JSON object of parameters, got {type(raw).__name__}",
                hint='e.g. {"lr": {"_type": "loguniform", "_value": [1e-5, 0.1]}}',
            )
        if not raw:
            raise self.error(None, "the search space has no parameters", hint="add at least one")
        return self.params(raw, "")

    def params(self, raw: Mapping[str, Any], prefix: str) -> tuple[Parameter, ...]:
        out = []
        for name, spec in raw.items():
            if not isinstance(name, str) or not name:
                raise self.error(
                    prefix or None, f"parameter names must be non-empty strings, got {name!r}"
                )
            out.append(self.parameter(name, f"{prefix}{name}", spec))
        return tuple(out)

    def parameter(self, name: str, path: str, spec: Any) -> Parameter:
        example = '{"_type": "uniform", "_value": [0, 1]}'
        if not isinstance(spec, Mapping):
            raise self.error(
                path,
                f"expected a parameter spec like {example}, got {spec!r}",
                hint="a fixed value can be written as a choice with one option",
            )
        missing = [k for k in ("_type", "_value") if k not in spec]
        if missing:
            raise self.error(
                path, f"missing {' and '.join(missing)}", hint=f"write it as {example}"
            )
        extra = sorted(set(spec) - {"_type", "_value"})
        if extra:
            raise self.error(path, f"unknown keys {extra}", hint="a spec has only _type and _value")
        ptype = self.type_of(path, spec["_type"])
        values = spec["_value"]
        if not isinstance(values, (list, tuple)):
            raise self.error(path, f"_value must be a list, got {values!r}")
        if ptype is ParamType.CHOICE:
            return Parameter(name, path, ptype, options=self.options(path, values))
        return self.numeric(name, path, ptype, list(values))

    def type_of(self, path: str, raw: Any) -> ParamType:
        try:
            return ParamType(raw)
        except ValueError:
            names = [t.value for t in ParamType]
            close = difflib.get_close_matches(str(raw).lower(), names, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(names)}"
            raise self.error(path, f"unknown _type {raw!r}", hint=hint) from None

    def options(self, path: str, values: list[Any] | tuple[Any, ...]) -> tuple[Option, ...]:
        if not values:
            raise self.error(path, "choice has no options", hint="list at least one in _value")
        named = any(isinstance(v, Mapping) and "_name" in v for v in values)
        options: list[Option] = []
        seen: set[str] = set()
        for i, value in enumerate(values):
            if not isinstance(value, Mapping):
                options.append(Option(value=copy.deepcopy(value)))
                continue
            has_specs = any(isinstance(v, Mapping) and "_type" in v for v in value.values())
            if "_name" not in value:
                if named or has_specs:
                    raise self.error(
                        f"{path}[{i}]",
                        "nested option has no _name",
                        hint='give each nested option a unique "_name", e.g. {"_name": "conv"}',
                    )
                options.append(Option(value=copy.deepcopy(dict(value))))
                continue
            oname = value["_name"]
            if not isinstance(oname, str) or not oname:
                raise self.error(f"{path}[{i}]", f"_name must be a non-empty string, got {oname!r}")
            if oname in seen:
                raise self.error(
                    f"{path}[{oname}]",
                    f"duplicate _name {oname!r}",
                    hint="each option of a nested choice needs its own _name",
                )
            seen.add(oname)
            inner = {k: v for k, v in value.items() if k != "_name"}
            options.append(Option(name=oname, params=self.params(inner, f"{path}[{oname}].")))
        return tuple(options)

    def numeric(self, name: str, path: str, ptype: ParamType, values: list[Any]) -> Parameter:
        names = _VALUE_NAMES if ptype.bounded else _GAUSS_NAMES
        expected = names[ptype.arity]
        if len(values) != ptype.arity:
            raise self.error(
                path,
                f"{ptype.value} takes {ptype.arity} values {expected}, got {len(values)}",
                hint=f"write _value as {expected}",
            )
        for v in values:
            if not _is_number(v):
                raise self.error(path, f"{ptype.value} needs numbers {expected}, got {v!r}")
        q = values[2] if ptype.quantized else None
        if q is not None and q <= 0:
            raise self.error(path, f"q must be > 0, got {q}", hint="q is the step, e.g. 1 or 0.1")
        if ptype.gaussian:
            mu, sigma = values[0], values[1]
            if sigma <= 0:
                raise self.error(path, f"sigma must be > 0, got {sigma}", hint="[mu, sigma]")
            return Parameter(
                name,
                path,
                ptype,
                mu=float(mu),
                sigma=float(sigma),
                q=q,
                integer=isinstance(q, int),
            )
        low, high = values[0], values[1]
        if low >= high:
            raise self.error(
                path,
                f"low must be < high, got [{low}, {high}]",
                hint="a fixed value can be written as a choice with one option",
            )
        if ptype.log and low <= 0:
            raise self.error(path, f"{ptype.value} needs low > 0, got {low}", hint=_LOG_HINT)
        if ptype is ParamType.RANDINT:
            if not (float(low).is_integer() and float(high).is_integer()):
                raise self.error(
                    path,
                    f"randint bounds must be integers, got [{low}, {high}]",
                    hint="use uniform for real numbers",
                )
            return Parameter(name, path, ptype, low=int(low), high=int(high), integer=True)
        integer = q is not None and all(isinstance(v, int) for v in values)
        return Parameter(name, path, ptype, low=low, high=high, q=q, integer=integer)
