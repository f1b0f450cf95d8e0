"""Search spaces: NNI semantics, property-based sampling checks, validation messages."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotetune.errors import ConfigError, SearchSpaceError
from remotetune.space import Parameter, ParamType, SearchSpace

# --- strategies: random valid spaces, nested choices included ---------------------------------

_finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
_names = st.text("abcdefgh_", min_size=1, max_size=6)


@st.composite
def _bounds(draw: st.DrawFn, positive: bool = False) -> tuple[float, float]:
    low = draw(st.floats(min_value=1e-4, max_value=1e3) if positive else _finite)
    width = draw(st.floats(min_value=1e-3, max_value=1e3))
    return low, low + width


@st.composite
def _q(draw: st.DrawFn) -> float | int:
    return draw(st.one_of(st.integers(1, 20), st.sampled_from([0.01, 0.1, 0.25, 0.5, 2.5])))


@st.composite
def _numeric_spec(draw: st.DrawFn) -> dict[str, Any]:
    ptype = draw(st.sampled_from([t for t in ParamType if t is not ParamType.CHOICE]))
    if ptype is ParamType.RANDINT:
        low = draw(st.integers(-100, 100))
        return {"_type": "randint", "_value": [low, low + draw(st.integers(1, 50))]}
    if ptype.gaussian:
        value: list[Any] = [draw(st.floats(-3, 3)), draw(st.floats(0.01, 2))]
    elif ptype in (ParamType.QUNIFORM, ParamType.QLOGUNIFORM) and draw(st.booleans()):
        low = draw(st.integers(1, 100))  # all-int bounds: int values
        value = [low, low + draw(st.integers(1, 500))]
    else:
        value = list(draw(_bounds(positive=ptype.log)))
    if ptype.quantized:
        value.append(draw(_q()))
    return {"_type": ptype.value, "_value": value}


def _choice_spec(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    literal = st.one_of(st.integers(-5, 5), st.text("xyz", max_size=3), st.booleans(), st.none())
    nested = st.dictionaries(_names, children, max_size=3)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        if draw(st.booleans()):
            options: list[Any] = draw(st.lists(literal, min_size=1, max_size=5))
        else:
            labels = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
            options = [{"_name": label, **draw(nested)} for label in labels]
        return {"_type": "choice", "_value": options}

    return build()


_specs = st.recursive(_numeric_spec(), _choice_spec, max_leaves=8)
spaces = st.dictionaries(_names, _specs, min_size=1, max_size=5)


def _leaves(params: tuple[Parameter, ...], values: dict[str, Any]) -> list[tuple[Parameter, Any]]:
    out = []
    for p in params:
        v = values[p.name]
        if p.type is ParamType.CHOICE and isinstance(v, dict) and "_name" in v:
            option = next(o for o in p.options if o.name == v["_name"])
            out.extend(_leaves(option.params, v))
        else:
            out.append((p, v))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=spaces, seed=st.integers(0, 2**32 - 1))
def test_samples_lie_in_their_declared_domain(raw: dict[str, Any], seed: int) -> None:
    space = SearchSpace.parse(raw)
    rng = random.Random(seed)
    for _ in range(10):
        params = space.sample(rng)
        assert space.contains(params), params
        json.loads(json.dumps(params))  # JSON-serializable
        for p, v in _leaves(space.parameters, params):
            if p.q is None:
                continue
            on_grid = math.isclose(v / p.q, round(v / p.q), abs_tol=1e-6)
            at_bound = p.type.bounded and v in (p.low, p.high)
            assert on_grid or at_bound, (p, v)
            if p.type.bounded:
                assert p.low <= v <= p.high
            if p.integer:
                assert isinstance(v, int)


@settings(max_examples=40, deadline=None)
@given(raw=spaces)
def test_flatten_has_no_nested_dicts_with_names(raw: dict[str, Any]) -> None:
    space = SearchSpace.parse(raw)
    flat = space.flatten(space.sample(random.Random(1)))
    assert not any(isinstance(v, dict) and "_name" in v for v in flat.values())


# --- NNI semantics ------------------------------------------------------------------------------


def _many(raw: dict[str, Any], n: int = 2000, seed: int = 0) -> list[Any]:
    space = SearchSpace.parse({"p": raw})
    rng = random.Random(seed)
    return [space.sample(rng)["p"] for _ in range(n)]


def test_randint_excludes_high() -> None:
    assert set(_many({"_type": "randint", "_value": [2, 5]})) == {2, 3, 4}


def test_quniform_rounds_and_clips() -> None:
    # round(U(1, 10) / 3) * 3 is 0, 3, 6 or 9; 0 clips to the low bound 1
    values = set(_many({"_type": "quniform", "_value": [1, 10, 3]}))
    assert values == {1, 3, 6, 9}
    assert all(isinstance(v, int) for v in values)


def test_quniform_float_step_gives_clean_floats() -> None:
    values = set(_many({"_type": "quniform", "_value": [0, 1, 0.1]}))
    assert values == {round(0.1 * k, 1) for k in range(11)}


def test_loguniform_is_uniform_in_log_space() -> None:
    values = _many({"_type": "loguniform", "_value": [1e-4, 1.0]}, n=4000)
    assert all(1e-4 <= v <= 1.0 for v in values)
    below = sum(v < 1e-2 for v in values) / len(values)  # half the log range
    assert 0.45 < below < 0.55


def test_normal_and_lognormal_moments() -> None:
    normal = _many({"_type": "normal", "_value": [3.0, 0.5]}, n=4000)
    mean = sum(normal) / len(normal)
    assert abs(mean - 3.0) < 0.05
    lognormal = _many({"_type": "lognormal", "_value": [0.0, 1.0]}, n=4000)
    assert all(v > 0 for v in lognormal)
    assert abs(sorted(lognormal)[2000] - 1.0) < 0.1  # median exp(mu)


def test_qlognormal_is_a_multiple_of_q() -> None:
    values = _many({"_type": "qlognormal", "_value": [1.0, 0.5, 2]})
    assert all(isinstance(v, int) and v % 2 == 0 for v in values)


def test_nested_choice_sample_has_nni_shape() -> None:
    raw = {
        "model": {
            "_type": "choice",
            "_value": [
                {"_name": "conv", "kernel": {"_type": "choice", "_value": [3, 5]}},
                {"_name": "mlp", "width": {"_type": "randint", "_value": [8, 9]}},
            ],
        }
    }
    seen = {json.dumps(v, sort_keys=True) for v in _many(raw["model"], n=200)}
    assert seen == {
        '{"_name": "conv", "kernel": 3}',
        '{"_name": "conv", "kernel": 5}',
        '{"_name": "mlp", "width": 8}',
    }
    space = SearchSpace.parse(raw)
    assert space.flatten({"model": {"_name": "conv", "kernel": 3}}) == {
        "model._name": "conv",
        "model.kernel": 3,
    }
    assert space["model"].options[0].params[0].path == "model[conv].kernel"


def test_contains_rejects_values_outside_the_domain() -> None:
    space = SearchSpace.parse(
        {
            "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
            "bs": {"_type": "quniform", "_value": [16, 128, 16]},
            "k": {"_type": "randint", "_value": [0, 3]},
            "act": {"_type": "choice", "_value": ["relu", "tanh"]},
            "m": {
                "_type": "choice",
                "_value": [{"_name": "a", "x": {"_type": "uniform", "_value": [0, 1]}}],
            },
        }
    )
    good = {"lr": 0.01, "bs": 32, "k": 2, "act": "relu", "m": {"_name": "a", "x": 0.5}}
    assert space.contains(good)
    for key, bad in [
        ("lr", 0.5),
        ("bs", 33),
        ("bs", 144),
        ("k", 3),
        ("k", 1.5),
        ("act", "gelu"),
        ("lr", "0.01"),
        ("lr", True),
        ("m", {"_name": "b", "x": 0.5}),
        ("m", {"_name": "a", "x": 2.0}),
        ("m", {"_name": "a"}),
    ]:
        assert not space.contains({**good, key: bad}), (key, bad)
    assert not space.contains({k: v for k, v in good.items() if k != "lr"})
    assert not space.contains({**good, "extra": 1})


def test_dict_options_without_name_are_literals() -> None:
    # NNI's BatchTuner space: the options are whole configurations
    raw = {"combine": {"_type": "choice", "_value": [{"lr": 0.1, "bs": 8}, {"lr": 0.2, "bs": 16}]}}
    space = SearchSpace.parse(raw)
    assert space.contains({"combine": {"lr": 0.2, "bs": 16}})
    assert not space.contains({"combine": {"lr": 0.3, "bs": 16}})


def test_space_is_a_value() -> None:
    bounds: list[float] = [0, 1]
    space = SearchSpace.parse({"x": {"_type": "uniform", "_value": bounds}})
    bounds[1] = 5  # the caller's data is copied
    assert space.raw["x"]["_value"] == [0, 1]
    assert space == SearchSpace.parse({"x": {"_type": "uniform", "_value": [0, 1]}})
    assert space.names == ("x",)


# --- validation errors: what, where (dotted key) and how to fix ------------------------------


def _error(raw: Any) -> SearchSpaceError:
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.parse(raw, file="search_space.json")
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.file == "search_space.json"
    assert str(err).startswith("search_space.json: ")
    return err


def _nested(inner: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"_type": "choice", "_value": [{"_name": "conv", "kernel": inner}]}}


def test_loguniform_with_zero_low_suggests_a_choice() -> None:
    for ptype in ("loguniform", "qloguniform"):
        value = [0, 10] if ptype == "loguniform" else [0, 10, 1]
        err = _error({"grad_clip": {"_type": ptype, "_value": value}})
        assert err.key == "grad_clip"
        assert "low > 0" in err.message
        assert err.hint is not None
        assert '"_type": "choice"' in err.hint and "[0, 0.1, 1, 10]" in err.hint
        assert "positive low bound" in err.hint


@pytest.mark.parametrize(
    ("raw", "key", "message", "hint"),
    [
        ({"lr": {"_type": "uniform", "_value": [1, 1]}}, "lr", "low must be < high", "choice"),
        ({"lr": {"_type": "uniform", "_value": [2, 1]}}, "lr", "low must be < high", None),
        ({"bs": {"_type": "quniform", "_value": [0, 1, 0]}}, "bs", "q must be > 0", "step"),
        ({"bs": {"_type": "qnormal", "_value": [0, 1, -1]}}, "bs", "q must be > 0", None),
        ({"w": {"_type": "normal", "_value": [0, 0]}}, "w", "sigma must be > 0", None),
        ({"w": {"_type": "lognormal", "_value": [0, -1]}}, "w", "sigma must be > 0", None),
        ({"act": {"_type": "choice", "_value": []}}, "act", "no options", "at least one"),
        ({"lr": {"_type": "unifrom", "_value": [0, 1]}}, "lr", "unknown _type", "'uniform'"),
        (
            {"lr": {"_type": "qlogunform", "_value": [1, 2, 1]}},
            "lr",
            "unknown _type",
            "qloguniform",
        ),
        ({"lr": {"_value": [0, 1]}}, "lr", "missing _type", "_type"),
        ({"lr": {"_type": "uniform"}}, "lr", "missing _value", None),
        (
            {"lr": {"_type": "uniform", "_value": [1]}},
            "lr",
            "takes 2 values [low, high], got 1",
            None,
        ),
        ({"lr": {"_type": "uniform", "_value": [0, 1, 2]}}, "lr", "got 3", "[low, high]"),
        ({"lr": {"_type": "quniform", "_value": [0, 1]}}, "lr", "[low, high, q], got 2", None),
        ({"w": {"_type": "normal", "_value": [0]}}, "w", "[mu, sigma]", None),
        ({"lr": {"_type": "uniform", "_value": [0, "1"]}}, "lr", "needs numbers", None),
        ({"lr": {"_type": "uniform", "_value": [0, None]}}, "lr", "needs numbers", None),
        ({"lr": {"_type": "uniform", "_value": [0, float("inf")]}}, "lr", "needs numbers", None),
        ({"n": {"_type": "randint", "_value": [0.5, 3]}}, "n", "must be integers", "uniform"),
        ({"lr": {"_type": "uniform", "_value": 3}}, "lr", "must be a list", None),
        ({"lr": 0.1}, "lr", "expected a parameter spec", "choice"),
        (
            _nested({"_type": "uniform", "_value": [1, 0]}),
            "model[conv].kernel",
            "low must be",
            None,
        ),
        (_nested({"_type": "choise", "_value": [3]}), "model[conv].kernel", "unknown", "'choice'"),
        (
            {
                "m": {
                    "_type": "choice",
                    "_value": [{"_name": "a"}, {"k": {"_type": "uniform", "_value": [0, 1]}}],
                }
            },
            "m[1]",
            "nested option has no _name",
            '"_name"',
        ),
        (
            {"m": {"_type": "choice", "_value": [{"k": {"_type": "uniform", "_value": [0, 1]}}]}},
            "m[0]",
            "nested option has no _name",
            None,
        ),
        (
            {"m": {"_type": "choice", "_value": [{"_name": "a"}, {"_name": "a"}]}},
            "m[a]",
            "duplicate _name 'a'",
            "own _name",
        ),
    ],
)
def test_validation_error_messages(
    raw: dict[str, Any], key: str, message: str, hint: str | None
) -> None:
    err = _error(raw)
    assert err.key == key
    assert message in err.message
    assert f"{key}: " in str(err)
    if hint is not None:
        assert err.hint is not None and hint in err.hint


def test_whole_space_errors() -> None:
    assert "no parameters" in _error({}).message
    assert "JSON object" in _error([1, 2]).message
