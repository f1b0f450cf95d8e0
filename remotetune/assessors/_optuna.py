"""Optuna's pruners as assessors, by their class names and with their own arguments.

The pruner runs against an in-memory Optuna study that mirrors the curves the assessor is
shown: each trial becomes an Optuna trial (numbered in the order of their first reports, so a
replay numbers them as the live run did; Optuna's HyperbandPruner picks brackets by number),
its intermediate results are reported at their steps, and a
finished trial gets its state: SUCCEEDED -> COMPLETE with its final (the last intermediate
when it reported none), EARLY_STOPPED -> PRUNED, failed or canceled -> FAIL; LOST trials
stay RUNNING (their retry carries on). Syncing only adds what is new, so a decision costs the
pruner's own work plus a dictionary lookup per trial, for hundreds of trials too.

Pruners that keep records (successive halving and Hyperband note each trial's rung values,
also inside a PatientPruner) make this assessor ``stateful``: ``restore`` replays every
reported point in time order. For the others ``restore`` only rebuilds the mirror.
``PatientPruner``'s ``wrapped_pruner`` is written ``{name: MedianPruner, classArgs: {...}}``,
a bare pruner name, or null.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from remotetune.assessors._base import Assessor, TrialView, Verdict, replay
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode, TrialStatus

PRUNERS = (
    "MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner", "HyperbandPruner",
    "ThresholdPruner", "PatientPruner", "WilcoxonPruner",
)


def pruner_arg_names(name: str) -> frozenset[str]:
    import optuna

    init = getattr(optuna.pruners, name).__init__
    return frozenset(p for p in inspect.signature(init).parameters if p != "self")


def build_pruner(name: str, args: Mapping[str, Any]) -> Any:
    import optuna

    if name not in PRUNERS:
        raise AssessorError(f"unknown Optuna pruner {name!r} (known: {', '.join(PRUNERS)})")
    args = dict(args)
    unknown = sorted(set(args) - pruner_arg_names(name))
    if unknown:
        raise AssessorError(
            f"{name} has no class argument {unknown[0]!r} "
            f"(it accepts: {', '.join(sorted(pruner_arg_names(name)))})"
        )
    if name == "PatientPruner":
        args["wrapped_pruner"] = _wrapped(args.get("wrapped_pruner"))
        args.setdefault("patience", 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return getattr(optuna.pruners, name)(**args)
    except (TypeError, ValueError) as exc:
        raise AssessorError(f"{name}: {exc}") from exc


def _wrapped(spec: Any) -> Any:
    if spec is None:
        return None
    if isinstance(spec, str):
        return build_pruner(spec, {})
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        inner = spec.get("classArgs") or {}
        if not isinstance(inner, Mapping):
            raise AssessorError("PatientPruner: wrapped_pruner.classArgs must be a mapping")
        return build_pruner(spec["name"], inner)
    raise AssessorError(
        "PatientPruner: wrapped_pruner must be a pruner name or {name: ..., classArgs: {...}}"
    )


class OptunaPrunerAssessor(Assessor):
    """One of Optuna's pruners (``pruner``: its class name; ``args``: its arguments)."""

    def __init__(
        self,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        pruner: str = "MedianPruner",
        args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(optimize_mode)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = pruner
        self.pruner = build_pruner(pruner, args or {})
        # successive halving and Hyperband write rung records as they prune; the rest decide
        # from the mirrored curves alone
        self.stateful = _keeps_records(self.pruner)
        if pruner == "WilcoxonPruner":
            import scipy.stats  # noqa: F401 - its test; paid here (1-2 s), not mid-run
        self.study = optuna.create_study(
            study_name="remotetune", direction=self.optimize_mode.value,
            storage=optuna.storages.InMemoryStorage(),
            sampler=optuna.samplers.RandomSampler(seed=0), pruner=self.pruner,
        )
        self._storage = self.study._storage
        self._study_id = self.study._study_id
        self._mirror: dict[str, list[Any]] = {}  # trial id -> [optuna id, points synced, done]

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        if not trial.points:
            return Verdict.keep("no intermediate result yet")
        fresh = []
        for view in others:  # only what changed since the last call is synced
            entry = self._mirror.get(view.trial_id)
            if entry is None:
                if view.points or view.status.is_finished():
                    fresh.append(view)
            elif not entry[2] and (entry[1] != len(view.points) or view.status.is_finished()):
                self._sync(view)
        for view in sorted(fresh, key=_first_report):
            self._sync(view)
        optuna_id = self._sync(trial)
        frozen = self._storage.get_trial(optuna_id)
        if self.pruner.prune(self.study, frozen):
            return Verdict.halt(
                f"{self.name} pruned it at step {trial.last_step} "
                f"(value {trial.points[-1].value:.4g})"
            )
        return Verdict.keep(f"{self.name}: keep at step {trial.last_step}")

    def restore(self, history: Sequence[TrialView]) -> None:
        """Stateful pruners replay every report; the others only need the mirror."""
        if self.stateful:
            replay(self, history)
            return
        for view in sorted(history, key=_first_report):
            self._sync(view)

    def trial_end(self, trial: TrialView) -> None:
        self._sync(trial)

    def _sync(self, view: TrialView) -> int:
        from optuna.trial import TrialState

        entry = self._mirror.get(view.trial_id)
        if entry is None and not view.points and not view.status.is_finished():
            return -1  # nothing to mirror yet: numbering follows first reports, live or replayed
        if entry is None:
            entry = [self._storage.create_new_trial(self._study_id), 0, False]
            self._mirror[view.trial_id] = entry
        optuna_id, synced, done = entry
        if done:
            return int(optuna_id)
        for point in view.points[synced:]:
            self._storage.set_trial_intermediate_value(optuna_id, point.step, point.value)
        entry[1] = len(view.points)
        status = view.status
        if status.is_finished() and status is not TrialStatus.LOST:
            if status is TrialStatus.SUCCEEDED:
                value = view.final if view.final is not None else (
                    view.points[-1].value if view.points else None)
                if value is not None and math.isfinite(value):
                    self._storage.set_trial_state_values(optuna_id, TrialState.COMPLETE, [value])
                else:
                    self._storage.set_trial_state_values(optuna_id, TrialState.FAIL)
            elif status is TrialStatus.EARLY_STOPPED:
                self._storage.set_trial_state_values(optuna_id, TrialState.PRUNED)
            else:
                self._storage.set_trial_state_values(optuna_id, TrialState.FAIL)
            entry[2] = True
        return int(optuna_id)


def _first_report(view: TrialView) -> tuple[float, str]:
    return (view.points[0].time if view.points else float("inf"), view.trial_id)


def _keeps_records(pruner: Any) -> bool:
    import optuna

    if isinstance(pruner, optuna.pruners.PatientPruner):
        inner = getattr(pruner, "_wrapped_pruner", None)
        return inner is not None and _keeps_records(inner)
    return isinstance(pruner, (optuna.pruners.SuccessiveHalvingPruner,
                               optuna.pruners.HyperbandPruner))
