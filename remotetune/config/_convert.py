"""``remotetune convert``: an experiment file (NNI v1 or v2) as the v2 file remotetune reads.

The file is checked first with the loader itself (every problem, with the v1 file's lines),
then written back in v2 form: the search space stays a file reference, relative paths stay
relative to the file's directory, secrets become ``passwordEnv`` / ``passphraseEnv`` names,
and the NNI keys remotetune ignores are left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from remotetune.config._experiment import EXPERIMENT_KEYS, NNI_IGNORED_KEYS, _parse, to_v2
from remotetune.config._fields import Source
from remotetune.config._machines import read_text
from remotetune.config._nni_v1 import is_v1
from remotetune.config._yaml import load_yaml


@dataclass(frozen=True)
class Converted:
    """A converted file: its v2 ``data`` and ``text``, and the variables to export."""

    data: Mapping[str, Any]
    text: str
    secret_variables: tuple[str, ...]
    was_v1: bool


def convert_file(path: str | os.PathLike[str]) -> Converted:
    """The v2 form of the experiment file at ``path`` (raises ConfigError on a bad file)."""
    file = os.fspath(path)
    loaded = load_yaml(read_text(file), file=file)
    src = Source(file, Path(os.path.abspath(file)).parent, loaded.lines)
    if loaded.data is None or not is_v1(loaded.data):
        _parse(loaded.data, src)  # raises what is wrong with it
        data = dict(loaded.data)
    else:
        data, v2_src = to_v2(loaded.data, src, secrets_to_env=True)
        _parse(data, v2_src)
    data = _ordered({k: v for k, v in data.items() if k not in NNI_IGNORED_KEYS})
    secrets = tuple(_secret_variables(data))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return Converted(data, text, secrets, was_v1=is_v1(loaded.data))


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    """The keys in the order docs/config.md lists them (unknown ones last)."""
    rank = {key: i for i, key in enumerate(EXPERIMENT_KEYS)}
    return dict(sorted(data.items(), key=lambda item: rank.get(item[0], len(rank))))


def _secret_variables(data: Mapping[str, Any]) -> list[str]:
    service = data.get("trainingService")
    machines = service.get("machineList") if isinstance(service, Mapping) else None
    out: list[str] = []
    for entry in machines if isinstance(machines, list) else []:
        for key in ("passwordEnv", "passphraseEnv"):
            if isinstance(entry, Mapping) and isinstance(entry.get(key), str):
                out.append(entry[key])
    return out
