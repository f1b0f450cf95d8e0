"""Time for the controller: read it, and wait for the next inbox item. Tests inject a fake."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Protocol

from remotetune.backends import Envelope


class Clock(Protocol):
    def now(self) -> float: ...

    def wait(self, inbox: queue.Queue[Envelope], timeout: float) -> Envelope | None:
        """The next inbox item, or ``None`` once ``timeout`` seconds passed without one."""


class SystemClock:
    def __init__(self, time_fn: Callable[[], float] = time.time) -> None:
        self._time = time_fn

    def now(self) -> float:
        return self._time()

    def wait(self, inbox: queue.Queue[Envelope], timeout: float) -> Envelope | None:
        try:
            return inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
