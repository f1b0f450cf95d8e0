"""GP: NNI's Gaussian-process tuner, run on Optuna's ``GPSampler`` (Optuna >= 3.6, PyTorch).

What it really is: ``cold_start_num`` random trials (NNI's argument, default 10), then
Optuna's Gaussian process (Matérn 5/2 kernel, log expected improvement, fitted with PyTorch)
over the parameters every trial has; a nested choice's inner parameters are drawn at random
(Optuna's independent sampler). NNI's ``utility``, ``kappa``, ``xi``, ``nu``, ``alpha``,
``selection_num_warm_up`` and ``selection_num_starting_points`` are accepted and ignored
with a warning: GPSampler chooses its kernel and acquisition function itself. It has no
constant liar, so concurrent suggestions are independent of the running trials. Without
PyTorch it is a :class:`TunerError` that says how to install it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import warnings
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode
from remotetune.space import SearchSpace
from remotetune.tuners._base import int_arg
from remotetune.tuners._optuna import OptunaTuner

logger = logging.getLogger(__name__)

IGNORED_GP_ARGS = ("utility", "kappa", "xi", "nu", "alpha", "selection_num_warm_up",
                   "selection_num_starting_points")


def gp_sampler_class() -> type:
    """Optuna's GPSampler, or a TunerError saying what is missing."""
    import optuna  # imported when a GP tuner is built, not with the tuners package

    sampler = getattr(optuna.samplers, "GPSampler", None)
    if sampler is None:
        raise TunerError(f"GP runs on Optuna's GPSampler, which this Optuna "
                         f"({optuna.__version__}) lacks: pip install 'optuna>=3.6' (or use TPE)")
    if importlib.util.find_spec("torch") is None:
        raise TunerError("GP runs on Optuna's GPSampler, which needs PyTorch: pip install torch "
                         "(or pip install 'remotetune[trials]'), or use TPE")
    return sampler  # type: ignore[no-any-return]


class GpTuner(OptunaTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        cold_start_num: int = 10,
        utility: Any = None,
        kappa: Any = None,
        xi: Any = None,
        nu: Any = None,
        alpha: Any = None,
        selection_num_warm_up: Any = None,
        selection_num_starting_points: Any = None,
    ) -> None:
        self.cold_start_num = int_arg("GP", "cold_start_num", cold_start_num, 1)
        given = dict(utility=utility, kappa=kappa, xi=xi, nu=nu, alpha=alpha,
                     selection_num_warm_up=selection_num_warm_up,
                     selection_num_starting_points=selection_num_starting_points)
        for name in IGNORED_GP_ARGS:
            if given[name] is not None:
                logger.warning("GP: class argument %s has no counterpart in Optuna's "
                               "GPSampler; ignored", name)
        import optuna

        sampler_class = gp_sampler_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs: dict[str, Any] = {"seed": seed, "n_startup_trials": self.cold_start_num}
            if "warn_independent_sampling" in inspect.signature(sampler_class).parameters:
                kwargs["warn_independent_sampling"] = False  # nested choices: expected
            sampler = sampler_class(**kwargs)
        super().__init__(space, optimize_mode, seed=seed, sampler=sampler)
