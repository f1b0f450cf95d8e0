"""`remotetune check` against real sshd hosts with fake GPUs, and every way a host fails."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from sshd import SshServer, free_port

from remotetune.check import CheckReason, HostCheck, check_hosts, render_checks
from remotetune.model import HostSpec

pytestmark = pytest.mark.ssh


def render(checks: list[HostCheck]) -> str:
    console = Console(width=220, record=True, color_system=None)
    console.print(render_checks(checks))
    return console.export_text()


def test_three_hosts_and_the_local_machine(three_ssh_hosts: list[SshServer],
                                           tmp_path: Path) -> None:
    specs = [s.spec(name=f"host{i}") for i, s in enumerate(three_ssh_hosts)]
    specs[1] = three_ssh_hosts[1].spec(name="host1", gpu_indices=(0, 1, 2))
    specs.append(HostSpec(name="here", local=True, workdir=str(tmp_path / "wd")))
    checks = check_hosts(specs, timeout=10)
    assert [c.name for c in checks] == ["host0", "host1", "host2", "here"]
    assert all(c.ok for c in checks), [c.message for c in checks]
    first = checks[0]
    assert first.reason is CheckReason.OK
    assert first.auth_method is not None and first.auth_method.startswith("publickey")
    assert first.python_version and first.python_version.startswith("3.")
    assert first.workdir == str(three_ssh_hosts[0].workdir)
    assert first.free_disk_bytes and first.free_disk_bytes > 0
    assert [(g.gpu.index, g.gpu.name, g.busy) for g in first.gpus] == [
        (0, "Fake A100", False), (1, "Fake A100", False)]
    second = checks[1]
    assert [(g.gpu.index, g.busy, g.selected) for g in second.gpus] == [
        (0, False, True), (1, True, True), (2, False, True), (3, True, False)]
    assert second.gpus[1].gpu.memory_used_mib == 9000
    assert len(checks[2].gpus) == 1
    assert checks[3].auth_method == "local" and (tmp_path / "wd").is_dir()
    text = render(checks)
    assert "all 4 hosts ok" in text and "1: Fake V100 9000/16384 MiB 0% busy" in text
    assert "(not in gpuIndices)" in text


def test_cpu_host_without_nvidia_smi_is_fine(sshd_factory: Callable[..., SshServer]) -> None:
    server = sshd_factory(nvidia_smi=False)
    (check,) = check_hosts([server.spec(name="cpu")])
    assert check.ok and check.gpus == ()
    assert check.gpu_note == "no GPUs (nvidia-smi not found)"
    assert "no GPUs (nvidia-smi not found)" in render([check])


def test_gpu_indices_naming_absent_gpus_fail(ssh_host: SshServer) -> None:
    (check,) = check_hosts([ssh_host.spec(name="g", gpu_indices=(0, 5))])
    assert not check.ok and check.reason is CheckReason.GPU_QUERY
    assert "[5]" in check.message


def test_python_problems(ssh_host: SshServer) -> None:
    old = ssh_host.bin_dir / "oldpython"
    old.write_text("#!/bin/sh\necho '{\"version\": \"3.6.9\"}'\n")
    old.chmod(0o755)
    specs = [
        ssh_host.spec(name="nopy", python="/nonexistent/python3"),
        ssh_host.spec(name="oldpy", python="oldpython"),
        ssh_host.spec(name="nowrite", workdir="/root/not-for-the-test-user"),
    ]
    nopy, oldpy, nowrite = check_hosts(specs)
    assert nopy.reason is CheckReason.NO_PYTHON and not nopy.ok
    assert "no python: `/nonexistent/python3` cannot be run" in nopy.message
    assert "python:" in (nopy.hint or "")
    assert nopy.gpus  # the rest of the facts still come back
    assert oldpy.reason is CheckReason.OLD_PYTHON and "3.6.9" in oldpy.message
    assert nowrite.reason is CheckReason.WORKDIR and "not-for-the-test-user" in nowrite.message
    assert nowrite.python_version is not None
    text = render([nopy, oldpy, nowrite])
    assert "FAIL: no python" in text and "3 of 3 hosts failed" in text


def test_every_connection_failure_in_parallel(
    sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    good, other = sshd_factory(), sshd_factory()
    wrong_key = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)],
                   check=True, capture_output=True)
    empty_known = tmp_path / "known_hosts"
    empty_known.write_text("")
    mitm_known = tmp_path / "mitm_known"  # the other server's key under this one's address
    mitm_known.write_text(f"{good.host_pattern} {other.host_public_key}\n")
    specs = [
        good.spec(name="good"),
        HostSpec(name="refused", host="127.0.0.1", port=free_port(), use_agent=False),
        HostSpec(name="nodns", host="no-such-host.invalid", port=22, use_agent=False),
        good.spec(name="badkey", identity_file=str(wrong_key)),
        good.spec(name="newkey", known_hosts_file=str(empty_known)),
        good.spec(name="mitm", known_hosts_file=str(mitm_known)),
    ]
    started = time.monotonic()
    checks = check_hosts(specs, timeout=10)
    elapsed = time.monotonic() - started
    got = {c.name: c.reason for c in checks}
    assert got == {
        "good": CheckReason.OK,
        "refused": CheckReason.CONNECTION_REFUSED,
        "nodns": CheckReason.NAME_RESOLUTION,
        "badkey": CheckReason.AUTHENTICATION,
        "newkey": CheckReason.UNKNOWN_HOST_KEY,
        "mitm": CheckReason.HOST_KEY_MISMATCH,
    }
    by_name = {c.name: c for c in checks}
    assert "ssh-copy-id" in (by_name["badkey"].hint or "")
    assert "ssh-keyscan" in (by_name["newkey"].hint or "")
    assert "man in the middle" in by_name["mitm"].message
    assert elapsed < 10
    text = render(checks)
    assert "5 of 6 hosts failed" in text and "FAIL: host key mismatch" in text


def test_unresponsive_host_times_out(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        spec = HostSpec(name="silent", host="127.0.0.1", port=listener.getsockname()[1],
                        use_agent=False)
        (check,) = check_hosts([spec], timeout=0.5)
        assert check.reason is CheckReason.TIMEOUT and check.seconds < 5
    finally:
        listener.close()


def test_no_hosts() -> None:
    assert check_hosts([]) == []


def test_setup_lines_run_and_a_failing_line_fails_the_host(ssh_host: SshServer,
                                                           tmp_path: Path) -> None:
    """`check` runs the host's setup lines as a trial would: the failing line and its output."""
    good = ssh_host.spec(name="good", setup=("export RT_X=1", 'test "$RT_X" = 1'))
    bad = ssh_host.spec(name="bad", setup=(
        "echo preparing the env",
        "sh -c 'echo ERROR: no matching distribution for torch==9.9 >&2; exit 3'",
        "echo never reached",
    ))
    local = HostSpec(name="here", local=True, workdir=str(tmp_path / "wd"),
                     setup=("no-such-command-rt --version",))
    ok, failed, here = check_hosts([good, bad, local], timeout=10)
    assert ok.ok, ok.message
    assert not failed.ok and failed.reason is CheckReason.SETUP
    assert failed.message.startswith("setup line 2 failed (exit 3):")
    assert "torch==9.9" in failed.message and "preparing the env" in failed.message
    assert "never reached" not in failed.message
    assert failed.python_version and failed.gpus  # the other facts still come back
    assert here.reason is CheckReason.SETUP and "setup line 1 failed (exit 127)" in here.message
    text = render([ok, failed, here])
    assert "FAIL: setup failed" in text and "2 of 3 hosts failed" in text


