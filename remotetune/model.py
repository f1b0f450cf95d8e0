"""Records and states shared by every part of remotetune.

Standard library only. Everything here is a frozen dataclass or an enum: no magic dicts.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class TrialStatus(str, enum.Enum):
    """A trial's state, with NNI's names where NNI has one.

    WAITING        chosen by the tuner, not yet placed on a host.
    RUNNING        launched on a host (its process may not have started yet).
    SUCCEEDED      exited with code 0.
    FAILED         exited non-zero, could not be launched, or its setup failed.
    EARLY_STOPPED  stopped by an assessor or for running past ``maxTrialDuration``.
    USER_CANCELED  stopped by the user (Ctrl-C and "stop the trials").
    SYS_CANCELED   stopped by remotetune itself (the experiment ended while it ran).
    LOST           its host stayed unreachable past the grace period; the trial was
                   re-queued as a new attempt (remotetune's own state, not NNI's).
    """

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EARLY_STOPPED = "EARLY_STOPPED"
    USER_CANCELED = "USER_CANCELED"
    SYS_CANCELED = "SYS_CANCELED"
    LOST = "LOST"

    def is_finished(self) -> bool:
        return self not in (TrialStatus.WAITING, TrialStatus.RUNNING)

    def counts_as_done(self) -> bool:
        """Counts toward ``maxTrialNumber`` (NNI counts succeeded, failed and stopped trials)."""
        return self.is_finished() and self is not TrialStatus.LOST


class ExperimentStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    DONE = "DONE"  # every trial it was going to run has finished
    STOPPED = "STOPPED"  # stopped by the user or a signal; can be resumed
    FAILED = "FAILED"  # the controller hit an error it could not carry on from

    def is_finished(self) -> bool:
        return self is not ExperimentStatus.RUNNING


class OptimizeMode(str, enum.Enum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self is OptimizeMode.MAXIMIZE else a < b


class MetricKind(str, enum.Enum):
    INTERMEDIATE = "PERIODICAL"  # NNI's name
    FINAL = "FINAL"


@dataclass(frozen=True)
class MetricPoint:
    """One line a trial wrote to its metrics file."""

    trial_id: str
    seq: int  # the trial's own counter: 0, 1, 2, ... over all its reports
    kind: MetricKind
    value: float  # the number, or ``default`` of a dict metric
    raw: Any  # what the trial reported (a number or a dict)
    time: float  # epoch seconds on the host

    def to_json(self) -> str:
        return json.dumps(self.raw, sort_keys=True)


def metric_value(raw: Any) -> float:
    """The number a tuner sees for a reported metric: a number, or a dict's ``default``.

    Raises ``ValueError`` for anything else (the caller records the garbage and moves on).
    """
    value = raw.get("default") if isinstance(raw, Mapping) else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = repr(raw) if not isinstance(raw, (dict, list, str)) else type(raw).__name__
        raise ValueError(
            f"metric must be a number or a dict with a numeric 'default', got {shown[:80]}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("metric is out of the range of a float") from None
    if math.isnan(number):
        raise ValueError("metric is NaN")
    if math.isinf(number):
        raise ValueError("metric is infinite")
    return number


@dataclass(frozen=True)
class TrialRecord:
    """A trial as the store knows it. Tuners and the view get these, read-only."""

    id: str
    experiment_id: str
    sequence: int
    parameters: Mapping[str, Any]
    status: TrialStatus
    parameter_id: int = 0  # the tuner's id for this configuration (NNI's parameter_id)
    attempt: int = 1  # 2+ when re-queued after its host was lost
    retry_of: str | None = None  # the LOST (or retried FAILED) trial this one repeats
    host: str | None = None
    gpus: tuple[int, ...] = ()
    pid: int | None = None
    trial_dir: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    final: float | None = None
    best_intermediate: float | None = None
    latest_intermediate: float | None = None
    intermediate_count: int = 0
    message: str | None = None  # why it failed or was stopped
    stdout_tail: str | None = None
    stderr_tail: str | None = None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str = ""
    memory_total_mib: float = 0.0
    memory_used_mib: float = 0.0
    utilization_pct: float = 0.0

    @property
    def memory_used_pct(self) -> float:
        if self.memory_total_mib <= 0:
            return 0.0
        return 100.0 * self.memory_used_mib / self.memory_total_mib


@dataclass(frozen=True)
class SlurmSpec:
    """The ``slurm:`` mapping of a machines entry: the host is a Slurm cluster's login node.

    Each trial is one sbatch job; ``None`` leaves the choice to the cluster's defaults.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: float | None = None  # seconds; None: from maxTrialDuration, else the partition's
    max_jobs: int | None = None  # jobs queued or running at once; None: trialConcurrency
    sbatch_args: tuple[str, ...] = ()  # extra sbatch options, each one argv word
    setup: tuple[str, ...] = ()  # job script lines before the launcher (e.g. `module load`)


