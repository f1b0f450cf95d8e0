"""Random search: every configuration drawn independently from the space's priors (NNI's
``Random``; ``optimize_mode`` is accepted and ignored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remotetune.model import TrialRecord
from remotetune.tuners._base import Tuner


class RandomTuner(Tuner):
    def suggest(self, parameter_id: int, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        return self.space.sample(self.rng)
