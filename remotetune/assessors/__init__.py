"""Assessors: each decides, from read-only curves, whether a running trial should go on.

Build one with :func:`create_assessor`; implement one by subclassing :class:`Assessor` (its
docstring states the contract). The built-ins:

* ``Medianstop``: NNI's median stopping rule (``_median``).
* ``Curvefitting``: learning-curve extrapolation, NNI's classArgs (``_curvefit``).
* ``ASHA``: asynchronous successive halving; promotions never wait (``_asha``).
* Optuna's pruners by class name: ``MedianPruner``, ``PercentilePruner``,
  ``SuccessiveHalvingPruner``, ``HyperbandPruner``, ``ThresholdPruner``, ``PatientPruner``,
  ``WilcoxonPruner`` (``_optuna``).

:class:`EarlyStopping` is what the controller drives (each new result assessed once, in
order; a :class:`Stop` decision with the event's text); :func:`value_for_tuner` is the rule
for what a tuner learns from a stopped trial.
"""

from __future__ import annotations

from remotetune.assessors._asha import AshaAssessor
from remotetune.assessors._base import (
    Assessor,
    CurvePoint,
    Decision,
    TrialView,
    Verdict,
    replay,
)
from remotetune.assessors._curvefit import CurvefittingAssessor
from remotetune.assessors._driver import EarlyStopping, Stop
from remotetune.assessors._median import MedianstopAssessor
from remotetune.assessors._optuna import PRUNERS, OptunaPrunerAssessor
from remotetune.assessors._registry import (
    BUILTIN_ASSESSORS,
    assessor_arg_names,
    assessor_class,
    builtin_name,
    create_assessor,
)
from remotetune.assessors._rule import value_for_tuner

__all__ = [
    "BUILTIN_ASSESSORS",
    "PRUNERS",
    "AshaAssessor",
    "Assessor",
    "CurvePoint",
    "CurvefittingAssessor",
    "Decision",
    "EarlyStopping",
    "MedianstopAssessor",
    "OptunaPrunerAssessor",
    "Stop",
    "TrialView",
    "Verdict",
    "assessor_arg_names",
    "assessor_class",
    "builtin_name",
    "create_assessor",
    "replay",
    "value_for_tuner",
]
