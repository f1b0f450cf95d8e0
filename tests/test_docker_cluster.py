"""The Compose fake-remote cluster (docker/): three sshd containers with fake GPUs.

Needs a Docker engine; builds the offline base image on the first run (about a minute
and a half on 2 cores, then cached).  The ``cluster`` fixture is session scoped so the
fault tests can share one cluster; each test leaves every host up and connected.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from docker_cluster import dc

from remotetune.config import load_machines

pytestmark = pytest.mark.docker

GPU_QUERY = (
    "nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu"
    " --format=csv,noheader,nounits"
)




@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    """host1..host3 up, with a client key and known_hosts; removed after the session."""
    started = time.monotonic()
    up = dc.Cluster.up(f"rt-test-{os.getpid()}")
    print(f"cluster up in {time.monotonic() - started:.1f} s")
    try:
        yield up
    finally:
        up.down()


def _ssh(cluster: Any, host: str, command: str, *, timeout: float = 30.0) -> str:
    return str(cluster.ssh(host, command, timeout=timeout).stdout)


def _wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def test_each_host_has_its_own_name_user_and_fake_gpus(cluster: Any) -> None:
    seen: dict[str, list[list[str]]] = {}
    for host in dc.HOSTS:
        out = _ssh(cluster, host, f"hostname; id -un; id -u; {GPU_QUERY}").splitlines()
        assert out[:3] == [host, "trial", "1000"]
        seen[host] = [[field.strip() for field in line.split(",")] for line in out[3:]]
    for host, rows in seen.items():
        expected = dc.GPUS[host]
        assert [row[0] for row in rows] == [str(i) for i in range(len(expected))]
        assert [row[1] for row in rows] == [name for name, _ in expected]
        busy = [int(row[4]) > 50 for row in rows]
        assert busy == [is_busy for _, is_busy in expected]
    assert seen["host1"] != seen["host2"] != seen["host3"] != seen["host1"]
    # Distinct host keys: every container made its own at first start.
    keys = Path(cluster.known_hosts_file).read_text().splitlines()
    ed25519 = {line.split()[0]: line.split()[2] for line in keys if "ssh-ed25519" in line}
    assert len(set(ed25519.values())) == 3


def test_hosts_reach_each_other_on_the_private_network(cluster: Any) -> None:
    probe = (
        "import socket; s = socket.create_connection(('host2', 22), timeout=5);"
        " print(s.recv(64).decode().strip())"
    )
    out = cluster.exec("host1", ["python3", "-c", probe]).stdout
    assert out.startswith("SSH-2.0-OpenSSH")


def test_machines_yaml_loads_and_works_with_paramiko(cluster: Any, tmp_path: Path) -> None:
    path = cluster.machines_yaml(
        tmp_path / "machines.yml", gpu_indices={"host2": [0]}, extra={"connectTimeout": 5}
    )
    specs = load_machines(path)
    assert [spec.name for spec in specs] == list(dc.HOSTS)
    assert specs[1].gpu_indices == (0,)
    for spec in specs:
        assert (spec.host, spec.user, spec.python) == ("127.0.0.1", "trial", "python3")
        assert spec.connect_timeout == 5 and not spec.accept_unknown_host_key
        assert spec.known_hosts_file is not None and spec.identity_file is not None
        client = paramiko.SSHClient()
        client.load_host_keys(spec.known_hosts_file)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                spec.host,
                port=spec.port,
                username=spec.user,
                key_filename=spec.identity_file,
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            _, stdout, _ = client.exec_command("hostname")
            assert stdout.read().decode().strip() == spec.name
        finally:
            client.close()


def test_machines_yaml_for_a_controller_on_the_private_network(
    cluster: Any, tmp_path: Path
) -> None:
    path = cluster.machines_yaml(tmp_path / "m.yml", private_network=True, key_dir="/keys")
    entries = yaml.safe_load(path.read_text())["machines"]
    assert [(e["host"], e["port"]) for e in entries] == [(h, 22) for h in dc.HOSTS]
    assert {e["identityFile"] for e in entries} == {"/keys/id_ed25519"}
    assert {e["knownHostsFile"] for e in entries} == {"/keys/known_hosts"}
    assert cluster.network().startswith(cluster.project)


def test_network_cut_really_cuts_and_processes_keep_running(cluster: Any) -> None:
    # A counter that keeps writing during the cut, started in its own session like a trial.
    _ssh(
        cluster,
        "host3",
        "rm -f ~/ticks; nohup setsid sh -c 'while :; do date +%s%N >> ~/ticks; sleep 0.1; done'"
        " >/dev/null 2>&1 < /dev/null & echo $! > ~/ticks.pid",
    )
    port = cluster.port("host3")
    cluster.disconnect("host3")
    try:
        before = len(cluster.exec("host3", "cat /home/trial/ticks").stdout.splitlines())
        started = time.monotonic()
        cut = cluster.ssh("host3", "true", check=False, timeout=20)
        assert cut.returncode != 0, "ssh through the published port worked during the cut"
        assert time.monotonic() - started < 15
        assert not dc.sshd_answers(port, timeout=2.0)
        # The private network is cut too, and the other hosts are not.
        probe = "import socket; socket.create_connection(('host3', 22), timeout=3)"
        assert cluster.exec("host1", ["python3", "-c", probe], check=False).returncode != 0
        assert _ssh(cluster, "host1", "hostname").strip() == "host1"
        time.sleep(1.0)
        during = len(cluster.exec("host3", "cat /home/trial/ticks").stdout.splitlines())
        assert during > before, "the process in the cut-off host stopped writing"
    finally:
        cluster.reconnect("host3")
    assert _ssh(cluster, "host3", "hostname").strip() == "host3"
    out = cluster.exec("host1", ["python3", "-c", probe], check=False)
    assert out.returncode == 0, out.stderr
    _ssh(cluster, "host3", "kill $(cat ~/ticks.pid)")


def test_established_session_stalls_during_cut_and_resumes(cluster: Any) -> None:
    """A TCP connection open across a short cut loses nothing: packets are delayed, not
    refused, which is what the controller's reconnect logic must cope with."""
    command = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.5; done"
    with subprocess.Popen(
        cluster.ssh_argv("host1", command), stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "line 1"
        cluster.disconnect("host1")
        time.sleep(3.0)
        cluster.reconnect("host1")
        rest = proc.stdout.read().split("\n")
        assert proc.wait(timeout=60) == 0
    assert [line for line in rest if line] == [f"line {i}" for i in range(2, 11)]


def test_restart_sshd_keeps_processes_and_drops_sessions(cluster: Any) -> None:
    pid = _ssh(
        cluster, "host2", "nohup setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"
    ).strip()
    with subprocess.Popen(
        cluster.ssh_argv("host2", "echo ready; sleep 60"), stdout=subprocess.PIPE, text=True
    ) as session:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "ready"
        cluster.restart_sshd("host2")
        assert session.wait(timeout=20) != 0, "the open session survived the sshd restart"
    assert _ssh(cluster, "host2", f"kill -0 {pid} && echo alive").strip() == "alive"
    _ssh(cluster, "host2", f"kill {pid}")


def test_kill_and_start_keep_host_keys_and_port(cluster: Any) -> None:
    cluster.kill("host2")
    assert cluster.ssh("host2", "true", check=False, timeout=20).returncode != 0
    cluster.start("host2")
    # StrictHostKeyChecking=yes with the known_hosts written at bring-up: same host keys.
    assert _ssh(cluster, "host2", "hostname").strip() == "host2"


def test_stop_makes_the_port_refuse(cluster: Any) -> None:
    cluster.stop("host3", timeout=2)
    try:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", cluster.port("host3")), timeout=3).close()
    finally:
        cluster.start("host3")
    _wait_until(lambda: dc.sshd_answers(cluster.port("host3")), timeout=30, what="host3 sshd")
