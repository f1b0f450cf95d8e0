"""``create_tuner``: built-in tuners by (NNI) name, custom ones as ``module:Class``
(remotetune's Tuner, or NNI's ``nni.tuner.Tuner`` through ``_nni``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode
from remotetune.nni_classes import is_nni_tuner
from remotetune.registry import custom_class, norm, unknown_name
from remotetune.space import SearchSpace
from remotetune.tuners._anneal import AnnealTuner
from remotetune.tuners._base import Tuner, parse_optimize_mode, unknown_arg_error
from remotetune.tuners._batch import BatchTuner
from remotetune.tuners._bohb import BohbTuner
from remotetune.tuners._evolution import EvolutionTuner
from remotetune.tuners._gp import GpTuner
from remotetune.tuners._grid import GridSearchTuner
from remotetune.tuners._hyperband import HyperbandTuner
from remotetune.tuners._nni import NniTuner, nni_tuner_class
from remotetune.tuners._nni_names import STAND_INS, nni_name, stand_in
from remotetune.tuners._optuna import TpeTuner
from remotetune.tuners._random import RandomTuner

# Display name -> class; lookups ignore case, "_" and "-"; ALIASES adds NNI's other spellings.
BUILTIN_TUNERS: dict[str, type[Tuner]] = {
    "Random": RandomTuner,
    "GridSearch": GridSearchTuner,
    "Batch": BatchTuner,
    "TPE": TpeTuner,
    "Anneal": AnnealTuner,
    "Evolution": EvolutionTuner,
    "GP": GpTuner,
}
#: NNI's advisors (tuners that also stop trials): under ``advisor:`` (NNI 2) or ``tuner:`` (NNI 3).
BUILTIN_ADVISORS: dict[str, type[Tuner]] = {
    "Hyperband": HyperbandTuner,
    "BOHB": BohbTuner,
}
_ALIASES = {"randomsearch": "Random", "grid": "GridSearch", "batchtuner": "Batch"}


_ALL: dict[str, type[Tuner]] = {**BUILTIN_TUNERS, **BUILTIN_ADVISORS}
_LOOKUP = {norm(k): k for k in _ALL} | _ALIASES


def create_tuner(
    name: str,
    class_args: Mapping[str, Any],
    space: SearchSpace,
    *,
    code_directory: str | None = None,
    seed: int | None = None,
) -> Tuner:
    """Build the tuner ``name`` (a built-in name, or ``module:Class`` / ``module.Class``).

    ``class_args`` are NNI's ``classArgs``: ``optimize_mode`` (default maximize), ``seed``
    (overrides the ``seed`` argument) and the tuner's own arguments.
    """
    if not isinstance(class_args, Mapping):
        raise TunerError(f"tuner {name}: classArgs must be a mapping, got {class_args!r}")
    name, class_args = stand_in(name, class_args)  # NNI's SMAC, Metis... (_nni_names)
    cls = tuner_class(name, code_directory=code_directory)
    if issubclass(cls, NniTuner):  # NNI's way: classArgs as they are
        return cls.create(space, class_args, seed)
    args = dict(class_args)
    mode = parse_optimize_mode(args.pop("optimize_mode", OptimizeMode.MAXIMIZE))
    if "seed" in args:
        seed = args.pop("seed")
    accepted = cls.class_arg_names()
    for key in args:
        if key not in accepted:
            raise unknown_arg_error(cls, key)
    try:
        return cls(space, mode, seed=seed, **args)
    except TunerError:
        raise
    except Exception as exc:  # a custom tuner's own constructor
        raise TunerError(f"tuner {name} could not be created: {type(exc).__name__}: {exc}") from exc


def tuner_class(name: str, *, code_directory: str | None = None) -> type[Tuner]:
    """The class for ``name``; a custom ``module:Class`` must subclass :class:`Tuner`, or
    NNI's ``nni.tuner.Tuner`` (then the class returned is its adapter)."""
    if not isinstance(name, str) or not name.strip():
        raise TunerError(f"tuner name must be a non-empty string, got {name!r}")
    key = _LOOKUP.get(norm(name))
    if key is not None:
        return _ALL[key]
    nni = nni_name(name)
    if nni is not None:
        stand_in(nni, {})  # raises for the ones that cannot run
        return _ALL[STAND_INS[nni].runs_as]
    if ":" in name or "." in name:
        return _load_custom(name, code_directory)
    raise unknown_name("tuner", name, _LOOKUP, _ALL, TunerError)


def _load_custom(spec: str, code_directory: str | None) -> type[Tuner]:
    module_name, class_name, cls = custom_class(spec, code_directory, "tuner", TunerError)
    if cls is None:
        raise TunerError(f"custom tuner {spec!r}: module {module_name!r} has no {class_name!r}")
    if is_nni_tuner(cls):
        assert isinstance(cls, type)
        return nni_tuner_class(cls, spec)
    if not (isinstance(cls, type) and issubclass(cls, Tuner)):
        raise TunerError(
            f"custom tuner {spec!r} must be a class that subclasses remotetune.tuners.Tuner "
            "or nni.tuner.Tuner"
        )
    return cls

