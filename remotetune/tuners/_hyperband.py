"""Hyperband (Li et al., JMLR 2018) with NNI's semantics, and the bracket machinery BOHB shares.

Brackets run ``s = s_max .. 0`` and then start over (NNI never runs out: ``maxTrialNumber`` or
``maxExperimentDuration`` ends the experiment). Each trial gets its budget as
``parameters["TRIAL_BUDGET"]`` (an integer, e.g. epochs) and should report a final result;
promoted configurations run again from the start as new trials with the larger budget.
``exec_mode: parallelism`` (NNI's default) opens the next bracket whenever nothing is queued, so
no slot idles; ``serial`` waits until every round of the current bracket has been generated,
and ``suggest`` returns None with ``is_exhausted() == False`` meanwhile.

New configurations are drawn when they are issued (NNI draws a bracket's at its start).
``restore`` replays the store's trials in time order (suggestions at ``created_at``, results at
``ended_at``), adopting each trial's recorded parameters, so the brackets come back as they were.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from remotetune.errors import TunerError
from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.space import SearchSpace
from remotetune.tuners._base import Tuner, int_arg
from remotetune.tuners._brackets import (
    BUDGET_KEY,
    Bracket,
    rounds,
    s_max,
    score_of,
    strip_budget,
)

logger = logging.getLogger(__name__)

Slot = tuple[Bracket, int, "dict[str, Any] | None"]


class BracketTuner(Tuner):
    """Successive-halving brackets; subclasses choose new configurations (``sample``)."""

    accepts_assessor = False

    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        top: float,
        eta: int,
        bottom: float = 1.0,
        wait_for: str | None = None,
    ) -> None:
        super().__init__(space, optimize_mode, seed=seed)
        self.top, self.eta, self.bottom = top, eta, bottom
        self.s_max = s_max(top, eta, bottom)
        self.wait_for = wait_for  # None, "generated" (NNI serial Hyperband) or "finished" (BOHB)
        self.brackets: list[Bracket] = []
        self._queue: collections.deque[Slot] = collections.deque()
        self._where: dict[int, tuple[Bracket, int]] = {}
        self._next_s = self.s_max
        self._iteration = 0

    # --- what subclasses provide -----------------------------------------------------------

    def sample(self, budget: int) -> dict[str, Any]:
        """A new configuration for a first round with ``budget``. Default: from the priors."""
        return self.space.sample(self.rng)

    def learn(self, params: Mapping[str, Any], budget: int, value: float | None) -> None:
        """A configuration's result at ``budget``. Default: nothing."""
        return None

    # --- the Tuner interface ----------------------------------------------------------------

    def is_exhausted(self) -> bool:
        return False

    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        slot = self._next_slot()
        if slot is None:
            return None
        bracket, round_, params = slot
        budget = bracket.plan[round_][1]
        full = {**(params if params is not None else self.sample(budget)), BUDGET_KEY: budget}
        self._issue(parameter_id, bracket, round_, full)
        return dict(full)

    def observe(
        self,
        parameter_id: int,
        parameters: Mapping[str, Any],
        value: float | None,
        status: TrialStatus,
    ) -> None:
        if not status.is_finished() or status is TrialStatus.LOST:
            return
        budget = parameters.get(BUDGET_KEY) if isinstance(parameters, Mapping) else None
        if isinstance(budget, (int, float)) and not isinstance(budget, bool):
            self.learn(strip_budget(parameters), int(budget), value)
        where = self._where.pop(parameter_id, None)
        if where is None:
            return  # not one of ours (imported), or already counted
        bracket, round_ = where
        score = score_of(value, self.optimize_mode is OptimizeMode.MAXIMIZE)
        promoted = bracket.finish(round_, parameter_id, score)
        if promoted is not None:
            nxt = bracket.open_round()
            self._queue.extend((bracket, nxt, p) for p in promoted)

    def restore(self, history: Sequence[TrialRecord]) -> None:
        latest: dict[int, TrialRecord] = {}
        first: dict[int, TrialRecord] = {}  # suggested when its first attempt was made
        for r in sorted(history, key=lambda r: (r.parameter_id, r.attempt, r.sequence)):
            latest[r.parameter_id] = r
            first.setdefault(r.parameter_id, r)
        timed = all(r.created_at is not None for r in latest.values())
        events: list[tuple[tuple[float, int, int], str, TrialRecord]] = []
        for pid, r in latest.items():
            created = first[pid].created_at
            start = float(created) if timed and created is not None else float(pid)
            events.append(((start, 1, pid) if timed else (start, 0, 0), "suggest", r))
            if r.status.is_finished() and r.status is not TrialStatus.LOST:
                end = r.ended_at if timed and r.ended_at is not None else start
                events.append(((float(end), 0, pid) if timed else (start, 1, 0), "observe", r))
        for _, kind, r in sorted(events, key=lambda e: e[0]):
            if kind == "observe":
                self.observe(r.parameter_id, r.parameters, r.final, r.status)
                continue
            slot = self._next_slot() or self._force_slot()
            bracket, round_, _ = slot
            params = dict(r.parameters)
            if params.get(BUDGET_KEY) != bracket.plan[round_][1]:
                logger.warning("%s: restored trial %s has budget %r where the replay expected "
                               "%r", type(self).__name__, r.id, params.get(BUDGET_KEY),
                               bracket.plan[round_][1])
            self._issue(r.parameter_id, bracket, round_, params)

    # --- brackets -------------------------------------------------------------------------

    def _issue(self, pid: int, bracket: Bracket, round_: int, params: dict[str, Any]) -> None:
        bracket.configs[round_][pid] = params
        self._where[pid] = (bracket, round_)

    def _next_slot(self) -> Slot | None:
        if not self._queue:
            current = self.brackets[-1] if self.brackets else None
            if current is not None and self.wait_for == "generated" and not current.generated:
                return None
            if current is not None and self.wait_for == "finished" and not current.finished:
                return None
            self._open_bracket()
        return self._queue.popleft()

    def _force_slot(self) -> Slot:
        self._open_bracket()
        return self._queue.popleft()

    def _open_bracket(self) -> None:
        if self._next_s < 0:
            self._next_s = self.s_max
            self._iteration += 1
        s = self._next_s
        bracket = Bracket(f"{self._iteration}-{s}", s, rounds(s, self.s_max, self.eta, self.top))
        bracket.open_round()
        self.brackets.append(bracket)
        self._queue.extend((bracket, 0, None) for _ in range(bracket.plan[0][0]))
        self._next_s -= 1


