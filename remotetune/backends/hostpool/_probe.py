"""The host probe: can this host run trials? One copy, used by `remotetune check` and by
:meth:`HostSession.open` before it ships anything.

The probe itself is :func:`remotetune.commands.probe_command` (the interpreter's version, then
the workdir created, write-probed and its free bytes, as one JSON line). This module reads its
output and turns it into the one verdict both callers report.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

MIN_PYTHON = (3, 8)
MIN_FREE_BYTES = 1 << 20  # below this the host is "disk full" for remotetune


class ProbeFailure(str, enum.Enum):
    NO_PYTHON = "no python"
    OLD_PYTHON = "python too old"
    WORKDIR = "workdir not writable"
    DISK_FULL = "disk full"


@dataclass(frozen=True)
class HostFacts:
    """What the probe found; ``version`` is None when the interpreter could not be run."""

    version: str | None = None
    workdir: str | None = None
    writable: bool = False
    error: str | None = None
    free: int | None = None
    output: str = ""  # the probe's own output when it gave no facts (for the message)


@dataclass(frozen=True)
class ProbeProblem:
    failure: ProbeFailure
    message: str
    hint: str


def parse_probe(text: str) -> HostFacts:
    """The facts in the probe's output (the last JSON object holding a ``version``)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "version" in value:
            return _facts(value)
    return HostFacts(output=text)


def facts_of(value: Any) -> HostFacts:
    """The facts of a probe run inside the agent (its ``out`` dict)."""
    if isinstance(value, dict) and "version" in value:
        return _facts(value)
    return HostFacts(output=f"the agent's probe answered {value!r}")


def _facts(value: dict[str, Any]) -> HostFacts:
    free = value.get("free")
    return HostFacts(
        version=str(value["version"]),
        workdir=value.get("workdir"),
        writable=bool(value.get("writable")),
        error=value.get("error"),
        free=int(free) if isinstance(free, int) else None,
    )


def last_line(output: str) -> str:
    """The one line of ``output`` worth showing: the last one that is not traceback noise."""
    for line in reversed(output.strip().splitlines()):
        text = line.strip()
        if text and not line.startswith((" ", "\t")) and not text.startswith("Traceback"):
            return text
    return ""


def probe_problem(python: str, facts: HostFacts) -> ProbeProblem | None:
    """Why this host cannot run trials, or None when it can."""
    if facts.version is None:
        detail = last_line(facts.output) or "no output"
        return ProbeProblem(
            ProbeFailure.NO_PYTHON,
            f"no python: `{python}` cannot be run on the host ({detail})",
            "install Python 3.8+ there or set `python:` in machines.yml to its path",
        )
    if tuple(int(p) for p in facts.version.split(".")[:2] if p.isdigit()) < MIN_PYTHON:
        return ProbeProblem(
            ProbeFailure.OLD_PYTHON,
            f"`{python}` is Python {facts.version}; remotetune needs 3.8 or newer",
            "set `python:` in machines.yml to a newer interpreter",
        )
    if not facts.writable:
        return ProbeProblem(
            ProbeFailure.WORKDIR,
            f"workdir {facts.workdir} is not writable: {facts.error}",
            "set `workdir:` in machines.yml to a directory the user can write",
        )
    if facts.free is not None and facts.free < MIN_FREE_BYTES:
        return ProbeProblem(
            ProbeFailure.DISK_FULL,
            f"disk full: {facts.free // 1024} KiB free in {facts.workdir}",
            "free some space on the host or point `workdir:` at a larger disk",
        )
    return None
