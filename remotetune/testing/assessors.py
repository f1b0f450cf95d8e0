"""The assessor contract, as a test mixin any assessor can be checked with.

Subclass :class:`AssessorContract` in a test module and provide a fixture ``make_assessor``
returning a factory ``(optimize_mode) -> Assessor`` (parametrize it to check several)::

    class TestMine(AssessorContract):
        @pytest.fixture
        def make_assessor(self):
            return lambda mode: MyAssessor(mode)

The curves are synthetic and seeded: ``q * (1 - exp(-step / 4))`` plus small noise, one
trial after another in time, so a trial with a small ``q`` is a bad one and a large ``q`` a
good one whatever the assessor's rule.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from remotetune.assessors import Assessor, CurvePoint, TrialView, Verdict
from remotetune.model import OptimizeMode, TrialStatus

Factory = Callable[[OptimizeMode], Assessor]
STEPS = 20
WATCH = 12  # steps a new trial is followed for


def curve(q: float, steps: int, *, seed: int, start: float, sign: float = 1.0,
          ) -> tuple[CurvePoint, ...]:
    rng = random.Random(seed)
    return tuple(
        CurvePoint(s, sign * (q * (1 - math.exp(-s / 4)) + rng.gauss(0, 0.005)), start + s)
        for s in range(1, steps + 1)
    )


def history(n: int = 24, *, sign: float = 1.0, seed: int = 0) -> list[TrialView]:
    """``n`` succeeded trials of ``STEPS`` steps, each after the previous one."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        points = curve(rng.uniform(0.3, 0.9), STEPS, seed=seed * 1000 + i, start=i * 100.0,
                       sign=sign)
        out.append(TrialView(f"h{i:03d}", {"q": i}, points, TrialStatus.SUCCEEDED,
                             points[-1].value, i))
    return out


def newcomer(q: float, *, sign: float = 1.0, steps: int = WATCH) -> TrialView:
    points = curve(q, steps, seed=777, start=10_000.0, sign=sign)
    return TrialView("new", {"q": q}, points, TrialStatus.RUNNING, None, 10_000)


def follow(assessor: Assessor, trial: TrialView, others: Sequence[TrialView]) -> list[Verdict]:
    """Assess ``trial`` after each of its steps, as a live controller would, until it is
    stopped; the verdicts in order."""
    verdicts = []
    for step in range(1, trial.last_step + 1):
        verdict = assessor.assess(trial.upto(step), others)
        assert isinstance(verdict, Verdict)
        verdicts.append(verdict)
        if verdict.stop:
            break
    return verdicts


def lived(make: Factory, past: Sequence[TrialView], mode: OptimizeMode) -> Assessor:
    """A fresh assessor that has seen ``past`` happen: restored from it, as after a resume (a
    stateful one replays every report in time order, as if it had assessed them live)."""
    assessor = make(mode)
    assessor.restore(past)
    return assessor


def interleaved(make: Callable[[], Assessor], *, cut: int, trials: int = 8, at_once: int = 4,
                steps: int = 10, seed: int = 1) -> tuple[list[Verdict], list[Verdict]]:
    """A live run of ``trials`` trials in waves of ``at_once``, their reports interleaved in
    time, each report assessed (others: every trial started so far, as the controller gives
    them) and a stop carried out. After ``cut`` reports a second assessor is restored from the
    trials as they stand, as after a resume, and assesses the rest too. Returns the live and
    the restored assessor's verdicts after the cut."""
    rng = random.Random(seed)
    qs = [rng.uniform(0.02, 1.0) for _ in range(trials)]
    live, resumed = make(), None
    views: dict[str, TrialView] = {}
    logs: tuple[list[Verdict], list[Verdict]] = ([], [])
    count = 0
    for wave in range(0, trials, at_once):
        members = [f"w{i:02d}" for i in range(wave, min(trials, wave + at_once))]
        for tid in members:
            views[tid] = TrialView(tid, {"q": tid}, (), TrialStatus.RUNNING, None, int(tid[1:]))
        for step in range(1, steps + 1):
            for k, tid in enumerate(members):
                view = views[tid]
                if view.status.is_finished():
                    continue
                if count == cut:
                    resumed = make()
                    resumed.restore(list(views.values()))
                count += 1
                i = int(tid[1:])
                point = CurvePoint(step, qs[i] * (1 - math.exp(-step / 4)) + 0.001 * k,
                                   wave * 50.0 + step + k * 0.1)
                view = TrialView(tid, view.parameters, (*view.points, point), view.status,
                                 None, view.parameter_id)
                views[tid] = view
                others = [v for key, v in views.items() if key != tid]
                verdict = live.assess(view, others)
                if resumed is not None:
                    logs[0].append(verdict)
                    logs[1].append(resumed.assess(view, others))
                if verdict.stop or step == steps:
                    views[tid] = TrialView(
                        tid, view.parameters, view.points,
                        TrialStatus.EARLY_STOPPED if verdict.stop else TrialStatus.SUCCEEDED,
                        None if verdict.stop else point.value, view.parameter_id)
                    for a in (live, resumed):
                        if a is not None:
                            a.trial_end(views[tid])
    return logs


