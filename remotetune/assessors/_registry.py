"""``create_assessor``: built-ins by (NNI or Optuna) name, custom ones as ``module:Class``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remotetune.assessors._asha import AshaAssessor
from remotetune.assessors._base import Assessor, parse_mode
from remotetune.assessors._curvefit import CurvefittingAssessor
from remotetune.assessors._median import MedianstopAssessor
from remotetune.assessors._nni import NniAssessor, nni_assessor_class
from remotetune.assessors._optuna import PRUNERS, OptunaPrunerAssessor, pruner_arg_names
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode
from remotetune.nni_classes import is_nni_assessor
from remotetune.registry import custom_class, norm, unknown_arg, unknown_name

#: Display name -> class. Optuna's pruners all map to :class:`OptunaPrunerAssessor`.
BUILTIN_ASSESSORS: dict[str, type[Assessor]] = {
    "Medianstop": MedianstopAssessor,
    "Curvefitting": CurvefittingAssessor,
    "ASHA": AshaAssessor,
    **{name: OptunaPrunerAssessor for name in PRUNERS},
}


_LOOKUP = {norm(k): k for k in BUILTIN_ASSESSORS} | {"medianstopassessor": "Medianstop",
                                                      "curvefittingassessor": "Curvefitting"}


def builtin_name(name: str) -> str | None:
    """The built-in's display name for ``name`` (case, ``_`` and ``-`` ignored), or None."""
    return _LOOKUP.get(norm(name)) if isinstance(name, str) else None


def assessor_arg_names(name: str, *, code_directory: str | None = None) -> frozenset[str]:
    """The class arguments ``name`` accepts, ``optimize_mode`` included."""
    key = builtin_name(name)
    if key in PRUNERS:
        return pruner_arg_names(key) | {"optimize_mode"}
    return assessor_class(name, code_directory=code_directory).class_arg_names() | {
        "optimize_mode"
    }


def unknown_assessor_arg(name: str, arg: str, accepted: frozenset[str]) -> AssessorError:
    return unknown_arg(name, arg, accepted, AssessorError)


def create_assessor(
    name: str,
    class_args: Mapping[str, Any],
    *,
    code_directory: str | None = None,
    optimize_mode: OptimizeMode | str | None = None,
) -> Assessor:
    """Build the assessor ``name``. ``optimize_mode`` (the tuner's) is used when its own
    ``classArgs`` has none."""
    if not isinstance(class_args, Mapping):
        raise AssessorError(f"assessor {name}: classArgs must be a mapping, got {class_args!r}")
    cls = assessor_class(name, code_directory=code_directory)
    if issubclass(cls, NniAssessor):  # NNI's way: classArgs as they are
        return cls.create(class_args)
    args = dict(class_args)
    mode = parse_mode(args.pop("optimize_mode", optimize_mode or OptimizeMode.MAXIMIZE), name)
    accepted = assessor_arg_names(name, code_directory=code_directory)
    for key in args:
        if key not in accepted:
            raise unknown_assessor_arg(builtin_name(name) or name, key, accepted)
    builtin = builtin_name(name)
    try:
        if builtin in PRUNERS:
            return OptunaPrunerAssessor(mode, pruner=builtin, args=args)
        return cls(mode, **args)
    except AssessorError:
        raise
    except Exception as exc:  # a custom assessor's own constructor
        raise AssessorError(
            f"assessor {name} could not be created: {type(exc).__name__}: {exc}"
        ) from exc


def assessor_class(name: str, *, code_directory: str | None = None) -> type[Assessor]:
    """The class for ``name``; a custom ``module:Class`` must subclass :class:`Assessor`, or
    NNI's ``nni.assessor.Assessor`` (then the class returned is its adapter)."""
    if not isinstance(name, str) or not name.strip():
        raise AssessorError(f"assessor name must be a non-empty string, got {name!r}")
    key = builtin_name(name)
    if key is not None:
        return BUILTIN_ASSESSORS[key]
    if ":" in name or "." in name:
        return _load_custom(name, code_directory)
    raise unknown_name("assessor", name, _LOOKUP, BUILTIN_ASSESSORS, AssessorError)


def _load_custom(spec: str, code_directory: str | None) -> type[Assessor]:
    _, _, cls = custom_class(spec, code_directory, "assessor", AssessorError)
    if is_nni_assessor(cls):
        assert isinstance(cls, type)
        return nni_assessor_class(cls, spec)
    if not (isinstance(cls, type) and issubclass(cls, Assessor)):
        raise AssessorError(
            f"custom assessor {spec!r} must be a class that subclasses "
            "remotetune.assessors.Assessor or nni.assessor.Assessor"
        )
    return cls
