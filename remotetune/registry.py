"""What the tuner and assessor registries share: name lookup, "did you mean", custom classes.

A built-in is looked up by its name with case, ``_``, ``-`` and spaces ignored
(:func:`norm`); an unknown name or class argument gets the closest match in its error. A
custom class is written ``module:Class`` (or ``module.Class``) and imported from the
experiment's code directory first (:func:`custom_class`). Errors are the registry's own
(``TunerError``, ``AssessorError``), passed in as ``error``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from remotetune.errors import RemotetuneError
from remotetune.nni_classes import ensure_nni

E = TypeVar("E", bound=RemotetuneError)


def norm(name: str) -> str:
    """``name`` as lookups compare it: lower case, without ``_``, ``-`` and spaces."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def unknown_name(what: str, name: str, lookup: Mapping[str, str], builtins: Iterable[str],
                 error: type[E]) -> E:
    """``name`` is no built-in ``what`` (``lookup``: normalised name -> display name)."""
    close = difflib.get_close_matches(norm(name), list(lookup), n=1, cutoff=0.5)
    hint = f"did you mean {lookup[close[0]]!r}? " if close else ""
    return error(
        f"unknown {what} {name!r} ({hint}built-in {what}s: {', '.join(builtins)}; "
        f"a custom {what} is written as 'module:Class')"
    )


def unknown_arg(owner: str, arg: str, accepted: Iterable[str],
                error: type[E]) -> E:
    """``owner`` takes no class argument ``arg``: the closest of ``accepted``, and all."""
    names = sorted(accepted)
    close = difflib.get_close_matches(arg, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return error(f"{owner} has no class argument {arg!r} ({hint}it accepts: {', '.join(names)})")


def custom_class(spec: str, code_directory: str | None, what: str,
                 error: type[RemotetuneError]) -> tuple[str, str, object]:
    """The module name, class name and the object ``spec`` (``module:Class``) names, which
    may be None (the module has no such name) or anything else: the caller checks it."""
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        module_name, _, class_name = spec.rpartition(".")
    if not module_name or not class_name:
        raise error(f"custom {what} {spec!r} must be written as 'module:Class'")
    module = import_module(module_name, code_directory, what, error)
    return module_name, class_name, getattr(module, class_name, None)


def import_module(module_name: str, code_directory: str | None, what: str,
                  error: type[RemotetuneError]) -> ModuleType:
    """Import ``module_name`` (from ``code_directory`` first); errors name ``what`` it holds."""
    file = None
    if code_directory:
        base = Path(code_directory, *module_name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                file = candidate
                break
    where = f" under {code_directory}" if code_directory else ""
    loaded = sys.modules.get(module_name)
    if file is not None and loaded is not None and getattr(loaded, "__file__", None) == str(file):
        return loaded  # `run` built it while loading the file: the module runs once
    ensure_nni()  # code written for NNI imports nni.tuner / nni.assessor / nni.utils
    try:
        if file is None:
            return importlib.import_module(module_name)
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {file}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(code_directory))  # so it can import its neighbours
        try:
            module_spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(code_directory))
        return module
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and missing != module_name and not module_name.startswith(missing + "."):
            sys.modules.pop(module_name, None) if file is not None else None
            raise error(
                f"custom {what} module {module_name!r} ({file or 'installed'}) imports "
                f"{missing!r}, which is not installed where remotetune runs: {exc}"
            ) from exc
        raise error(
            f"custom {what} module {module_name!r} not found{where}: {exc} (put {module_name}.py "
            "in the code directory or install it)"
        ) from exc
    except Exception as exc:
        sys.modules.pop(module_name, None) if file is not None else None
        raise error(
            f"custom {what} module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
