"""End to end over real OpenSSH servers: the CLI as a subprocess, trials on sshd "hosts".

Each sshd (tests/sshd.py) stands for a GPU host with its own fake nvidia-smi. Trials
(tests/data/trial_gpu.py) record the CUDA_VISIBLE_DEVICES they saw, their host (HOST_LABEL
from the machines file's ``env:``; every sshd here is the same machine) and when they ran,
and the tests check the schedule, the store and the errors against those records.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from sshd import TEST_PASSWORD, TEST_USER, SshServer, free_port

from remotetune.model import ExperimentStatus, TrialRecord, TrialStatus
from remotetune.store import Store

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent
X = {"x": {"_type": "uniform", "_value": [0.1, 1.0]}}


def gpu(busy: bool = False) -> dict[str, Any]:
    """A fake GPU; busy: 90 % of its memory used (above the 10 % default threshold)."""
    return {"name": "Fake A100", "memory_total": 40960,
            "memory_used": 36864 if busy else 0, "utilization": 0}


# ---------------------------------------------------------------------------- helpers

_WORKDIRS: list[Path] = []


def workdir(server: SshServer) -> str:
    """A workdir of its own per server, in the test user's home (a shared /tmp is refused)."""
    _WORKDIRS.append(Path(pwd.getpwnam(TEST_USER).pw_dir) / ".remotetune-test" / server.server_id)
    return f"~/.remotetune-test/{server.server_id}"


@pytest.fixture(autouse=True)
def _remove_workdirs() -> Iterator[None]:
    yield
    while _WORKDIRS:
        shutil.rmtree(_WORKDIRS.pop(), ignore_errors=True)



def host_entry(server: SshServer, label: str, **keys: Any) -> dict[str, Any]:
    """A machines.yml entry reaching ``server`` as the test user by key, host key checked."""
    entry: dict[str, Any] = {
        "name": label,
        "host": "127.0.0.1",
        "port": server.port,
        "user": TEST_USER,
        "identityFile": str(server.client_key),
        "knownHostsFile": str(server.known_hosts),
        "useAgent": False,
        "workdir": workdir(server),
        "connectTimeout": 5,
        "env": {"HOST_LABEL": label},
    }
    entry.update(keys)
    return entry


