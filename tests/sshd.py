"""Real OpenSSH servers on loopback for tests and benchmarks.

:class:`SshServer` runs Debian's ``/usr/sbin/sshd -D -e -f <config>`` on
``127.0.0.1:<free port>`` with its own ed25519 host key, its own ``authorized_keys``, a
client key pair, and a ``known_hosts`` file holding the server's key. Each server has its
own bin directory first on the sessions' PATH, holding a copy of ``tests/bin/nvidia-smi``
that reports the GPUs written to the server's ``gpus.json`` (``set_gpus`` changes them
while the server runs). Several servers stand for several hosts.

Sessions log in as a dedicated user, :data:`TEST_USER` (created here with
:data:`TEST_PASSWORD` when missing; this needs root), whose login shell is ``/bin/sh``: no
start-up files run and the machine's own users and passwords are never touched. Every
session gets ``REMOTETUNE_TEST_SSHD=<server id>`` in its environment, so :meth:`stop`
also finds and kills processes the sessions left running (detached trials included).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from remotetune.model import HostSpec

SSHD = "/usr/sbin/sshd"
TEST_USER = "remotetune-test"
TEST_PASSWORD = "rt-test-Pa55word"  # only for the throwaway test user
FAKE_NVIDIA_SMI = Path(__file__).resolve().parent / "bin" / "nvidia-smi"
MARKER_ENV = "REMOTETUNE_TEST_SSHD"

_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {root}/sshd.pid
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication {password_auth}
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
MaxSessions 64
MaxStartups 100
UseDNS no
LogLevel {log_level}
Subsystem sftp internal-sftp
SetEnv {setenv}
"""


class SshdError(RuntimeError):
    """The test sshd could not be set up (a test-environment problem, not a product bug)."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise SshdError(
            "the SSH test fixtures must run as root: they create the user "
            f"{TEST_USER!r} and start sshd (run the tests as root, e.g. in .ci/run's container)"
        )
    if not os.path.exists(SSHD):
        raise SshdError(f"{SSHD} not found: install Debian's openssh-server (apt-get install)")


def ensure_test_user() -> pwd.struct_passwd:
    """Create :data:`TEST_USER` (home, ``/bin/sh``) if missing and (re)set its password."""
    require_root()
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(TEST_USER)
    # Also unlocks the account: with UsePAM no, sshd refuses every login to a locked one.
    subprocess.run(
        ["chpasswd"], input=f"{TEST_USER}:{TEST_PASSWORD}\n".encode(), check=True,
        capture_output=True,
    )
    return entry


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshServer:
    """One sshd. ``start()`` runs it; ``stop()`` kills it and everything its sessions left."""

    gpus: Sequence[dict[str, Any]] | None = None  # None: the fake's default (2 idle GPUs)
    nvidia_smi: bool = True  # False: a CPU host without nvidia-smi
    password_auth: bool = True
    log_level: str = "INFO"
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    root: Path = field(init=False)
    port: int = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        require_root()
        user = ensure_test_user()
        self.root = Path(tempfile.mkdtemp(prefix=f"rt-sshd-{self.server_id}-"))
        self.root.chmod(0o755)  # the test user reaches its workdir and bin dir through it
        self.bin_dir.mkdir()
        if self.nvidia_smi:
            shutil.copy2(FAKE_NVIDIA_SMI, self.bin_dir / "nvidia-smi")
            (self.bin_dir / "nvidia-smi").chmod(0o755)
        self.workdir.mkdir()
        os.chown(self.workdir, user.pw_uid, user.pw_gid)
        self.host_public_key = _keygen(self.root / "host_ed25519", "test host key")
        self.client_public_key = _keygen(self.client_key, "test client key")
        (self.root / "authorized_keys").write_text(self.client_public_key + "\n")
        self.port = free_port()
        self.known_hosts.write_text(f"{self.host_pattern} {self.host_public_key}\n")
        self.set_gpus(self.gpus)
        self._write_config()

    # ------------------------------------------------------------------ paths

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def workdir(self) -> Path:
        """The per-server workdir on the "host" (owned by the test user)."""
        return self.root / "remote"

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def config_file(self) -> Path:
        return self.root / "sshd_config"

    @property
    def host_pattern(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    @property
    def log_text(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ set-up

    def _write_config(self) -> None:
        self.config_file.write_text(
            _CONFIG.format(
                port=self.port,
                host_key=self.root / "host_ed25519",
                root=self.root,
                password_auth="yes" if self.password_auth else "no",
                log_level=self.log_level,
                setenv=" ".join((  # sshd honours only the first SetEnv line
                    f"PATH={self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
                    f"FAKE_NVIDIA_SMI_FILE={self.root}/gpus.json",
                    f"{MARKER_ENV}={self.server_id}",
                )),
            )
        )

    def set_gpus(self, gpus: Sequence[dict[str, Any]] | None) -> None:
        """What the host's fake nvidia-smi reports from now on (None: two idle GPUs)."""
        self.gpus = gpus
        path = self.root / "gpus.json"
        if gpus is None:
            gpus = [
                {"name": "NVIDIA Fake GPU", "memory_total": 16384, "memory_used": 0,
                 "utilization": 0},
            ] * 2
        path.write_text(json.dumps(list(gpus)))
        path.chmod(0o644)

    def spec(self, **overrides: Any) -> HostSpec:
        """A HostSpec reaching this server as the test user, by key, host key checked."""
        base = HostSpec(
            name=f"sshd-{self.server_id}",
            host="127.0.0.1",
            port=self.port,
            user=TEST_USER,
            identity_file=str(self.client_key),
            known_hosts_file=str(self.known_hosts),
            use_agent=False,
            python="python3",
            workdir=str(self.workdir),
            connect_timeout=10.0,
        )
        return replace(base, **overrides)

    def ssh_command(self) -> list[str]:
        """OpenSSH client argv reaching this server (for rsync -e and debugging)."""
        return [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.client_key),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-l", TEST_USER,
        ]

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> SshServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SshdError(f"sshd exited {self.proc.returncode}:\n{self.log_text[-2000:]}")
            if self._banner_ok():
                return self
            time.sleep(0.02)
        self.stop()
        raise SshdError(f"sshd did not answer on port {self.port} within {timeout} s")

    def _banner_ok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the listener, its per-connection children, and every process of its sessions."""
        if self.proc is not None:
            victims = set(_descendants(self.proc.pid)) | {self.proc.pid}
            victims |= set(_marked_processes(self.server_id))
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None
        # Detached processes started after the scan above (a launcher mid-fork).
        for pid in _marked_processes(self.server_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def restart(self) -> SshServer:
        """Stop (dropping every connection) and start again on the same port and keys."""
        self.stop()
        return self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> Iterator[int]:
    children = _proc_children()
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        yield child
        stack.extend(children.get(child, []))


def _marked_processes(server_id: str) -> list[int]:
    marker = f"{MARKER_ENV}={server_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            found.append(int(entry))
    return found
