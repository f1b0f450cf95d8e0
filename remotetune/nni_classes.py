"""NNI's base classes on the controller, for custom tuners and assessors written for NNI.

A custom tuner subclasses ``nni.tuner.Tuner`` and a custom assessor ``nni.assessor.Assessor``.
remotetune does not need NNI: when the ``nni`` package is not importable, :func:`ensure_nni`
installs :mod:`remotetune.nni_compat` under that name (``nni``, ``nni.tuner``,
``nni.assessor``, ``nni.utils``...) before such user code is imported. Where NNI is
installed, its own classes are used and nothing is installed.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

_COMPAT = Path(__file__).resolve().parent / "nni_compat"
_lock = threading.Lock()


def ensure_nni() -> bool:
    """Make ``import nni`` work; True when remotetune's stand-in is (now) what it imports."""
    with _lock:
        present = sys.modules.get("nni")
        if present is not None:
            return bool(getattr(present, "__remotetune_shim__", False))
        if importlib.util.find_spec("nni") is not None:
            return False
        spec = importlib.util.spec_from_file_location(
            "nni", _COMPAT / "__init__.py", submodule_search_locations=[str(_COMPAT)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["nni"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["nni"]
            raise
        return True


def _derives(cls: type, module: str, name: str) -> bool:
    return any(k.__module__ == module and k.__name__ == name for k in cls.__mro__)


def is_nni_tuner(cls: object) -> bool:
    """``cls`` subclasses NNI's ``Tuner`` (NNI's own, or remotetune's stand-in)."""
    return isinstance(cls, type) and _derives(cls, "nni.tuner", "Tuner")


def is_nni_assessor(cls: object) -> bool:
    """``cls`` subclasses NNI's ``Assessor`` (NNI's own, or remotetune's stand-in)."""
    return isinstance(cls, type) and _derives(cls, "nni.assessor", "Assessor")


def is_no_more_trials(exc: BaseException) -> bool:
    """``exc`` is NNI's "search space fully explored" signal (whichever package raised it)."""
    return type(exc).__name__ in ("NoMoreTrialError", "NoMoreTrialSignal")
