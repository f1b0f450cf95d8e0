"""A fake remote cluster for integration tests: three sshd containers (docker-compose.yml).

Standard library only (subprocess drives ``docker`` and ``docker compose`` /
``docker-compose``), so tests can use it without remotetune.  ``docker/`` is not a Python
package (the name would shadow the Docker SDK): load this file by path, e.g.::

    spec = importlib.util.spec_from_file_location("remotetune_cluster", "docker/cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cluster = module.Cluster.up("rt-test")
    try:
        cluster.machines_yaml(tmp_path / "machines.yml")
        ...
    finally:
        cluster.down()

Faults the tests can inject, per host:

* ``stop`` / ``kill`` / ``start``: the whole machine goes away (SIGTERM or SIGKILL to every
  process in it) and comes back with the same filesystem, host keys and published port.
* ``disconnect`` / ``reconnect``: a network cut.  ``ip link set eth0 down`` inside the
  container drops every packet to and from it, on the private network *and* on the
  published 127.0.0.1 port (docker-proxy can no longer reach the container), while the
  processes keep running and keep writing, as with a pulled cable.  ``docker pause`` is
  not a cut (it freezes the processes: nothing would be written during the "cut"), and
  ``docker network disconnect`` removes the interface, so the address and the published
  port mapping may change on reconnect.
* ``restart_sshd``: sshd (the listener, and by default every open session) is killed; the
  container's entrypoint starts a new listener, like ``systemctl restart ssh``.  Processes
  started in their own session (``nohup``/``setsid``) keep running.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DOCKER_DIR = Path(__file__).resolve().parent
REPO_ROOT = DOCKER_DIR.parent
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
BUILD_BASE = DOCKER_DIR / "build-base.sh"
HOST_DOCKERFILE = DOCKER_DIR / "host" / "Dockerfile"

BASE_IMAGE = "remotetune/debian-base:bookworm"
HOST_IMAGE = "remotetune/host:fake-gpus"
HOSTS: tuple[str, ...] = ("host1", "host2", "host3")
USER = "trial"
#: The fake GPUs of each host in docker-compose.yml, as (name, busy) per index.
GPUS: Mapping[str, tuple[tuple[str, bool], ...]] = {
    "host1": (("Fake A100-SXM4-40GB", False), ("Fake A100-SXM4-40GB", False)),
    "host2": (("Fake RTX 3090", False), ("Fake RTX 3090", True)),
    "host3": (("Fake Tesla T4", False),),
}

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ClusterError(RuntimeError):
    """A docker or compose command failed, or a host did not come up in time."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host's sshd from this machine and from the private network."""

    name: str
    port: int
    hostname: str