def test_unwritable_workdir_is_workdir_not_writable_in_check_and_at_run_time(
    ssh_host: SshServer,
) -> None:
    """`workdir: /proc/rt`: the same words from `check` and from a run's connect, no traceback."""
    from remotetune.backends.hostpool._session import HostSession
    from remotetune.errors import RemoteSetupError

    spec = ssh_host.spec(name="procfs", workdir="/proc/rt")
    (check,) = check_hosts([spec], timeout=10)
    assert check.reason is CheckReason.WORKDIR
    assert "workdir /proc/rt is not writable" in check.message
    session = HostSession(spec)
    try:
        with pytest.raises(RemoteSetupError) as info:
            session.open()
    finally:
        session.close()
    text = str(info.value)
    assert "workdir /proc/rt is not writable" in text and "no Python" not in text
    assert "Traceback" not in text and 'File "' not in text and "line " not in text
    assert "`workdir:`" in text  # the hint


def test_unwritable_experiments_dir_is_caught_by_the_probe(ssh_host: SshServer) -> None:
    """The probe also write-tests `experiments/` under the workdir, where trials go."""
    from remotetune.backends.hostpool._session import HostSession
    from remotetune.errors import RemoteSetupError

    wd = ssh_host.workdir / "ro"
    spec = ssh_host.spec(name="ro", workdir=str(wd))
    (check,) = check_hosts([spec], timeout=10)
    assert check.ok, check.message
    (wd / "experiments").chmod(0o555)
    try:
        (check,) = check_hosts([spec], timeout=10)
        assert check.reason is CheckReason.WORKDIR and "experiments" in check.message
        session = HostSession(spec)
        with pytest.raises(RemoteSetupError, match="not writable"):
            session.open()
        session.close()
    finally:
        (wd / "experiments").chmod(0o755)


def test_probe_verdicts_and_traceback_free_detail() -> None:
    """The one probe reading (pure logic): check and a run's connect share these words."""
    from remotetune.backends.hostpool._probe import (
        HostFacts,
        ProbeFailure,
        last_line,
        parse_probe,
        probe_problem,
    )

    trace = ('Traceback (most recent call last):\n  File "<string>", line 4, in <module>\n'
             "PermissionError: [Errno 13] Permission denied: '/srv/rt'\n")
    assert last_line(trace) == "PermissionError: [Errno 13] Permission denied: '/srv/rt'"
    missing = probe_problem("py3", parse_probe("sh: 1: py3: not found\n"))
    assert missing is not None and missing.failure is ProbeFailure.NO_PYTHON
    assert "(sh: 1: py3: not found)" in missing.message
    old = probe_problem("python3", parse_probe('noise\n{"version": "3.6.9"}\n'))
    assert old is not None and old.failure is ProbeFailure.OLD_PYTHON
    full = probe_problem("python3", HostFacts("3.11.2", "/w", True, None, 1000))
    assert full is not None and full.failure is ProbeFailure.DISK_FULL
    assert probe_problem("python3", HostFacts("3.11.2", "/w", True, None, 1 << 30)) is None
