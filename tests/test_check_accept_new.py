"""`remotetune check --accept-new` against a real sshd: first-time host keys are recorded
with their fingerprints (OpenSSH's StrictHostKeyChecking=accept-new); changed keys are not."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sshd import TEST_USER, SshServer

pytestmark = pytest.mark.ssh

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _remove_workdirs(ssh_host: SshServer) -> Iterator[None]:
    yield
    home = Path(pwd.getpwnam(TEST_USER).pw_dir)
    shutil.rmtree(home / ".remotetune-test" / ssh_host.server_id, ignore_errors=True)


def machines(tmp_path: Path, server: SshServer, known_hosts: Path) -> Path:
    entry = {
        "name": "gpu1", "host": "127.0.0.1", "port": server.port, "user": TEST_USER,
        "identityFile": str(server.client_key), "knownHostsFile": str(known_hosts),
        "useAgent": False, "workdir": f"~/.remotetune-test/{server.server_id}", "connectTimeout": 5,
    }
    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump({"machines": [entry]}))
    return path


def check(tmp_path: Path, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT),
               COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "remotetune.cli", "check", "--machines",
                           str(path), *flags], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def keygen_fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_accept_new_records_the_key_then_plain_check_passes(ssh_host: SshServer,
                                                            tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = machines(tmp_path, ssh_host, known)
    refused = check(tmp_path, path)
    assert refused.returncode == 3
    assert "unknown host key" in refused.stdout and "--accept-new" in refused.stdout

    first = check(tmp_path, path, "--accept-new")
    assert first.returncode == 0, first.stdout + first.stderr
    fingerprint = keygen_fingerprint(ssh_host.root / "host_ed25519.pub")
    assert (f"gpu1: new host key for [127.0.0.1]:{ssh_host.port}: ssh-ed25519 {fingerprint}, "
            f"recorded in {known}") in first.stdout
    assert "all 1 hosts ok" in first.stdout
    (line,) = known.read_text().splitlines()
    key_type, blob = ssh_host.host_public_key.split()[:2]
    assert line == f"[127.0.0.1]:{ssh_host.port} {key_type} {blob}"
    # OpenSSH itself now trusts the recorded line
    argv = [f"UserKnownHostsFile={known}" if a.startswith("UserKnownHostsFile=") else a
            for a in ssh_host.ssh_command()]
    ssh = subprocess.run([*argv, "127.0.0.1", "true"], capture_output=True, text=True,
                         timeout=30)
    assert ssh.returncode == 0, ssh.stderr

    second = check(tmp_path, path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "new host key" not in second.stdout
    again = check(tmp_path, path, "--accept-new")  # nothing new: nothing written twice
    assert again.returncode == 0 and "new host key" not in again.stdout
    assert len(known.read_text().splitlines()) == 1


def test_accept_new_creates_a_missing_known_hosts_file(ssh_host: SshServer,
                                                       tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    result = check(tmp_path, machines(tmp_path, ssh_host, known), "--accept-new")
    assert result.returncode == 0, result.stdout + result.stderr
    assert known.read_text().startswith(f"[127.0.0.1]:{ssh_host.port} ssh-ed25519 ")
    assert (known.stat().st_mode & 0o777) == 0o600
    assert (known.parent.stat().st_mode & 0o777) == 0o700


def test_a_changed_key_is_refused_even_with_accept_new(ssh_host: SshServer,
                                                       tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)],
                   check=True, capture_output=True)
    key_type, blob = wrong.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    stale = f"[127.0.0.1]:{ssh_host.port} {key_type} {blob}\n"
    known.write_text(stale)
    result = check(tmp_path, machines(tmp_path, ssh_host, known), "--accept-new")
    assert result.returncode == 3
    assert "host key mismatch" in result.stdout and "HOST KEY MISMATCH" in result.stdout
    assert "new host key" not in result.stdout
    assert known.read_text() == stale  # left as it was
