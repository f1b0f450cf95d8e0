"""The :class:`Tuner` interface and the helpers its implementations share."""

from __future__ import annotations

import abc
import inspect
import json
import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.registry import unknown_arg
from remotetune.space import SearchSpace

logger = logging.getLogger(__name__)

# Constructor parameters every tuner has; they are not class arguments of their own.
_COMMON = frozenset({"self", "space", "optimize_mode", "seed"})


class Tuner(abc.ABC):
    """Proposes trial configurations. Returns decisions; never touches hosts, files or the store.

    Contract (the controller relies on it; ``tests/test_tuners.py`` checks it for every tuner):

    * The controller calls a tuner from one thread; tuners need not be thread-safe.
    * ``suggest(parameter_id, history)`` returns a new JSON-serializable configuration, or
      ``None`` when it has nothing to propose. Then ``is_exhausted()`` tells the two cases
      apart: True (the default: a grid or batch ran out) means never again, and the controller
      stops asking; False means *not now* (Hyperband or BOHB waiting for a round's results):
      the controller asks again after its next ``observe``. A ``parameter_id`` given to a
      ``suggest`` that returned None is not used up. ``parameter_id`` is unique per call.
      Configurations lie in the space (``space.contains``), except BatchTuner's (its listed
      configurations) and Hyperband's and BOHB's (plus their ``TRIAL_BUDGET`` key).
      ``history`` is a read-only view of every trial so far, running ones included; a tuner may
      ignore it.
    * ``observe(parameter_id, parameters, value, status)`` is called once a trial is finished:
      ``value`` is its final metric, ``None`` when it failed or reported none; for an
      EARLY_STOPPED trial, ``remotetune.assessors.value_for_tuner``'s value (its last
      intermediate, NNI's rule). A LOST trial will be retried under the same
      ``parameter_id``, so its configuration stays pending.
      ``parameters`` may come from outside this tuner (imported or restored trials).
    * ``restore(history)`` is called on a fresh tuner, before any ``suggest``, after a controller
      restart. Enumerating tuners (grid, batch) never re-issue a configuration seen in it.
    * Given the same ``seed`` and the same calls, a tuner makes the same suggestions.
    * Higher is better under ``OptimizeMode.MAXIMIZE``, lower under ``MINIMIZE``; ``score``
      folds this so implementations always maximize it.
    """

    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        **class_args: Any,
    ) -> None:
        if class_args:
            raise unknown_arg_error(type(self), next(iter(class_args)))
        self.space = space
        self.optimize_mode = parse_optimize_mode(optimize_mode)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TunerError(f"{type(self).__name__}: seed must be an integer, got {seed!r}")
        self.seed = seed
        self.rng = random.Random(seed)

    @abc.abstractmethod
    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        """Parameters for a new trial, or None when the tuner has nothing more to propose
        (grid/batch exhausted). history: read-only records of every trial so far (running
        ones included)."""

    #: False for tuners that stop their own trials (Hyperband, BOHB): no assessor with them.
    accepts_assessor = True

    def is_exhausted(self) -> bool:
        """After ``suggest`` returned None: True when it never will suggest again (default),
        False when it only has nothing *now* and should be asked again after an ``observe``."""
        return True

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        """A trial finished: value is its final metric (None if it failed / reported none).

        Default: nothing (for tuners that do not learn)."""
        return None

    def restore(self, history: Sequence[TrialRecord]) -> None:
        """Rebuild state after a controller restart from the store's trials.

        Default: ``observe()`` each finished trial in ``parameter_id`` order (LOST ones are
        skipped: their retry carries the result). Enumerating tuners also skip configurations
        already issued.
        """
        for record in sorted(history, key=lambda r: (r.parameter_id, r.sequence)):
            if record.status.is_finished() and record.status is not TrialStatus.LOST:
                self.observe(record.parameter_id, record.parameters, record.final, record.status)

    def score(self, value: float) -> float:
        """``value`` turned so that higher is better."""
        return value if self.optimize_mode is OptimizeMode.MAXIMIZE else -value

    @classmethod
    def class_arg_names(cls) -> frozenset[str]:
        """The class arguments this tuner accepts (from its constructors' signatures)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if klass is Tuner or not issubclass(klass, Tuner):
                break
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names.update(
                p.name
                for p in params
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _COMMON
            )
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return frozenset(names)


def unknown_arg_error(cls: type[Tuner], name: str) -> TunerError:
    accepted = cls.class_arg_names() | {"optimize_mode", "seed"}
    return unknown_arg(cls.__name__, name, accepted, TunerError)


def parse_optimize_mode(value: OptimizeMode | str) -> OptimizeMode:
    if isinstance(value, OptimizeMode):
        return value
    if isinstance(value, str):
        try:
            return OptimizeMode(value.strip().lower())
        except ValueError:
            pass
    raise TunerError(
        f"class argument 'optimize_mode' must be 'maximize' or 'minimize', got {value!r}"
    )


def int_arg(tuner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TunerError(
            f"{tuner}: class argument {name!r} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def float_arg(tuner: str, name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise TunerError(
            f"{tuner}: class argument {name!r} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)


def bool_arg(tuner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TunerError(f"{tuner}: class argument {name!r} must be true or false, got {value!r}")
    return value


def config_key(params: Any) -> str:
    """A canonical string for a configuration (to tell whether one was already issued)."""
    return json.dumps(params, sort_keys=True, default=repr)


class EnumeratingTuner(Tuner):
    """A tuner that walks a fixed sequence of configurations and issues each one once.

    Subclasses set ``self._configs`` (an iterator over the configurations, in order) in
    their constructor. A configuration already issued, observed or restored from history is
    skipped, so a restarted experiment never runs one twice.
    """

    _configs: Iterator[dict[str, Any]]

    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self._issued: set[str] = set()

    def _next_unissued(self) -> dict[str, Any] | None:
        for config in self._configs:
            key = config_key(config)
            if key not in self._issued:
                self._issued.add(key)
                return config
        return None

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        self._issued.add(config_key(parameters))

    def restore(self, history: Sequence[TrialRecord]) -> None:
        self._issued.update(config_key(r.parameters) for r in history)