def write_files(tmp_path: Path, machines: Sequence[dict[str, Any]], space: dict[str, Any],
                **overrides: Any) -> tuple[Path, Path]:
    """experiment.yml (trial_gpu.py as its code) and machines.yml under ``tmp_path``."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(DATA / "trial_gpu.py", code / "trial.py")
    config: dict[str, Any] = {
        "experimentName": "ssh-test",
        "searchSpace": space,
        "trialCommand": "python3 trial.py",
        "trialCodeDirectory": "code",
        "trialConcurrency": 2,
        "maxTrialNumber": 2,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "pollInterval": 0.05,
    }
    config.update(overrides)
    experiment = tmp_path / "experiment.yml"
    experiment.write_text(yaml.safe_dump(config))
    machines_file = tmp_path / "machines.yml"
    machines_file.write_text(yaml.safe_dump({"machines": list(machines)}))
    return experiment, machines_file


def cli_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["REMOTETUNE_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remotetune.cli", *args], env=cli_env(tmp_path, env),
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
    )


def start_cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "remotetune.cli", *args], env=cli_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        start_new_session=True,
    )


def run_experiment(tmp_path: Path, experiment: Path, machines: Path,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, "run", str(experiment), "--machines", str(machines), "--plain",
                   env=env)


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home" / "remotetune.db")


def the_experiment(tmp_path: Path) -> tuple[str, list[TrialRecord]]:
    with open_store(tmp_path) as store:
        exps = store.experiments()
        assert len(exps) == 1
        return exps[0].id, store.trials(exps[0].id)


def record(trial: TrialRecord) -> dict[str, Any]:
    assert trial.trial_dir is not None
    return dict(json.loads((Path(trial.trial_dir) / "record.json").read_text()))


def reported(trial: TrialRecord) -> list[float]:
    assert trial.trial_dir is not None
    path = Path(trial.trial_dir) / "reported.txt"
    return [float(v) for v in path.read_text().split()] if path.exists() else []


def assert_metrics_complete(tmp_path: Path, exp_id: str, trials: Sequence[TrialRecord]) -> None:
    """Every line each trial wrote reached the store, once, in order."""
    with open_store(tmp_path) as store:
        for t in trials:
            values = [p.value for p in store.metrics(exp_id, t.id)]
            assert values == reported(t), t.id


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The largest number of intervals that share an instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = level = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start (+1)
        level += step
        peak = max(peak, level)
    return peak


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def running_trials(tmp_path: Path, n: int) -> list[TrialRecord]:
    def check() -> list[TrialRecord]:
        if not (tmp_path / "home" / "remotetune.db").exists():
            return []
        with open_store(tmp_path) as store:
            exps = store.experiments()
            if not exps:
                return []
            found = [t for t in store.trials(exps[0].id)
                     if t.status is TrialStatus.RUNNING and t.pid]
            return found if len(found) >= n else []

    return list(wait_for(check))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------- scheduling


def test_three_hosts_respect_gpu_indices_busy_gpus_and_sharing(
    sshd_factory: Callable[..., SshServer], tmp_path: Path
) -> None:
    a = sshd_factory(gpus=[gpu(), gpu()])
    b = sshd_factory(gpus=[gpu(busy=True), gpu(), gpu()])
    c = sshd_factory(gpus=[gpu()])
    machines = [
        host_entry(a, "a", gpuIndices=[1]),
        host_entry(b, "b", maxTrialsPerGpu=2),
        host_entry(c, "c"),
    ]
    experiment, machines_file = write_files(
        tmp_path, machines, {**X, "sleep": {"_type": "choice", "_value": [0.3]}},
        trialGpuNumber=1, trialConcurrency=5, maxTrialNumber=12,
    )
    result = run_experiment(tmp_path, experiment, machines_file)
    assert result.returncode == 0, result.stderr + result.stdout

    exp_id, trials = the_experiment(tmp_path)
    with open_store(tmp_path) as store:
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 12
    records = {t.id: record(t) for t in trials}
    by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for t in trials:
        r = records[t.id]
        # What the trial saw is what the store says it was given.
        assert r["host"] == t.host
        assert r["cuda"] == ",".join(map(str, t.gpus)) and len(t.gpus) == 1
        assert isinstance(t.final, float) and t.final == pytest.approx(r["default"])
        by_gpu.setdefault((r["host"], r["cuda"]), []).append((r["start"], r["end"]))
    assert set(by_gpu) <= {("a", "1"), ("b", "1"), ("b", "2"), ("c", "0")}, sorted(by_gpu)
    limits = {"a": 1, "b": 2, "c": 1}
    for (host, cuda), spans in by_gpu.items():
        assert max_overlap(spans) <= limits[host], (host, cuda, spans)
    # With 5 at a time over 6 slots, more than one host and b's sharing were used.
    assert len({h for h, _ in by_gpu}) >= 2
    all_spans = [span for spans in by_gpu.values() for span in spans]
    assert max_overlap(all_spans) >= 3
    assert_metrics_complete(tmp_path, exp_id, trials)


def test_trial_gpu_number_two_and_zero(ssh_host: SshServer, tmp_path: Path) -> None:
    for number, expected in ((2, "0,1"), (0, "")):
        run_dir = tmp_path / f"gpus{number}"
        run_dir.mkdir()
        experiment, machines_file = write_files(
            run_dir, [host_entry(ssh_host, "h")], X, trialGpuNumber=number,
            trialConcurrency=1, maxTrialNumber=2,
        )
        result = run_experiment(run_dir, experiment, machines_file)
        assert result.returncode == 0, result.stderr + result.stdout
        exp_id, trials = the_experiment(run_dir)
        assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 2
        for t in trials:
            assert record(t)["cuda"] == expected, number
        assert_metrics_complete(run_dir, exp_id, trials)


# ---------------------------------------------------------------------------- bad input


def _other_key(tmp_path: Path) -> str:
    key = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return str(key)


def _empty_known_hosts(tmp_path: Path) -> str:
    path = tmp_path / "empty_known_hosts"
    path.write_text("")
    return str(path)


def _locked_key(tmp_path: Path) -> str:
    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)],
                   check=True)
    return str(key)


# case -> (machines.yml keys for host "h", environment, words the error must contain)
BAD_HOSTS: dict[str, tuple[Callable[[Path], dict[str, Any]], dict[str, str], tuple[str, ...]]] = {
    "wrong key": (lambda p: {"identityFile": _other_key(p)}, {}, ("authentication",)),
    "wrong password": (
        lambda p: {"identityFile": None, "passwordEnv": "RT_TEST_PASSWORD"},
        {"RT_TEST_PASSWORD": TEST_PASSWORD + "-wrong"}, ("authentication", "password"),
    ),
    "unknown host key": (lambda p: {"knownHostsFile": _empty_known_hosts(p)}, {},
                         ("host key", "acceptUnknownHostKey")),
    "closed port": (lambda p: {"port": free_port()}, {}, ("refused",)),
    "no python": (lambda p: {"python": "/nonexistent/python3"}, {},
                  ("/nonexistent/python3", "python")),
    "workdir not writable": (lambda p: {"workdir": "/proc/rt"}, {},
                             ("workdir /proc/rt is not writable",)),
    "wrong passphrase": (
        lambda p: {"identityFile": _locked_key(p), "passphraseEnv": "RT_TEST_PASSPHRASE"},
        {"RT_TEST_PASSPHRASE": "not-it"}, ("wrong passphrase for", "locked_ed25519"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_HOSTS))
def test_a_host_that_cannot_be_used_is_a_clear_error(
    ssh_host: SshServer, tmp_path: Path, case: str
) -> None:
    keys, env, words = BAD_HOSTS[case]
    entry = {k: v for k, v in host_entry(ssh_host, "hostname-h", **keys(tmp_path)).items()
             if v is not None}
    experiment, machines_file = write_files(tmp_path, [entry], X)
    result = run_experiment(tmp_path, experiment, machines_file, env=env)
    assert result.returncode == 3, result.stderr + result.stdout
    err = " ".join(result.stderr.split())  # rich wraps long lines
    assert "hostname-h" in err, err
    for word in words:
        assert word.lower() in err.lower(), (word, err)
    assert "fix the machines file" in err, err
    assert "Traceback" not in err and 'File "' not in err and "PEM" not in err, err
    if case == "workdir not writable":
        assert "no python" not in err.lower(), err
    # The experiment is in the store, FAILED, with the reason; no trial ever ran.
    exp_id, trials = the_experiment(tmp_path)
    with open_store(tmp_path) as store:
        exp = store.experiment(exp_id)
    assert exp.status is ExperimentStatus.FAILED
    assert exp.message and "hostname-h" in exp.message
    assert all(t.status is not TrialStatus.RUNNING and t.pid is None for t in trials)


def test_a_failing_setup_line_fails_the_trials_not_the_experiment(
    ssh_host: SshServer, tmp_path: Path
) -> None:
    entry = host_entry(ssh_host, "h", setup=["true", "false"])
    experiment, machines_file = write_files(tmp_path, [entry], X, maxTrialNumber=3)
    result = run_experiment(tmp_path, experiment, machines_file)
    # every trial failed: the run says so and exits 1 (issue 8), the experiment itself is DONE
    assert result.returncode == 1, result.stderr + result.stdout
    assert "all 3 trials failed" in " ".join(result.stderr.split())
    exp_id, trials = the_experiment(tmp_path)
    with open_store(tmp_path) as store:
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
    assert [t.status for t in trials] == [TrialStatus.FAILED] * 3
    for t in trials:
        said = f"{t.message} {t.stderr_tail}"
        assert "setup line 2 failed" in said, said
        assert reported(t) == []  # the trial command never ran


# ---------------------------------------------------------------------------- disconnects

LONG = {
    "x": {"_type": "uniform", "_value": [0.1, 1.0]},
    "steps": {"_type": "choice", "_value": [12]},
    "sleep": {"_type": "choice", "_value": [0.25]},
}


def session_processes(server: SshServer) -> list[int]:
    """sshd's per-connection processes (not the listener): killing them drops every SSH
    connection as a network failure would; what they ran then sees its channel close."""
    assert server.proc is not None
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            pid = int(entry)
            names[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(pid)
    found, stack = [], list(children.get(server.proc.pid, []))
    while stack:
        pid = stack.pop()
        if names.get(pid) == "sshd":
            found.append(pid)
            stack.extend(children.get(pid, []))
    return found


def test_a_trial_survives_the_connection_dropping(ssh_host: SshServer, tmp_path: Path) -> None:
    experiment, machines_file = write_files(
        tmp_path, [host_entry(ssh_host, "h")], LONG, trialConcurrency=1, maxTrialNumber=1,
    )
    proc = start_cli(tmp_path, "run", str(experiment), "--machines", str(machines_file),
                     "--plain")
    (first,) = running_trials(tmp_path, 1)
    wait_for(lambda: len(reported(first)) >= 2)  # it is reporting
    victims = session_processes(ssh_host)
    assert victims
    for pid in victims:  # drop the connection (the agent then reads EOF and exits)
        os.kill(pid, signal.SIGKILL)
    assert pid_alive(first.pid or 0)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err + out
    exp_id, trials = the_experiment(tmp_path)
    (t,) = trials
    assert t.status is TrialStatus.SUCCEEDED and t.pid == first.pid
    assert_metrics_complete(tmp_path, exp_id, trials)
    assert len(reported(t)) == 13
    with open_store(tmp_path) as store:
        events = [e.message for e in store.events(exp_id, limit=None)]
    assert any("h unreachable" in m for m in events), events
    assert any("h back" in m for m in events), events


def test_leave_then_resume_reattaches_to_trials_on_an_ssh_host(
    ssh_host: SshServer, tmp_path: Path
) -> None:
    experiment, machines_file = write_files(
        tmp_path, [host_entry(ssh_host, "h")], LONG, trialConcurrency=2, maxTrialNumber=3,
    )
    proc = start_cli(tmp_path, "run", str(experiment), "--machines", str(machines_file),
                     "--plain", "--on-interrupt", "leave")
    first = running_trials(tmp_path, 2)
    wait_for(lambda: all(len(reported(t)) >= 1 for t in first))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err + out
    exp_id, _ = the_experiment(tmp_path)
    with open_store(tmp_path) as store:
        assert store.experiment(exp_id).status is ExperimentStatus.STOPPED
    for t in first:  # the trials outlived the controller and its connection
        assert pid_alive(t.pid or 0)
    time.sleep(0.6)  # metric lines are written while no controller runs
    result = run_cli(tmp_path, "resume", exp_id, "--plain")
    assert result.returncode == 0, result.stderr + result.stdout
    exp_id, trials = the_experiment(tmp_path)
    assert [t.status for t in trials] == [TrialStatus.SUCCEEDED] * 3
    by_id = {t.id: t for t in trials}
    for t in first:  # the same processes, not restarted
        assert by_id[t.id].pid == t.pid
    assert_metrics_complete(tmp_path, exp_id, trials)
    assert all(len(reported(t)) == 13 for t in trials)
