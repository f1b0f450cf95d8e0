"""NNI custom assessors (subclasses of ``nni.assessor.Assessor``) behind remotetune's
:class:`Assessor`.

Built as NNI builds them, ``Class(**classArgs)``. After each intermediate result
``assess_trial(trial_id, history)`` gets the trial's numbers so far (each metric's
``default`` number for a dict metric), oldest first; ``AssessResult.Bad`` (or False) stops
the trial. ``trial_end(trial_id, success)`` follows when an assessed trial ends. An NNI
assessor keeps its own state, so after a restart it is fed the stored reports again in time
order (``stateful``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from remotetune.assessors._base import Assessor, TrialView, Verdict, parse_mode
from remotetune.errors import AssessorError
from remotetune.model import OptimizeMode, TrialStatus


class NniAssessor(Assessor):
    """Adapter base; :func:`nni_assessor_class` makes one subclass per NNI assessor class."""

    stateful = True
    nni_class: ClassVar[type]
    spec: ClassVar[str] = ""

    def __init__(self, optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE, *,
                 nni_assessor: Any = None) -> None:
        super().__init__(optimize_mode)
        self.nni = nni_assessor

    @classmethod
    def class_arg_names(cls) -> frozenset[str]:
        try:
            params = inspect.signature(cls.nni_class).parameters.values()
        except (TypeError, ValueError):
            return frozenset()
        return frozenset(p.name for p in params
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    @classmethod
    def create(cls, class_args: Mapping[str, Any]) -> NniAssessor:
        args = dict(class_args)
        mode = parse_mode(args.get("optimize_mode", OptimizeMode.MAXIMIZE), cls.spec)
        try:
            inspect.signature(cls.nni_class).bind(**args)
        except TypeError as exc:
            raise AssessorError(
                f"assessor {cls.spec}: classArgs do not fit its constructor: {exc} (it "
                f"takes: {', '.join(sorted(cls.class_arg_names())) or 'no arguments'})"
            ) from None
        try:
            instance = cls.nni_class(**args)
        except Exception as exc:
            raise AssessorError(f"assessor {cls.spec} could not be created: "
                                f"{type(exc).__name__}: {exc}") from exc
        return cls(mode, nni_assessor=instance)

    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        if not trial.points:
            return Verdict.keep("no intermediate result yet")
        result = self.nni.assess_trial(trial.trial_id, list(trial.values))
        name = getattr(result, "name", None)
        if result is False or name == "Bad":
            return Verdict.halt(f"{type(self.nni).__name__} judged it Bad at step "
                                f"{trial.last_step}")
        if result is True or name == "Good":
            return Verdict.keep()
        raise AssessorError(f"assessor {self.spec}: assess_trial must return AssessResult.Good "
                            f"or AssessResult.Bad, got {result!r:.80}")

    def trial_end(self, trial: TrialView) -> None:
        if trial.points:  # NNI tells an assessor only of trials it assessed
            self.nni.trial_end(trial.trial_id, trial.status is TrialStatus.SUCCEEDED)


def nni_assessor_class(cls: type, spec: str) -> type[NniAssessor]:
    """The adapter class for the NNI assessor ``cls`` (written ``spec`` in the config)."""
    return type(f"Nni{cls.__name__}", (NniAssessor,), {"nni_class": cls, "spec": spec,
                                                       "__module__": __name__})
