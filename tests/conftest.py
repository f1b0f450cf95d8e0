"""Shared pytest fixtures. Real OpenSSH servers come from :mod:`sshd` (tests/sshd.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sshd import SshServer

# Three "hosts" with different GPUs, for scheduler and end-to-end tests. Busy means above
# the default 10 % memory or utilisation threshold.
THREE_HOSTS_GPUS: tuple[list[dict[str, Any]], ...] = (
    [  # two idle GPUs
        {"name": "Fake A100", "memory_total": 40960, "memory_used": 0, "utilization": 0},
        {"name": "Fake A100", "memory_total": 40960, "memory_used": 0, "utilization": 0},
    ],
    [  # four GPUs, GPU 1 busy (memory) and GPU 3 busy (utilisation)
        {"name": "Fake V100", "memory_total": 16384, "memory_used": 0, "utilization": 0},
        {"name": "Fake V100", "memory_total": 16384, "memory_used": 9000, "utilization": 0},
        {"name": "Fake V100", "memory_total": 16384, "memory_used": 10, "utilization": 1},
        {"name": "Fake V100", "memory_total": 16384, "memory_used": 0, "utilization": 95},
    ],
    [  # one idle GPU
        {"name": "Fake T4", "memory_total": 15360, "memory_used": 0, "utilization": 0},
    ],
)


@pytest.fixture
def sshd_factory() -> Iterator[Callable[..., SshServer]]:
    """``start(**SshServer kwargs) -> SshServer``, started; all torn down after the test."""
    servers: list[SshServer] = []

    def start(**kwargs: Any) -> SshServer:
        server = SshServer(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.destroy()


@pytest.fixture
def ssh_host(sshd_factory: Callable[..., SshServer]) -> SshServer:
    """One sshd with two idle fake GPUs; ``ssh_host.spec()`` is a HostSpec reaching it."""
    return sshd_factory()


@pytest.fixture
def three_ssh_hosts(sshd_factory: Callable[..., SshServer]) -> list[SshServer]:
    """Three sshd instances with the GPUs of :data:`THREE_HOSTS_GPUS`."""
    return [sshd_factory(gpus=gpus) for gpus in THREE_HOSTS_GPUS]
