"""Tuners: each proposes configurations from read-only history and returns them.

Build one with :func:`create_tuner`; implement one by subclassing :class:`Tuner` (its
docstring states the contract). What each built-in really is:

* ``Random``: independent samples from the priors.
* ``GridSearch``: exact enumeration of discrete parameters, continuous ones at quantiles
  refined epoch by epoch (``_grid``).
* ``Batch`` (``BatchTuner``): NNI's list of whole configurations, each once (``_batch``).
* ``TPE``: Optuna's TPESampler, ask/tell, constant liar for concurrency (``_optuna``).
* ``Anneal``: hyperopt-style annealing around the best trials (``_anneal``).
* ``Evolution``: regularized evolution with local mutations (``_evolution``).

NNI's advisors, multi-fidelity tuners that give each trial a ``TRIAL_BUDGET`` parameter and
stop poor configurations themselves (so they take no assessor):

* ``Hyperband``: NNI's brackets, random configurations (``_hyperband``, ``_brackets``).
* ``BOHB``: the same brackets with Optuna's TPE over the largest budget's results (``_bohb``).
"""

from __future__ import annotations

from remotetune.tuners._anneal import AnnealTuner
from remotetune.tuners._base import Tuner
from remotetune.tuners._batch import BatchTuner
from remotetune.tuners._bohb import BohbTuner
from remotetune.tuners._brackets import BUDGET_KEY
from remotetune.tuners._evolution import EvolutionTuner
from remotetune.tuners._grid import GridSearchTuner
from remotetune.tuners._hyperband import HyperbandTuner, bracket_table
from remotetune.tuners._optuna import TpeTuner
from remotetune.tuners._random import RandomTuner
from remotetune.tuners._registry import (
    BUILTIN_ADVISORS,
    BUILTIN_TUNERS,
    create_tuner,
    tuner_class,
)

__all__ = [
    "BUDGET_KEY",
    "BUILTIN_ADVISORS",
    "BUILTIN_TUNERS",
    "BohbTuner",
    "HyperbandTuner",
    "AnnealTuner",
    "BatchTuner",
    "EvolutionTuner",
    "GridSearchTuner",
    "RandomTuner",
    "TpeTuner",
    "bracket_table",
    "Tuner",
    "create_tuner",
    "tuner_class",
]
