"""The event loop that ties tuner, backends, trial book and store together."""

from remotetune.controller._book import ALLOWED, TransitionError, TrialBook
from remotetune.controller._clock import Clock, SystemClock
from remotetune.controller._controller import (
    Controller,
    ControllerOptions,
    StopMode,
    ViewState,
)

__all__ = [
    "ALLOWED",
    "Clock",
    "Controller",
    "ControllerOptions",
    "StopMode",
    "SystemClock",
    "TransitionError",
    "TrialBook",
    "ViewState",
]
