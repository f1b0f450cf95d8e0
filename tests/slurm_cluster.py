"""A one-node Slurm cluster in a container (docker/slurm) for the tests, reached over SSH.

``SlurmCluster.up()`` builds the offline base (docker/build-base.sh) when missing and the
image (cached layers: seconds when nothing changed), starts the container with its sshd on
a free 127.0.0.1 port, writes a client key and known_hosts, and waits until ``sinfo``
shows the node idle. Tests get it through the session-scoped fixture ``slurm``: import
:func:`slurm_fixture` into the test module.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_cluster import dc

from remotetune.model import HostSpec, SlurmSpec

SLURM_DOCKERFILE = dc.DOCKER_DIR / "slurm" / "Dockerfile"
SLURM_IMAGE = "remotetune/slurm:test"
USER = "trial"
GPUS = 4  # gres gpu:4 in docker/slurm/slurm.conf.in
NODE = "slurm1"


def build_image() -> None:
    """The offline base (once; see docker/build-base.sh), then the Slurm image.

    ``docker build`` always runs: its layer cache makes it a few seconds when nothing
    changed (the apt layer is reused), and it picks up edits to docker/slurm/.
    """
    dc._run(["bash", str(dc.BUILD_BASE)], env={"REMOTETUNE_BASE_IMAGE": dc.BASE_IMAGE},
            timeout=1800)
    dc._run(["docker", "build", "-q", "--force-rm", "-f", str(SLURM_DOCKERFILE),
             "--build-arg", f"BASE_IMAGE={dc.BASE_IMAGE}", "-t", SLURM_IMAGE,
             str(dc.REPO_ROOT)], timeout=1800)


class SlurmCluster:
    def __init__(self, name: str, workdir: Path, port: int) -> None:
        self.name = name
        self.workdir = workdir
        self.port = port
        self.identity_file = workdir / "id_ed25519"
        self.known_hosts_file = workdir / "known_hosts"

    @classmethod
    def up(cls, name: str | None = None, *, timeout: float = 120.0) -> SlurmCluster:
        build_image()
        workdir = Path(tempfile.mkdtemp(prefix="rt-slurm-"))
        (port,) = dc.free_ports(1)
        cluster = cls(name or f"rt-slurm-{os.getpid()}", workdir, port)
        dc._run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", cluster.name,
                 "-f", str(cluster.identity_file)])
        public = cluster.identity_file.with_suffix(".pub").read_text().strip()
        dc._run(["docker", "rm", "-f", cluster.name], check=False)
        dc._run(["docker", "run", "-d", "--name", cluster.name, "--hostname", NODE,
                 "-p", f"127.0.0.1:{port}:22", "-e", f"AUTHORIZED_KEYS={public}",
                 SLURM_IMAGE])
        try:
            cluster.wait_ready(timeout)
            cluster._write_known_hosts()
        except BaseException:
            cluster.down()
            raise
        return cluster

    def wait_ready(self, timeout: float) -> None:
        """sshd answers and ``sinfo`` shows the node idle."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if dc.sshd_answers(self.port):
                result = self.exec("sinfo --noheader --format=%T", check=False)
                last = (result.stdout + result.stderr).strip()
                if last == "idle":
                    return
            time.sleep(0.5)
        logs = dc._run(["docker", "logs", "--tail", "30", self.name], check=False)
        raise dc.ClusterError(f"Slurm node not idle after {timeout} s (sinfo: {last!r})\n"
                              f"{logs.stdout}{logs.stderr}")

    def exec(self, command: str, *, user: str = USER, check: bool = True):  # noqa: ANN201
        """Run a shell command in the container (as ``user``); a CompletedProcess."""
        return dc._run(["docker", "exec", "-u", user, self.name, "bash", "-c", command],
                       check=check, timeout=120)

    def _write_known_hosts(self) -> None:
        keys = self.exec("cat /etc/ssh/ssh_host_*_key.pub", user="root").stdout.splitlines()
        lines = [f"[127.0.0.1]:{self.port} {' '.join(k.split()[:2])}" for k in keys if k]
        self.known_hosts_file.write_text("\n".join(lines) + "\n")

    def host_spec(self, slurm: SlurmSpec | None = None, **kwargs: object) -> HostSpec:
        """The login node as a machines.yml entry would give it."""
        return HostSpec(name="hpc", host="127.0.0.1", port=self.port, user=USER,
                        identity_file=str(self.identity_file), use_agent=False,
                        known_hosts_file=str(self.known_hosts_file),
                        workdir="/home/trial/remotetune", slurm=slurm or SlurmSpec(),
                        **kwargs)  # type: ignore[arg-type]

    def down(self) -> None:
        dc._run(["docker", "rm", "-f", self.name], check=False)
        for path in self.workdir.iterdir():
            path.unlink()
        self.workdir.rmdir()


@pytest.fixture(scope="session", name="slurm")
def slurm_fixture() -> Iterator[SlurmCluster]:
    cluster = SlurmCluster.up()
    try:
        yield cluster
    finally:
        cluster.down()
