"""The :class:`Assessor` interface, the frozen trial views it reads and the verdict it returns."""

from __future__ import annotations

import abc
import enum
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remotetune.errors import AssessorError
from remotetune.model import MetricKind, MetricPoint, OptimizeMode, TrialRecord, TrialStatus

# Constructor parameters every assessor has; they are not class arguments of their own.
_COMMON = frozenset({"self", "optimize_mode"})


class Decision(str, enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True)
class Verdict:
    """What an assessor decided about one trial at its latest step, and why (for the event)."""

    decision: Decision
    reason: str = ""

    @property
    def stop(self) -> bool:
        return self.decision is Decision.STOP

    @classmethod
    def keep(cls, reason: str = "") -> Verdict:
        return cls(Decision.CONTINUE, reason)

    @classmethod
    def halt(cls, reason: str) -> Verdict:
        return cls(Decision.STOP, reason)


@dataclass(frozen=True)
class CurvePoint:
    """One intermediate result: ``step`` is 1 for the trial's first report, 2 for the next..."""

    step: int
    value: float
    time: float = 0.0  # when the host saw it (epoch seconds); orders reports across trials


@dataclass(frozen=True)
class TrialView:
    """A trial as an assessor sees it: read-only, its curve in step order."""

    trial_id: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    points: tuple[CurvePoint, ...] = ()
    status: TrialStatus = TrialStatus.RUNNING
    final: float | None = None
    parameter_id: int = 0

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(p.value for p in self.points)

    @property
    def last_step(self) -> int:
        return self.points[-1].step if self.points else 0

    def value_at(self, step: int) -> float | None:
        """The value reported at ``step`` (None when the curve is shorter)."""
        if 0 < step <= len(self.points) and self.points[step - 1].step == step:
            return self.points[step - 1].value
        return next((p.value for p in self.points if p.step == step), None)

    def time_at(self, step: int) -> float | None:
        return next((p.time for p in self.points if p.step == step), None)

    def upto(self, step: int) -> TrialView:
        """This trial as it was when it had reported ``step`` (still running then)."""
        return TrialView(self.trial_id, self.parameters,
                         tuple(p for p in self.points if p.step <= step),
                         TrialStatus.RUNNING, None, self.parameter_id)

    @classmethod
    def of(cls, record: TrialRecord, metrics: Sequence[MetricPoint]) -> TrialView:
        """Build a view from the store's record and its metric lines (intermediates only count;
        non-finite ones are skipped)."""
        points: list[CurvePoint] = []
        for m in sorted(metrics, key=lambda m: m.seq):
            if m.kind is MetricKind.INTERMEDIATE and math.isfinite(m.value):
                points.append(CurvePoint(len(points) + 1, float(m.value), m.time))
        return cls(record.id, record.parameters, tuple(points), record.status, record.final,
                   record.parameter_id)


class Assessor(abc.ABC):
    """Decides whether a running trial should go on. Returns verdicts; never acts.

    Contract (the controller relies on it; ``remotetune.testing.assessors`` checks it for every
    built-in):

    * ``assess(trial, others)`` is called after ``trial`` reported an intermediate result;
      ``trial.points`` ends at that result. It is called once per result, in step order: when
      a poll brings several, once for each with ``trial.upto(step)`` (ASHA decides only at a
      rung's step). Once a verdict says stop, the trial is not assessed again. ``others`` are
      every other trial of the experiment (running and finished, curves included), read-only.
      It returns a :class:`Verdict`; the controller stops the trial when ``verdict.stop`` and
      logs ``verdict.reason``.
    * It must not raise on short, empty or flat curves (it returns CONTINUE then).
    * ``stateful`` is False when the verdict is a pure function of ``(trial, others)``: then
      ``restore`` does nothing. A stateful assessor (Optuna's pruners keep rung records)
      rebuilds its state in ``restore(history)`` by replaying the reported points in time order.
    * ``trial_end(trial)`` tells it a trial finished (default: nothing).
    * Higher is better under ``OptimizeMode.MAXIMIZE``; ``score`` folds this.
    """

    stateful = False

    def __init__(self, optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE) -> None:
        self.optimize_mode = parse_mode(optimize_mode, type(self).__name__)

    @abc.abstractmethod
    def assess(self, trial: TrialView, others: Sequence[TrialView]) -> Verdict:
        """The verdict for ``trial`` at its latest step."""

    def trial_end(self, trial: TrialView) -> None:
        """``trial`` finished (succeeded, failed or stopped). Default: nothing."""
        return None

    def restore(self, history: Sequence[TrialView]) -> None:
        """Rebuild state after a restart. Default (stateless assessors): nothing."""
        if self.stateful:
            replay(self, history)

    def score(self, value: float) -> float:
        return value if self.optimize_mode is OptimizeMode.MAXIMIZE else -value

    def better(self, a: float, b: float) -> bool:
        return self.optimize_mode.better(a, b)

    @classmethod
    def class_arg_names(cls) -> frozenset[str]:
        names: set[str] = set()
        for klass in cls.__mro__:
            if klass is Assessor or not issubclass(klass, Assessor):
                break
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names.update(p.name for p in params
                         if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                         and p.name not in _COMMON)
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return frozenset(names)


def replay(assessor: Assessor, history: Sequence[TrialView]) -> None:
    """Feed ``history`` to ``assessor`` as it happened: every point in time order (ties by
    trial then step), each trial's end after its last point."""
    events: list[tuple[float, str, int, TrialView]] = []
    for view in history:
        for p in view.points:
            events.append((p.time, view.trial_id, p.step, view))
        if view.status.is_finished():
            end = max((p.time for p in view.points), default=0.0)
            events.append((end, view.trial_id, 1 << 30, view))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    seen: dict[str, TrialView] = {}
    for _, tid, step, view in events:
        if step == 1 << 30:
            seen[tid] = view
            assessor.trial_end(view)
            continue
        now = view.upto(step)
        seen[tid] = now
        assessor.assess(now, [v for k, v in seen.items() if k != tid])


def parse_mode(value: Any, who: str) -> OptimizeMode:
    if isinstance(value, OptimizeMode):
        return value
    if isinstance(value, str) and value.strip().lower() in ("maximize", "minimize"):
        return OptimizeMode(value.strip().lower())
    raise AssessorError(
        f"{who}: class argument 'optimize_mode' must be 'maximize' or 'minimize', got {value!r}"
    )


def int_arg(who: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AssessorError(
            f"{who}: class argument {name!r} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def float_arg(who: str, name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise AssessorError(
            f"{who}: class argument {name!r} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)


def fmt(value: float) -> str:
    return f"{value:.4g}"