class HyperbandTuner(BracketTuner):
    def __init__(
        self,
        space: SearchSpace,
        optimize_mode: OptimizeMode | str = OptimizeMode.MAXIMIZE,
        *,
        seed: int | None = None,
        R: int = 60,  # noqa: N803 - NNI's name
        eta: int = 3,
        exec_mode: str = "parallelism",
    ) -> None:
        if exec_mode not in ("parallelism", "serial"):
            raise TunerError(
                f"Hyperband: class argument 'exec_mode' must be 'parallelism' or 'serial', "
                f"got {exec_mode!r}"
            )
        super().__init__(
            space, optimize_mode, seed=seed, top=int_arg("Hyperband", "R", R, 1),
            eta=int_arg("Hyperband", "eta", eta, 2),
            wait_for="generated" if exec_mode == "serial" else None,
        )
        self.R = R
        self.exec_mode = exec_mode


def bracket_table(R: float, eta: int, bottom: float = 1.0) -> list[list[tuple[int, int]]]:  # noqa: N803
    """Every bracket's ``(n_i, r_i)`` rounds, ``s_max`` first (for docs and tests)."""
    top = s_max(R, eta, bottom)
    return [rounds(s, top, eta, R) for s in range(top, -1, -1)]


def total_budget(R: float, eta: int, bottom: float = 1.0) -> int:  # noqa: N803
    return sum(n * r for b in bracket_table(R, eta, bottom) for n, r in b)