@dataclass(frozen=True)
class HostSpec:
    """One entry of ``machines.yml`` (or the embedded local machine)."""

    name: str  # unique label used in the store and the view (defaults to host or host:port)
    host: str = "localhost"
    port: int | None = None  # None: from ~/.ssh/config, else 22
    user: str | None = None
    local: bool = False  # run on this machine without SSH
    identity_file: str | None = None
    passphrase_env: str | None = None  # name of the env var holding the key's passphrase
    password_env: str | None = None  # name of the env var holding the password
    use_agent: bool = True
    accept_unknown_host_key: bool = False
    known_hosts_file: str | None = None
    ssh_config_file: str | None = None
    gpu_indices: tuple[int, ...] | None = None  # None: all GPUs the host has
    max_trials_per_gpu: int = 1
    use_active_gpu: bool = False
    active_gpu_memory_pct: float = 10.0  # a GPU is active (busy) above either threshold
    active_gpu_util_pct: float = 10.0
    slots: int | None = None  # CPU-only capacity; None: trialConcurrency (every host)
    python: str = "python3"
    setup: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None  # None: ~/.remotetune/hosts on the host
    connect_timeout: float = 10.0
    slurm: SlurmSpec | None = None  # set: the host is a Slurm login node, trials are jobs
    # Not a machines.yml key: variables this host's processes must not inherit from the
    # controller (for a local host, every passwordEnv/passphraseEnv variable of the run).
    hidden_env: tuple[str, ...] = field(default=(), metadata={"machines_key": False})


@dataclass(frozen=True)
class Placement:
    """Where the scheduler put a trial."""

    host: str
    gpus: tuple[int, ...] = ()
    cuda_visible_devices: str | None = None  # None: leave unset (no GPU scheduling)


@dataclass(frozen=True)
class ExperimentRecord:
    id: str
    name: str
    status: ExperimentStatus
    config: Mapping[str, Any]  # the experiment file as loaded (search space included)
    config_file: str | None = None
    machines: tuple[Mapping[str, Any], ...] = ()  # host specs as dicts, secrets never included
    tuner: str = ""
    optimize_mode: OptimizeMode = OptimizeMode.MAXIMIZE
    max_trial_number: int | None = None
    max_experiment_duration: float | None = None
    trial_concurrency: int = 1
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    message: str | None = None
    source: str = "remotetune"  # or "nni" for imported experiments


class EventKind(str, enum.Enum):
    TRIAL = "trial"
    HOST = "host"
    EXPERIMENT = "experiment"


class EventLevel(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class EventRecord:
    experiment_id: str
    time: float
    kind: str  # short category: "trial", "host", "experiment", "error"
    message: str
    trial_id: str | None = None
    host: str | None = None
    level: str = "info"  # "info", "warning", "error"


@dataclass(frozen=True)
class HostState:
    """What the controller last knew of a host (written to the store for `view`)."""

    experiment_id: str
    host: str
    reachable: bool
    gpus: tuple[GpuInfo, ...] = ()
    gpu_holders: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # gpu -> trial ids
    slots: int = 0
    running: int = 0
    message: str | None = None
    updated_at: float | None = None
