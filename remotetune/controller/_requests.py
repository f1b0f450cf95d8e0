"""The controller's side of ``remotetune update``: take change requests, apply new limits.

:class:`LimitFlow` is a part of :class:`~remotetune.controller.Controller`. New limits
replace the controller's config (the loop reads its limits every turn, so they hold from
the next turn) and are written to the experiment record, its ``config`` included, where
``resume`` reads them again. Lowering ``trialConcurrency`` kills nothing: fewer trials are
started. A ``maxTrialNumber`` below the trials already started ends the experiment when
the running ones finish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remotetune.backends import Backend
from remotetune.change_requests import RequestInbox, read_request, requests_dir
from remotetune.config import ExperimentConfig, Limits, describe_limits
from remotetune.errors import ConfigError
from remotetune.model import EventKind, EventLevel, ExperimentRecord


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


class LimitFlow:
    config: ExperimentConfig
    experiment: ExperimentRecord | None
    _event: Callable[..., None]
    _save_experiment: Callable[..., None]
    backends: list[Backend]
    _requests: RequestInbox | None = None

    def _open_requests(self, home: Any) -> None:
        assert self.experiment is not None
        self._requests = RequestInbox(requests_dir(home, self.experiment.id))

    def _take_requests(self, now: float) -> None:
        """Apply every waiting request (oldest first) and delete it."""
        if self._requests is None:
            return
        for path in self._requests.due(now):
            try:
                limits = read_request(path)
            except ConfigError as exc:
                self._event(EventKind.EXPERIMENT, f"ignored a change request: {exc}",
                            level=EventLevel.WARNING)
            else:
                self._set_limits(limits, "remotetune update")
            self._requests.done(path)

    def _set_limits(self, limits: Limits, by: str) -> None:
        old = describe_limits(self.config)
        self.config = limits.apply(self.config)
        for backend in self.backends:  # hosts without `slots:` follow trialConcurrency
            backend.set_concurrency(self.config.trial_concurrency)
        new = describe_limits(self.config)
        changes = [f"{key} {_shown(old[key])} -> {_shown(new[key])}"
                   for key in new if old[key] != new[key]]
        self._save_limits()
        self._event(EventKind.EXPERIMENT, f"limits changed by {by}: "
                    + (", ".join(changes) if changes else "no change"))

    def _save_limits(self) -> None:
        config = self.config
        self._save_experiment(config=dict(config.raw),
                              max_trial_number=config.max_trial_number,
                              max_experiment_duration=config.max_experiment_duration,
                              trial_concurrency=config.trial_concurrency)

    def _adopt_limits(self) -> None:
        """At start: a config given new limits (``resume --max-trials``) goes to the store."""
        exp = self.experiment
        assert exp is not None
        config = self.config
        stored = (exp.max_trial_number, exp.max_experiment_duration, exp.trial_concurrency)
        if stored == (config.max_trial_number, config.max_experiment_duration,
                      config.trial_concurrency):
            return
        self._save_limits()
        limits = describe_limits(config)
        self._event(EventKind.EXPERIMENT, "limits changed by remotetune resume: "
                    + ", ".join(f"{k} {_shown(v)}" for k, v in limits.items()))