def compose_command() -> tuple[str, ...]:
    """``docker compose`` (v2) when the plugin is there, else ``docker-compose`` (v1).

    ``REMOTETUNE_COMPOSE`` (e.g. ``"docker-compose"``) overrides the detection.
    """
    override = os.environ.get("REMOTETUNE_COMPOSE")
    if override:
        return tuple(shlex.split(override))
    if shutil.which("docker") is not None:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose") is not None:
        return ("docker-compose",)
    raise ClusterError(
        "neither `docker compose` (v2) nor `docker-compose` (v1) is installed; "
        "install docker-compose (apt-get install docker-compose) or the compose plugin"
    )


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 600.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    logger.debug("running %s", shlex.join(argv))
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=None if env is None else {**os.environ, **env},
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{shlex.join(argv)}` did not finish within {timeout} s") from exc
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise ClusterError(f"`{shlex.join(argv)}` exited with {result.returncode}:\n{tail}")
    return result


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def sshd_answers(port: int, *, host: str = "127.0.0.1", timeout: float = 3.0) -> bool:
    """True when an SSH server sends its banner on ``host:port``.

    Reading the banner matters: docker-proxy accepts connections on a published port even
    when nothing listens inside the container (it closes them right after).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def build_images(*, base_image: str = BASE_IMAGE, host_image: str = HOST_IMAGE) -> None:
    """Build the offline base (once; see build-base.sh) and the fake-GPU host image.

    ``docker build`` always runs: its layer cache makes it a few seconds when nothing
    changed, and it picks up edits to the entrypoint or to tests/bin/nvidia-smi.
    """
    started = time.monotonic()
    _run(["bash", str(BUILD_BASE)], env={"REMOTETUNE_BASE_IMAGE": base_image}, timeout=1800)
    _run(
        [
            "docker", "build", "-q", "--force-rm",
            "-f", str(HOST_DOCKERFILE),
            "--build-arg", f"BASE_IMAGE={base_image}",
            "--build-arg", "FAKE_GPUS=1",
            "-t", host_image,
            str(REPO_ROOT),
        ],
        timeout=1800,
    )  # fmt: skip
    logger.info("images ready in %.1f s", time.monotonic() - started)


class Cluster:
    """Three fake GPU hosts brought up by docker compose under one project name."""

    def __init__(
        self,
        project: str,
        workdir: Path,
        endpoints: Mapping[str, Endpoint],
        *,
        compose: Sequence[str],
        host_image: str = HOST_IMAGE,
        owns_workdir: bool = False,
    ) -> None:
        self.project = project
        self.workdir = workdir
        self.endpoints: dict[str, Endpoint] = dict(endpoints)
        self.compose = tuple(compose)
        self.host_image = host_image
        self._owns_workdir = owns_workdir

    # ----------------------------------------------------------------- bring-up

    @classmethod
    def up(
        cls,
        project: str,
        *,
        workdir: str | os.PathLike[str] | None = None,
        ports: Mapping[str, int] | None = None,
        build: bool = True,
        timeout: float = 120.0,
    ) -> Cluster:
        """Build the images if needed, start host1..host3 and wait until each sshd answers.

        ``project`` is the compose project name (lower case letters, digits, ``-``, ``_``);
        a leftover project of that name is removed first.  ``workdir`` receives the client
        key (``id_ed25519``) and ``known_hosts``; a temporary directory by default (removed
        by :meth:`down`).  ``ports`` maps host name to the ssh port published on
        127.0.0.1; free ports are picked by default so that clusters can run side by side.
        """
        if not _PROJECT_RE.match(project):
            raise ClusterError(
                f"bad compose project name {project!r}: use lower case letters, digits, "
                "'-' and '_', starting with a letter or digit"
            )
        owns = workdir is None
        root = (
            Path(workdir)
            if workdir is not None
            else Path(tempfile.mkdtemp(prefix=f"rt-{project}-"))
        )
        root.mkdir(parents=True, exist_ok=True)
        chosen = (
            dict(ports)
            if ports is not None
            else dict(zip(HOSTS, free_ports(len(HOSTS)), strict=True))
        )
        missing = [name for name in HOSTS if name not in chosen]
        if missing:
            raise ClusterError(f"no port given for {', '.join(missing)}")
        endpoints = {name: Endpoint(name, chosen[name], name) for name in HOSTS}
        if build:
            build_images()
        cluster = cls(project, root, endpoints, compose=compose_command(), owns_workdir=owns)
        cluster._make_client_key()
        started = time.monotonic()
        cluster._compose("down", "--remove-orphans", "-v", "-t", "1")
        cluster._compose("up", "-d", "--no-build", "--force-recreate")
        for name in HOSTS:
            cluster.wait_ssh(name, timeout=timeout)
        cluster.write_known_hosts()
        logger.info("cluster %s up in %.1f s", project, time.monotonic() - started)
        return cluster

    def down(self) -> None:
        """Remove the containers and the network (and the workdir if it was temporary)."""
        self._compose("down", "--remove-orphans", "-v", "-t", "1")
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # ------------------------------------------------------------------- access

    @property
    def identity_file(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.workdir / "known_hosts"

    def port(self, host: str) -> int:
        return self._endpoint(host).port

    def container(self, host: str) -> str:
        """The container id of ``host`` (running or not)."""
        self._endpoint(host)
        result = _run(
            [
                "docker", "ps", "-aq",
                "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={host}",
            ]
        )  # fmt: skip
        ids = result.stdout.split()
        if len(ids) != 1:
            raise ClusterError(
                f"expected one container for {host} in project {self.project}, found {ids}"
            )
        return ids[0]

    def address(self, host: str) -> str:
        """The host's IP address on the private network (from the other containers)."""
        result = _run(
            [
                "docker", "inspect", "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                self.container(host),
            ]
        )  # fmt: skip
        addresses = result.stdout.split()
        if not addresses:
            raise ClusterError(f"{host} has no address (is it running?)")
        return addresses[0]

    def network(self) -> str:
        """The name of the cluster's private Docker network (for ``docker run --network``)."""
        result = _run(
            [
                "docker", "network", "ls", "-q",
                "--filter", f"label=com.docker.compose.project={self.project}",
                "--format", "{{.Name}}",
            ]
        )  # fmt: skip
        names = result.stdout.split()
        if len(names) != 1:
            raise ClusterError(f"expected one network for project {self.project}, found {names}")
        return names[0]

    def ssh_argv(self, host: str, command: str, *, connect_timeout: float = 5.0) -> list[str]:
        """An OpenSSH client command line running ``command`` on ``host`` as ``trial``."""
        return [
            "ssh",
            "-i", str(self.identity_file),
            "-o", f"UserKnownHostsFile={self.known_hosts_file}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(connect_timeout))}",
            "-p", str(self.port(host)),
            f"{USER}@127.0.0.1",
            command,
        ]  # fmt: skip

    def ssh(
        self, host: str, command: str, *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` through the published port with the OpenSSH client."""
        return _run(self.ssh_argv(host, command), check=check, timeout=timeout)

    def exec(
        self,
        host: str,
        cmd: str | Sequence[str],
        *,
        user: str = "root",
        check: bool = True,
        timeout: float | None = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """``docker exec`` in ``host`` (a string runs through ``sh -c``); not over SSH."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return _run(
            ["docker", "exec", "-u", user, self.container(host), *argv],
            check=check,
            timeout=timeout,
        )

    def wait_ssh(self, host: str, *, timeout: float = 60.0) -> None:
        """Block until ``host``'s sshd sends its banner on the published port."""
        port = self.port(host)
        deadline = time.monotonic() + timeout
        while not sshd_answers(port, timeout=2.0):
            if time.monotonic() > deadline:
                logs = _run(["docker", "logs", "--tail", "20", self.container(host)], check=False)
                raise ClusterError(
                    f"sshd on {host} (127.0.0.1:{port}) did not answer within {timeout} s; "
                    f"container log:\n{logs.stdout}{logs.stderr}"
                )
            time.sleep(0.2)

    def machines_yaml(
        self,
        path: str | os.PathLike[str],
        *,
        hosts: Sequence[str] = HOSTS,
        python: str = "python3",
        gpu_indices: Mapping[str, Sequence[int]] | None = None,
        extra: Mapping[str, str | int | bool] | None = None,
        private_network: bool = False,
        key_dir: str | None = None,
    ) -> Path:
        """Write a remotetune machines.yml for ``hosts`` (all three by default).

        ``gpu_indices`` restricts hosts to some GPUs; ``extra`` adds scalar keys to every
        entry (e.g. ``{"connectTimeout": 5}``).  For a controller running in a container
        on the cluster's network (:meth:`network`), ``private_network=True`` addresses the
        hosts by name on port 22, and ``key_dir`` is where ``id_ed25519`` and
        ``known_hosts`` are mounted in that container.
        """
        identity = str(self.identity_file)
        known_hosts = str(self.known_hosts_file)
        if key_dir is not None:
            identity = f"{key_dir.rstrip('/')}/{self.identity_file.name}"
            known_hosts = f"{key_dir.rstrip('/')}/{self.known_hosts_file.name}"
        lines = ["machines:"]
        for name in hosts:
            endpoint = self._endpoint(name)
            lines += [
                f"  - name: {name}",
                f"    host: {endpoint.hostname if private_network else '127.0.0.1'}",
                f"    port: {22 if private_network else endpoint.port}",
                f"    user: {USER}",
                f"    identityFile: {_yaml_str(identity)}",
                f"    knownHostsFile: {_yaml_str(known_hosts)}",
                f"    python: {_yaml_str(python)}",
            ]
            if gpu_indices is not None and name in gpu_indices:
                indices = ", ".join(str(int(i)) for i in gpu_indices[name])
                lines.append(f"    gpuIndices: [{indices}]")
            for key, value in (extra or {}).items():
                lines.append(f"    {key}: {_yaml_scalar(value)}")
        target = Path(path)
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target

    # ------------------------------------------------------------------- faults

    def stop(self, host: str, *, timeout: int = 10) -> None:
        """``docker stop``: SIGTERM to everything in the host, SIGKILL after ``timeout`` s."""
        _run(["docker", "stop", "-t", str(timeout), self.container(host)])

    def kill(self, host: str) -> None:
        """``docker kill``: the host dies at once (SIGKILL), like a power cut."""
        _run(["docker", "kill", self.container(host)])

    def start(self, host: str, *, timeout: float = 60.0) -> None:
        """Start a stopped or killed host again and wait for its sshd."""
        _run(["docker", "start", self.container(host)])
        self.wait_ssh(host, timeout=timeout)

    def disconnect(self, host: str) -> None:
        """Cut ``host`` off the network (see the module docstring); processes keep running.

        The routes are saved in the container, because taking the link down drops them.
        """
        self.exec(
            host,
            "set -e; ip -4 route show > /run/remotetune-routes; ip link set eth0 down",
        )

    def reconnect(self, host: str, *, timeout: float = 30.0) -> None:
        """Undo :meth:`disconnect` (link up, routes back) and wait for sshd to answer."""
        self.exec(
            host,
            "set -e; ip link set eth0 up;"
            " if [ -f /run/remotetune-routes ]; then"
            "   while read -r route; do ip route replace $route || true; done"
            "     < /run/remotetune-routes;"
            "   rm -f /run/remotetune-routes;"
            " fi",
        )
        self.wait_ssh(host, timeout=timeout)

    def restart_sshd(self, host: str, *, drop_sessions: bool = True, timeout: float = 30.0) -> None:
        """Kill sshd on ``host``; the entrypoint starts a new one.

        With ``drop_sessions`` (default) every open SSH connection is cut as well, so a
        client must reconnect; otherwise only the listener restarts and open sessions
        stay, as with ``systemctl restart ssh``.
        """
        old = self.exec(host, "cat /run/sshd.pid").stdout.strip()
        children = f"$(ps -o pid= --ppid {old})" if drop_sessions else ""
        self.exec(host, f"kill -TERM {old} {children}")
        # Wait for the new listener: probing earlier could still reach the old one.
        deadline = time.monotonic() + timeout
        while True:
            now = self.exec(host, "cat /run/sshd.pid 2>/dev/null", check=False).stdout.strip()
            if now and now != old:
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"sshd on {host} did not come back within {timeout} s")
            time.sleep(0.1)
        self.wait_ssh(host, timeout=timeout)

    # ---------------------------------------------------------------- internals

    def _endpoint(self, host: str) -> Endpoint:
        try:
            return self.endpoints[host]
        except KeyError:
            raise ClusterError(
                f"unknown host {host!r}: this cluster has {', '.join(self.endpoints)}"
            ) from None

    def _compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "REMOTETUNE_HOST_IMAGE": self.host_image,
            "REMOTETUNE_AUTHORIZED_KEYS": self._public_key(),
            **{
                f"REMOTETUNE_{name.upper()}_PORT": str(e.port) for name, e in self.endpoints.items()
            },
        }
        return _run(
            [*self.compose, "-f", str(COMPOSE_FILE), "-p", self.project, *args],
            env=env,
            timeout=300,
        )

    def _make_client_key(self) -> None:
        if not self.identity_file.exists():
            _run(
                [
                    "ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                    "-C", f"remotetune-{self.project}",
                    "-f", str(self.identity_file),
                ]
            )  # fmt: skip
        self.identity_file.chmod(0o600)

    def _public_key(self) -> str:
        path = self.identity_file.with_suffix(".pub")
        return path.read_text(encoding="utf-8").strip() if path.exists() else ""

    def write_known_hosts(self) -> Path:
        """known_hosts with every host's keys, read from the containers (not scanned).

        Each host is listed as ``[127.0.0.1]:PORT`` (the published port), by its name and
        by its private address (for clients inside the network, e.g. a controller
        container).
        """
        lines: list[str] = []
        for name, endpoint in self.endpoints.items():
            keys = self.exec(name, "cat /etc/ssh/ssh_host_*_key.pub").stdout.splitlines()
            patterns = f"[127.0.0.1]:{endpoint.port},{endpoint.hostname},{self.address(name)}"
            for key in keys:
                key_type, blob = key.split()[:2]
                lines.append(f"{patterns} {key_type} {blob}")
        self.known_hosts_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.known_hosts_file


def _yaml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yaml_scalar(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _yaml_str(value)