class AssessorContract:
    """The contract every assessor keeps (see :class:`remotetune.assessors.Assessor`)."""

    @pytest.fixture
    def make_assessor(self) -> Factory:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    @pytest.mark.parametrize("sign", [1.0, -1.0], ids=["maximize", "minimize"])
    def test_a_bad_curve_is_stopped(self, make_assessor: Factory, sign: float) -> None:
        mode = OptimizeMode.MAXIMIZE if sign > 0 else OptimizeMode.MINIMIZE
        past = history(sign=sign)
        verdicts = follow(lived(make_assessor, past, mode), newcomer(0.02, sign=sign), past)
        assert verdicts[-1].stop, [v.reason for v in verdicts]
        assert verdicts[-1].reason

    @pytest.mark.parametrize("sign", [1.0, -1.0], ids=["maximize", "minimize"])
    def test_a_good_curve_continues(self, make_assessor: Factory, sign: float) -> None:
        mode = OptimizeMode.MAXIMIZE if sign > 0 else OptimizeMode.MINIMIZE
        past = history(sign=sign)
        verdicts = follow(lived(make_assessor, past, mode), newcomer(1.5, sign=sign), past)
        assert len(verdicts) == WATCH and not any(v.stop for v in verdicts), [
            v.reason for v in verdicts]

    def test_decisions_are_deterministic(self, make_assessor: Factory) -> None:
        past = history()
        runs = [follow(lived(make_assessor, past, OptimizeMode.MAXIMIZE), newcomer(q), past)
                for q in (0.02, 0.6, 1.5) for _ in range(2)]
        assert runs[0] == runs[1] and runs[2] == runs[3] and runs[4] == runs[5]

    def test_odd_curves_do_not_crash(self, make_assessor: Factory) -> None:
        odd = [
            (),
            (CurvePoint(1, 0.5, 1.0),),
            tuple(CurvePoint(s, 0.25, float(s)) for s in range(1, 15)),  # flat
            tuple(CurvePoint(s, 1e12 * (-1) ** s, float(s)) for s in range(1, 15)),
            tuple(CurvePoint(s, -float(s), float(s)) for s in range(1, 15)),  # falling
            tuple(CurvePoint(s, 0.0, 0.0) for s in range(1, 4)),  # all at one time
        ]
        for mode in OptimizeMode:
            for others in ([], history(3), [TrialView("e", {}, (), TrialStatus.FAILED)]):
                assessor = lived(make_assessor, others, mode)
                for points in odd:
                    trial = TrialView("odd", {}, points)
                    assert isinstance(assessor.assess(trial, others), Verdict)
                    assessor.trial_end(TrialView("odd", {}, points, TrialStatus.FAILED))

    def test_restore_after_a_resume_gives_the_same_decisions(self, make_assessor: Factory,
                                                             ) -> None:
        past = history()
        for q in (0.02, 0.45, 1.5):
            trial = newcomer(q)
            before = follow(lived(make_assessor, past, OptimizeMode.MAXIMIZE), trial, past)
            cut = max(1, len(before) // 2)  # the controller died after ``cut`` steps
            resumed = make_assessor(OptimizeMode.MAXIMIZE)
            resumed.restore([*past, trial.upto(cut)])
            after = [resumed.assess(trial.upto(s), past) for s in range(cut + 1,
                                                                          len(before) + 1)]
            assert after == before[cut:], (q, [v.reason for v in before])

    @pytest.mark.parametrize("cut", [6, 21, 30])
    def test_restore_in_the_middle_of_an_interleaved_run(self, make_assessor: Factory,
                                                         cut: int) -> None:
        live, resumed = interleaved(lambda: make_assessor(OptimizeMode.MAXIMIZE), cut=cut)
        assert live, "the run ended before the cut"
        assert resumed == live
