"""NNI's public surface for code written against NNI, standard library only (Python >= 3.8).

It has two uses, and under both it is imported as the package ``nni``:

* On hosts, the bundle (``backends/hostpool/_bundle.py``) ships it as ``nni/`` on the
  trial's ``PYTHONPATH``, so trial code that does ``import nni``, ``import nni.trial`` or
  ``from nni.utils import merge_parameter`` runs unchanged. Where the trial's Python has the
  real NNI installed, ``import nni`` loads that package instead (every ``nni.*`` module is
  then NNI's own) and points its trial API at :mod:`remotetune.trial`, so the metrics still
  reach remotetune.
* On the controller, :func:`remotetune.nni_classes.ensure_nni` installs it as ``nni`` when
  NNI is not installed there, so custom tuners and assessors written against
  ``nni.tuner.Tuner`` and ``nni.assessor.Assessor`` import.

Imported under its own name (``remotetune.nni_compat``) it is an ordinary module and loads
nothing else.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Optional

from remotetune.trial import (
    get_current_parameter,
    get_experiment_id,
    get_next_parameter,
    get_next_parameters,
    get_sequence_id,
    get_trial_id,
    report_final_result,
    report_intermediate_result,
)

__all__ = [
    "NoMoreTrialError",
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_next_parameters",
    "get_sequence_id",
    "get_trial_id",
    "report_final_result",
    "report_intermediate_result",
]

__version__ = "remotetune-shim"
__remotetune_shim__ = True  # the marker _real_spec() looks for, so a shim never loads a shim

#: The trial functions a real NNI package gets from remotetune.
TRIAL_API = (
    "get_next_parameter", "get_next_parameters", "get_current_parameter",
    "report_intermediate_result", "report_final_result",
    "get_experiment_id", "get_trial_id", "get_sequence_id",
)


class NoMoreTrialError(Exception):
    """A tuner raises it from ``generate_parameters`` when it has nothing more to try."""

    def __init__(self, ErrorInfo: str = "Search space fully explored") -> None:  # noqa: N803
        super().__init__(ErrorInfo)
        self.errorinfo = ErrorInfo

    def __str__(self) -> str:
        return self.errorinfo


def _is_shim(spec: importlib.machinery.ModuleSpec) -> bool:
    try:
        with open(str(spec.origin), "rb") as f:
            return b"__remotetune_shim__" in f.read(4096)
    except OSError:
        return False


def _real_spec() -> Optional[importlib.machinery.ModuleSpec]:
    """The spec of an ``nni`` package elsewhere on ``sys.path`` that is not a shim."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for entry in sys.path:
        if os.path.abspath(entry or os.curdir) == here:
            continue
        spec = importlib.machinery.PathFinder.find_spec("nni", [entry])
        if spec is not None and spec.submodule_search_locations and not _is_shim(spec):
            return spec
    return None


def point_at_remotetune(module: ModuleType) -> None:
    """Make ``module`` (a real ``nni``) and its ``nni.trial`` use remotetune's trial API."""
    from remotetune import trial

    for target in (module, sys.modules.get("nni.trial")):
        if target is not None:
            for name in TRIAL_API:
                setattr(target, name, getattr(trial, name))


def _load_real(shim: ModuleType) -> Optional[ModuleType]:
    """Load the real NNI as ``nni`` in place of this module; None (shim kept) if it fails."""
    spec = _real_spec()
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nni"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken NNI install: the shim still serves
        for name in [n for n in sys.modules if n.startswith("nni.")]:
            del sys.modules[name]
        sys.modules["nni"] = shim
        print("remotetune: the installed nni failed to import (%s: %s); using remotetune's "
              "nni trial API instead" % (type(exc).__name__, exc), file=sys.stderr)
        return None
    point_at_remotetune(module)
    return module


def _defer() -> Any:
    if __name__ == "nni" and sys.modules.get("nni") is sys.modules.get(__name__):
        return _load_real(sys.modules[__name__])
    return None


_defer()
