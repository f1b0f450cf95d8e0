"""Requests to change a running experiment, left by the CLI for its controller.

The controller is the only writer of an experiment's state, so ``remotetune update`` does
not touch the store: it checks the new limits (:func:`remotetune.config.parse_limits`) and
writes them, atomically, as one JSON file in ``$REMOTETUNE_HOME/requests/EXP/``. The
controller looks at that directory at most every ~0.5 s, applies each file in name order
(the name starts with the time in nanoseconds), records an event, and deletes the file.

File format: ``{"limits": {"maxTrialNumber": 20, "maxExperimentDuration": "3h",
"trialConcurrency": 2}, "created_at": 1700000000.0}`` (any subset of the limits).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remotetune.config import Limits, parse_limits
from remotetune.errors import ConfigError


def requests_dir(home: Path, experiment_id: str) -> Path:
    return Path(home) / "requests" / experiment_id


def write_request(home: Path, experiment_id: str, limits: Mapping[str, Any]) -> Path:
    """Check ``limits`` and leave them for the controller; returns the request's path."""
    parse_limits(limits)  # ConfigError before anything is written
    directory = requests_dir(home, experiment_id)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
    tmp = directory / f".{name}.tmp"  # not *.json: the controller never reads it half-written
    body = json.dumps({"limits": dict(limits), "created_at": time.time()}, allow_nan=False)
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    path = directory / name
    os.replace(tmp, path)
    return path


def pending(directory: Path) -> list[Path]:
    """The requests waiting in ``directory``, oldest first."""
    try:
        names = sorted(n for n in os.listdir(directory)
                       if n.endswith(".json") and not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [directory / n for n in names]


def read_request(path: Path) -> Limits:
    """The limits in one request file; ConfigError when it is not a valid request."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read it: {exc}", file=path.name) from None
    if not isinstance(data, dict) or not isinstance(data.get("limits"), dict):
        raise ConfigError('expected {"limits": {...}}', file=path.name)
    return parse_limits(data["limits"], file=path.name)


class RequestInbox:
    """The controller's side: a cheap look at the directory at most every ``interval`` s."""

    def __init__(self, directory: Path, interval: float = 0.5) -> None:
        self.directory = directory
        self.interval = interval
        self._next = float("-inf")

    def due(self, now: float) -> list[Path]:
        if now < self._next:
            return []
        self._next = now + self.interval
        return pending(self.directory)

    @staticmethod
    def done(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
