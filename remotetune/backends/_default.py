"""The backends an experiment gets from its machines file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from remotetune.backends._base import Backend
from remotetune.model import HostSpec

if TYPE_CHECKING:
    from remotetune.config import ExperimentConfig


def default_backends(config: ExperimentConfig, hosts: Sequence[HostSpec], *, home: Path,
                     gpu_refresh: float = 10.0, host_state_interval: float = 1.0
                     ) -> list[Backend]:
    """Entries with a `slurm:` mapping go to a SlurmBackend, the rest to the host pool.

    ``home`` is REMOTETUNE_HOME (the local machine's host workdir is under it);
    ``gpu_refresh``: seconds between nvidia-smi runs per host.
    """
    from remotetune.backends.hostpool import HostPoolBackend

    plain = [h for h in hosts if h.slurm is None]
    clusters = [h for h in hosts if h.slurm is not None]
    backends: list[Backend] = []
    if plain or not clusters:
        backends.append(HostPoolBackend(
            plain, trial_gpu_number=config.trial_gpu_number,
            default_slots=config.trial_concurrency,  # a host without `slots:` (docs/config.md)
            poll_interval=config.poll_interval, gpu_refresh=gpu_refresh,
            host_state_interval=host_state_interval,
            local_workdir=str(home / "host"),
            local_code_dir=None if config.local_snapshot else str(config.trial_code_directory)))
    if clusters:
        from remotetune.backends.slurm import SlurmBackend

        backends.append(SlurmBackend(
            clusters, trial_gpu_number=config.trial_gpu_number,
            default_max_jobs=config.trial_concurrency, poll_interval=config.poll_interval,
            host_state_interval=host_state_interval))
    return backends
