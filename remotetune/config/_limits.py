"""An experiment's limits that may change while it runs: trials, duration, concurrency.

``remotetune update`` and ``remotetune resume --max-trials`` give new values; they are
checked here with the same getters and ranges as the experiment file, and applied to an
:class:`ExperimentConfig` (its typed fields and its ``raw`` copy, which the store keeps and
``resume`` parses again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remotetune.config._experiment import ExperimentConfig
from remotetune.config._fields import Section, Source

#: The experiment-file keys a running experiment accepts changes to.
LIMIT_KEYS: tuple[str, ...] = ("maxTrialNumber", "maxExperimentDuration", "trialConcurrency")


@dataclasses.dataclass(frozen=True)
class Limits:
    """New values; None leaves a limit as it is. ``raw`` holds them as the user wrote them."""

    max_trial_number: int | None = None
    max_experiment_duration: float | None = None
    trial_concurrency: int | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def empty(self) -> bool:
        return not self.raw

    def apply(self, config: ExperimentConfig) -> ExperimentConfig:
        """``config`` with these limits, in its fields and in its ``raw`` copy."""
        changes: dict[str, Any] = {}
        for attr in ("max_trial_number", "max_experiment_duration", "trial_concurrency"):
            value = getattr(self, attr)
            if value is not None:
                changes[attr] = value
        return dataclasses.replace(config, raw={**config.raw, **self.raw}, **changes)


def parse_limits(data: Mapping[str, Any], *, file: str | None = None) -> Limits:
    """Check new limits (experiment-file keys) as the experiment file's loader does."""
    top = Section(Source(file, Path.cwd()), (), data, what="a mapping of limits")
    for key in top.data:
        if key not in LIMIT_KEYS:
            raise top.unknown(key, LIMIT_KEYS,
                              hint="only " + ", ".join(LIMIT_KEYS) + " can change")
    return Limits(
        max_trial_number=top.integer("maxTrialNumber", minimum=1, example="100"),
        max_experiment_duration=top.seconds("maxExperimentDuration", positive=True,
                                            example='"2h"'),
        trial_concurrency=top.integer("trialConcurrency", minimum=1, example="4"),
        raw={k: v for k, v in top.data.items() if v is not None},
    )


def describe_limits(config: ExperimentConfig) -> dict[str, Any]:
    """The current limits as the experiment file writes them (for events and messages)."""
    return {key: config.raw.get(key) for key in LIMIT_KEYS}
