"""The ``slurm:`` mapping of a machines entry (a Slurm cluster reached through its login node).

Keys (all optional)::

    partition: gpu          account: proj42          qos: normal
    timeLimit: 2h           maxJobs: 32              sbatchArgs: ["--constraint=a100"]
    setup: [module load cuda/12.1]   # job script lines, before the trial's launcher starts
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from remotetune.config._fields import Section, describe
from remotetune.model import SlurmSpec

#: ``slurm:`` key -> SlurmSpec field.
SLURM_KEYS: Mapping[str, str] = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "timeLimit": "time_limit",
    "maxJobs": "max_jobs",
    "sbatchArgs": "sbatch_args",
    "setup": "setup",
}
_RENAMED = {"time": "timeLimit", "time_limit": "timeLimit", "timelimit": "timeLimit",
            "max_jobs": "maxJobs", "sbatch_args": "sbatchArgs", "args": "sbatchArgs",
            "gres": "sbatchArgs", "gpus": "sbatchArgs"}
# Options remotetune sets itself and relies on: a duplicate in sbatchArgs would win (sbatch
# takes the last) and break the trial's layout. --partition, --qos... are fine there: they
# come after the `slurm:` keys, so they win over them.
_OWN_OPTIONS = {
    "--gres": "trialGpuNumber sets --gres=gpu:N",
    "--gpus": "trialGpuNumber sets --gres=gpu:N",
    "-G": "trialGpuNumber sets --gres=gpu:N",
    "--output": "remotetune writes the job's output into the trial directory",
    "-o": "remotetune writes the job's output into the trial directory",
    "--error": "remotetune writes the job's output into the trial directory",
    "-e": "remotetune writes the job's output into the trial directory",
    "--chdir": "the job runs in its trial directory", "-D": "the job runs in its trial directory",
    "--parsable": "remotetune adds it", "--wrap": "remotetune writes the job script",
    "--array": "one trial is one job", "-a": "one trial is one job",
}
_OPTION_NAME = re.compile(r"^(--[A-Za-z][A-Za-z0-9-]*|-[A-Za-z])")


def parse_slurm(host: Section) -> SlurmSpec | None:
    """``host``'s ``slurm:`` mapping as a SlurmSpec, or None when it has none.

    ``slurm: {}`` (or ``slurm: true``) is a cluster that takes every default.
    """
    if not host.has("slurm"):
        return None
    raw = host.get("slurm")
    if raw is True or raw == {}:
        return SlurmSpec()
    if raw is None or raw is False:
        return None
    sec = host.section("slurm", what="a mapping of Slurm keys (partition:, account:, ...)")
    assert sec is not None
    sec.where = host.where
    for key in sec.data:
        if key in SLURM_KEYS:
            continue
        if key in _RENAMED:
            raise sec.fail(key, f"{key} is not a key of `slurm:`",
                           hint=f"did you mean {_RENAMED[key]}?")
        raise sec.unknown(key, SLURM_KEYS)
    return SlurmSpec(
        partition=sec.text("partition", example="gpu"),
        account=sec.text("account", example="proj42"),
        qos=sec.text("qos", example="normal"),
        time_limit=sec.seconds("timeLimit", positive=True, example='"2h"'),
        max_jobs=sec.integer("maxJobs", minimum=1, example="32"),
        sbatch_args=_sbatch_args(sec),
        setup=_lines(sec, "setup"),
    )


def _sbatch_args(sec: Section) -> tuple[str, ...]:
    value = sec.get("sbatchArgs")
    if value is None:
        return ()
    hint = 'write a list of sbatch options, one per item: `sbatchArgs: ["--constraint=a100"]`'
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise sec.fail("sbatchArgs", f"expected a list of strings, got {describe(value)}",
                       hint=hint)
    for item in value:
        if not item.startswith("-"):
            raise sec.fail("sbatchArgs", f"{item!r} is not an sbatch option",
                           hint="each item is one option, e.g. `--mem=16G`; write an option "
                           "and its value as one item joined by `=`")
        match = _OPTION_NAME.match(item)
        name = match.group(1) if match else item
        if name in _OWN_OPTIONS:
            raise sec.fail("sbatchArgs", f"{item!r} is set by remotetune",
                           hint=_OWN_OPTIONS[name])
    return tuple(value)


def _lines(sec: Section, key: str) -> tuple[str, ...]:
    value = sec.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(line for line in value.splitlines() if line.strip())
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise sec.fail(key, f"expected shell lines, got {describe(value)}",
                       hint="write a list of shell lines, or one multi-line string after "
                       f"`{key}: |`")
    return tuple(line for line in value if line.strip())


def slurm_to_public_dict(spec: SlurmSpec) -> dict[str, Any]:
    """``spec`` as a ``slurm:`` mapping (unset keys left out); parses back to ``spec``."""
    out: dict[str, Any] = {}
    for key, attr in SLURM_KEYS.items():
        value = getattr(spec, attr)
        if value is None or value == ():
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
