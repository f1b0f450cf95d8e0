"""NNI's other built-in tuner names: the built-in each runs as here, or why it cannot run.

* ``SMAC`` runs as ``TPE``: SMAC's random-forest model has no Optuna sampler; TPE is the
  closest model-based one. ``config_dedup`` is ignored.
* ``Metis`` runs as ``GP`` (both are Gaussian-process Bayesian optimization; Metis's outlier
  resampling is not done). ``cold_start_num`` carries over; ``no_resampling``,
  ``no_candidates``, ``selection_num_starting_points``, ``exploration_probability`` are
  ignored.
* ``DNGO`` runs as ``GP``: its Bayesian neural network has no Optuna counterpart, a Gaussian
  process is the closest surrogate. ``sample_size``, ``trials_per_update`` and
  ``num_epochs_per_training`` are ignored.
* ``TPE_legacy`` (NNI's hyperopt TPE) runs as ``TPE``: ``parallel_optimize`` turns Optuna's
  constant liar on or off; ``constant_liar_type`` is ignored (Optuna has one kind of lie).
* ``RegularizedEvolution`` runs as ``Evolution`` (regularized evolution too), with
  ``population_size`` and ``sample_size``.
* ``PBT`` and ``PPOTuner`` are refused with the closest built-in named: PBT hands
  checkpoints from trial to trial, PPOTuner searches NNI's NAS (mutable layer) spaces.

Each stand-in is announced with one warning per process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remotetune.errors import TunerError
from remotetune.registry import norm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StandIn:
    """``runs_as`` takes the NNI tuner's place; ``args`` maps its class arguments onto the
    stand-in's (None: accepted and ignored)."""

    runs_as: str
    why: str
    args: Mapping[str, str | None] = field(default_factory=dict)


STAND_INS: dict[str, StandIn] = {
    "SMAC": StandIn("TPE", "SMAC's random-forest model has no Optuna sampler; TPE is the "
                    "closest model-based one", {"config_dedup": None}),
    "Metis": StandIn("GP", "both are Gaussian-process Bayesian optimization (Metis's outlier "
                     "resampling is not done)",
                     {"cold_start_num": "cold_start_num", "no_resampling": None,
                      "no_candidates": None, "selection_num_starting_points": None,
                      "exploration_probability": None}),
    "DNGO": StandIn("GP", "DNGO's Bayesian neural network has no Optuna counterpart; a "
                    "Gaussian process is the closest surrogate",
                    {"sample_size": None, "trials_per_update": None,
                     "num_epochs_per_training": None}),
    "TPE_legacy": StandIn("TPE", "NNI's hyperopt TPE; Optuna's TPE is the same algorithm",
                          {"parallel_optimize": "constant_liar", "constant_liar_type": None}),
    "RegularizedEvolution": StandIn("Evolution", "the built-in Evolution is regularized "
                                    "evolution", {"population_size": "population_size",
                                                  "sample_size": "sample_size"}),
}

REFUSED: dict[str, tuple[str, str]] = {
    "PBT": ("Evolution", "population based training hands checkpoints from trial to trial "
            "(load_checkpoint_dir / save_checkpoint_dir), which remotetune does not do"),
    "PPOTuner": ("Evolution", "PPOTuner searches NNI's NAS (mutable layer) spaces, which "
                 "remotetune does not run"),
}

_COMMON = ("optimize_mode", "seed")
_announced: set[str] = set()


_BY_NORM = {norm(k): k for k in (*STAND_INS, *REFUSED)}


def nni_name(name: Any) -> str | None:
    """NNI's spelling of ``name`` when it is one of the names above, else None."""
    return _BY_NORM.get(norm(name)) if isinstance(name, str) else None


def stand_in(name: str, class_args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The built-in name and class arguments that run NNI's tuner ``name``; a TunerError for
    a refused one or an argument NNI's tuner does not have."""
    key = nni_name(name)
    if key is None:
        return name, dict(class_args)
    if key in REFUSED:
        closest, why = REFUSED[key]
        raise TunerError(f"NNI's {key} tuner cannot run here: {why}; the closest built-in is "
                         f"{closest}")
    sub = STAND_INS[key]
    args: dict[str, Any] = {}
    for arg, value in class_args.items():
        if arg in _COMMON:
            args[arg] = value
        elif arg not in sub.args:
            accepted = ", ".join(sorted((*_COMMON, *sub.args)))
            raise TunerError(f"{key} has no class argument {arg!r} (it accepts: {accepted})")
        elif sub.args[arg] is not None:
            args[str(sub.args[arg])] = value
        else:
            logger.warning("%s: class argument %s is ignored (%s runs as %s)", key, arg, key,
                           sub.runs_as)
    if key not in _announced:
        _announced.add(key)
        logger.warning("NNI's %s tuner runs as %s: %s", key, sub.runs_as, sub.why)
    return sub.runs_as, args
