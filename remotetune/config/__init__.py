"""Experiment and machines files (NNI v2 keys, remotetune's own; NNI v1 files converted in
memory), read into typed settings.

Every error is a :class:`remotetune.errors.ConfigError` that names the file, the key, its
line and the fix. See docs/config.md for every key.
"""

from __future__ import annotations

from remotetune.config._convert import Converted, convert_file
from remotetune.config._experiment import (
    EXPERIMENT_KEYS,
    NNI_IGNORED_KEYS,
    ExperimentConfig,
    TunerSpec,
    load_experiment,
    load_experiment_then_check,
    parse_experiment,
)
from remotetune.config._fields import parse_duration
from remotetune.config._limits import LIMIT_KEYS, Limits, describe_limits, parse_limits
from remotetune.config._machines import (
    HOST_KEYS,
    NNI_HOST_KEYS,
    host_to_public_dict,
    load_machines,
    local_machine,
    parse_machines,
)

__all__ = [
    "EXPERIMENT_KEYS",
    "Converted",
    "HOST_KEYS",
    "LIMIT_KEYS",
    "Limits",
    "NNI_HOST_KEYS",
    "NNI_IGNORED_KEYS",
    "ExperimentConfig",
    "TunerSpec",
    "convert_file",
    "describe_limits",
    "host_to_public_dict",
    "load_experiment",
    "load_experiment_then_check",
    "load_machines",
    "local_machine",
    "parse_duration",
    "parse_experiment",
    "parse_limits",
    "parse_machines",
]
