"""Faults on the Compose fake-remote cluster (docker/): issue 4, items 2 to 5.

The CLI runs as a subprocess against three sshd containers with fake GPUs (one module
scoped cluster for every test). Trials (tests/data/trial_faults.py) write a metric line
every 0.2 s and record, in their trial directory on the host, every value they reported
(``reported.txt``) and every start (``started.jsonl``: pid, process group, hostname).
Each test counts: trials by status in the store, and the metric lines per trial in the
store against what the trial wrote on its host. Each test leaves every host up, connected
and writable for the next (the ``healthy`` fixture checks and repairs).

Slots: ``trialGpuNumber: 1`` gives host1 two, host2 one (its GPU 1 is busy) and host3 one.

What the faults showed: a 30 s network cut is not seen by the controller at all (its
poll stalls on the open TCP connection, which resumes by retransmission some 20 s after
the cut ends, within the agent call's 60 s timeout), so nothing is marked unreachable;
a killed host or a restarted sshd is seen at the next poll. A host that comes back after
a restart counts pids from 1 again: the killed-host test plants processes on its lost
trials' process group ids and checks the controller leaves them alone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from docker_cluster import dc

from remotetune.model import ExperimentStatus, MetricKind, TrialRecord, TrialStatus
from remotetune.store import Store

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
HOME_ON_HOST = "/home/trial"
T = TypeVar("T")




# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """host1..host3 up for the whole module; removed at the end."""
    up = dc.Cluster.up(f"rt-faults-{os.getpid()}")
    try:
        yield up
    finally:
        up.down()


def _running(cluster: Any, host: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", cluster.container(host)],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() == "true"


def heal(cluster: Any) -> None:
    """Every host running, on the network, with sshd answering and a writable workdir."""
    for host in dc.HOSTS:
        if not _running(cluster, host):
            cluster.start(host)
        flags = cluster.exec(host, "ip -o link show eth0", check=False).stdout.split(">")[0]
        if "UP" not in flags.split(","):  # still cut off (cluster.disconnect)
            cluster.reconnect(host)
        cluster.exec(host, f"chmod -R u+w {HOME_ON_HOST}/.remotetune 2>/dev/null; true")
        cluster.wait_ssh(host, timeout=30)


@pytest.fixture
def healthy(cluster: Any) -> Iterator[Any]:
    """The cluster, repaired before and after the test whatever the test broke."""
    heal(cluster)
    try:
        yield cluster
    finally:
        heal(cluster)


# ---------------------------------------------------------------------------- helpers


def write_files(tmp_path: Path, cluster: Any, *, steps: int, hosts: tuple[str, ...] = dc.HOSTS,
                **overrides: Any) -> tuple[Path, Path]:
    """experiment.yml (trial_faults.py, ``steps`` lines 0.2 s apart) and machines.yml."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(DATA / "trial_faults.py", code / "trial.py")
    config: dict[str, Any] = {
        "experimentName": "faults",
        "searchSpace": {
            "x": {"_type": "uniform", "_value": [0.1, 0.9]},
            "steps": {"_type": "choice", "_value": [steps]},
            "sleep": {"_type": "choice", "_value": [0.2]},
        },
        "trialCommand": "python3 trial.py",
        "trialCodeDirectory": "code",
        "trialGpuNumber": 1,
        "trialConcurrency": 4,
        "maxTrialNumber": 6,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "pollInterval": 0.1,
        "hostGracePeriod": 60,
        "maxTrialRetries": 2,
    }
    config.update(overrides)
    experiment = tmp_path / "experiment.yml"
    experiment.write_text(yaml.safe_dump(config))
    machines = cluster.machines_yaml(tmp_path / "machines.yml", hosts=hosts,
                                     extra={"connectTimeout": 5})
    return experiment, machines


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["REMOTETUNE_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Cli:
    """The CLI running in its own session (so a test can kill its whole process group)."""

    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()[-8000:]


def run(tmp_path: Path, *args: str) -> Cli:
    log = tmp_path / f"cli-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotetune.cli", *args, "--plain"], env=cli_env(tmp_path),
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            start_new_session=True,
        )
    return Cli(proc, log)


def finish(cli: Cli, *, timeout: float) -> None:
    """Wait for the CLI to exit 0; on a timeout kill it and show its output."""
    try:
        code = cli.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(cli.proc.pid, signal.SIGKILL)
        cli.proc.wait()
        raise AssertionError(f"the CLI did not finish in {timeout} s:\n{cli.output()}") from None
    assert code == 0, f"the CLI exited with {code}:\n{cli.output()}"


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home" / "remotetune.db")


def snapshot(tmp_path: Path) -> tuple[str, list[TrialRecord]]:
    """The experiment's id and trials as the store has them now ("", [] before it exists)."""
    db = tmp_path / "home" / "remotetune.db"
    if not db.exists():
        return "", []
    with Store(db) as store:
        exps = store.experiments()
        if not exps:
            return "", []
        return exps[0].id, store.trials(exps[0].id)


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def running_with_metrics(tmp_path: Path, *, host: str | None = None,
                         count: int = 1) -> list[TrialRecord]:
    """Wait until ``count`` trials (on ``host``) run with a pid and some metric lines in."""

    def check() -> list[TrialRecord]:
        _, trials = snapshot(tmp_path)
        found = [t for t in trials if t.status is TrialStatus.RUNNING and t.pid
                 and t.intermediate_count >= 2 and (host is None or t.host == host)]
        return found if len(found) >= count else []

    return wait_for(check, timeout=90, what=f"{count} running trial(s) on {host or 'any host'}")


@dataclass(frozen=True)
class Written:
    """What one trial wrote on its host."""

    reported: tuple[float, ...]
    starts: tuple[dict[str, Any], ...]


def written(cluster: Any, trial: TrialRecord) -> Written:
    assert trial.host and trial.trial_dir, trial
    d = shlex.quote(trial.trial_dir)
    out = cluster.exec(trial.host, f"cat {d}/reported.txt; echo ---; cat {d}/started.jsonl",
                       user="trial", check=False).stdout
    reported, _, starts = out.partition("---\n")
    return Written(tuple(float(v) for v in reported.split()),
                   tuple(json.loads(line) for line in starts.splitlines() if line.strip()))


def stored_values(store: Store, exp_id: str, trial: TrialRecord) -> list[float]:
    points = store.metrics(exp_id, trial.id)
    assert [p.seq for p in points] == list(range(len(points))), "gaps or duplicates in seq"
    return [p.value for p in points]


def by_status(trials: list[TrialRecord]) -> dict[TrialStatus, int]:
    counts: dict[TrialStatus, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return counts


def check_finished_trials(cluster: Any, store: Store, exp_id: str, trials: list[TrialRecord],
                          steps: int) -> dict[str, Written]:
    """Every SUCCEEDED trial: all its lines in the store once, in order; started once."""
    seen: dict[str, Written] = {}
    for t in trials:
        if t.status is not TrialStatus.SUCCEEDED:
            continue
        w = written(cluster, t)
        values = stored_values(store, exp_id, t)
        assert values == list(w.reported), f"trial {t.id} on {t.host}"
        assert len(values) == steps + 1
        kinds = [p.kind for p in store.metrics(exp_id, t.id)]
        assert kinds == [MetricKind.INTERMEDIATE] * steps + [MetricKind.FINAL]
        assert t.final == w.reported[-1] and t.intermediate_count == steps
        assert len(w.starts) == 1, f"trial {t.id} started {len(w.starts)} times: {w.starts}"
        assert w.starts[0]["host"] == t.host
        assert w.starts[0]["pgid"] == t.pid, "the store's pid is the trial's process group"
        seen[t.id] = w
    return seen


# Forks until children get the pids TARGETS (the counter restarts low in a restarted
# container); each becomes a session leader running `sleep`: a process group with that
# id which is no trial.
_DECOY = """
import os, sys
targets = sorted(int(a) for a in sys.argv[1:])
while targets:
    pid = os.fork()
    if pid == 0:
        if os.getpid() == targets[0]:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execvp("sleep", ["sleep", "600"])
        os._exit(0)
    if pid == targets[0]:
        targets.pop(0)
        continue
    os.waitpid(pid, 0)
    if pid > targets[0]:
        sys.exit("pid %d is past %d: cannot make a decoy" % (pid, targets[0]))
"""


_BURN_PIDS = """
import os, sys
while True:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    if pid >= int(sys.argv[1]):
        break
"""


def start_decoys(cluster: Any, host: str, pgids: list[int]) -> list[int]:
    """Process groups ``pgids`` on ``host``, owned by the trial user, that are no trials."""
    assert all(pgid > 1 for pgid in pgids)
    cluster.exec(host, ["python3", "-c", _DECOY, *map(str, pgids)], user="trial", timeout=120)
    for pgid in pgids:
        cluster.exec(host, f"kill -0 -{pgid}", user="trial")
    return pgids


def events(store: Store, exp_id: str) -> list[str]:
    return [e.message for e in store.events(exp_id, limit=None)]


# ---------------------------------------------------------------------------- tests


def test_full_experiment_across_the_three_hosts(healthy: Any, tmp_path: Path) -> None:
    steps = 10
    experiment, machines = write_files(tmp_path, healthy, steps=steps, maxTrialNumber=8)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    finish(proc, timeout=180)
    with open_store(tmp_path) as store:
        exp_id, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 8}
        check_finished_trials(healthy, store, exp_id, trials, steps)
    assert {t.host for t in trials} == set(dc.HOSTS)
    # the GPU schedule: host2's busy GPU 1 was never given out
    assert all(t.gpus in ((0,), (1,)) for t in trials if t.host == "host1")
    assert all(t.gpus == (0,) for t in trials if t.host in ("host2", "host3"))


def test_killed_host_trials_are_lost_requeued_and_finish_elsewhere(
    healthy: Any, tmp_path: Path
) -> None:
    steps = 30
    # Trials get pids above 3000, so that after the restart below the pid counter (back
    # near 1) can still be driven to them.
    healthy.exec("host1", ["python3", "-c", _BURN_PIDS, "3000"], user="trial", timeout=120)
    experiment, machines = write_files(tmp_path, healthy, steps=steps, hostGracePeriod=5)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    victims = running_with_metrics(tmp_path, host="host1", count=2)
    healthy.kill("host1")
    killed_at = time.monotonic()

    def lost() -> list[TrialRecord]:
        found = [t for t in snapshot(tmp_path)[1] if t.status is TrialStatus.LOST]
        return found if len(found) == 2 else []

    wait_for(lost, timeout=60, what="host1's two trials LOST")
    assert time.monotonic() - killed_at >= 5 - 0.5  # not before the grace period
    # host1 comes back (the controller may use it again) and the lost trials' process
    # group ids now belong to other processes of the same user: the controller, which
    # kills lost trials on a host that returns, must leave those alone. The controller
    # is paused meanwhile, so the decoys are in place before it reconnects.
    os.killpg(proc.proc.pid, signal.SIGSTOP)
    try:
        healthy.start("host1")
        decoys = start_decoys(healthy, "host1", [t.pid or 0 for t in victims])
    finally:
        os.killpg(proc.proc.pid, signal.SIGCONT)
    finish(proc, timeout=180)
    for pid in decoys:
        alive = healthy.exec("host1", f"kill -0 -{pid}", user="trial", check=False)
        assert alive.returncode == 0, f"the controller killed process group {pid}, not a trial"
        healthy.exec("host1", f"kill -- -{pid}", user="trial", check=False)
    with open_store(tmp_path) as store:
        exp_id, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 6, TrialStatus.LOST: 2}
        check_finished_trials(healthy, store, exp_id, trials, steps)
        by_id = {t.id: t for t in trials}
        lost_ids = {t.id for t in victims}
        assert {t.id for t in trials if t.status is TrialStatus.LOST} == lost_ids
        retries = [t for t in trials if t.retry_of in lost_ids]
        assert sorted(t.retry_of or "" for t in retries) == sorted(lost_ids)  # one retry each
        for t in retries:
            original = by_id[t.retry_of or ""]
            assert t.parameters == original.parameters
            assert t.parameter_id == original.parameter_id
            assert t.attempt == original.attempt + 1
            assert t.status is TrialStatus.SUCCEEDED
        for t in victims:
            # Lines read before the kill are a prefix of what it wrote (the files
            # survived on host1's disk): nothing invented, nothing twice.
            values = stored_values(store, exp_id, by_id[t.id])
            assert 2 <= len(values) < steps
            assert values == list(written(healthy, t).reported[: len(values)])
        messages = events(store, exp_id)
    assert any(m.startswith("host1 unreachable") for m in messages), messages
    assert any(m.startswith("host1 back") for m in messages), messages  # used again
    assert sum("re-queued with the same parameters" in m for m in messages) == 2


def test_network_cut_shorter_than_grace_loses_nothing(healthy: Any, tmp_path: Path) -> None:
    steps = 60  # 12 s: the trial on host3 ends during the 30 s cut
    experiment, machines = write_files(tmp_path, healthy, steps=steps, hostGracePeriod=60)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    (victim,) = running_with_metrics(tmp_path, host="host3")
    healthy.disconnect("host3")
    try:
        with open_store(tmp_path) as store:
            exp_id = snapshot(tmp_path)[0]
            before = len(store.metrics(exp_id, victim.id))
        time.sleep(30)
        during = written(healthy, victim)  # docker exec works without the network
    finally:
        healthy.reconnect("host3")
    assert len(during.reported) > before + 50, "the trial did not write during the cut"
    finish(proc, timeout=240)
    with open_store(tmp_path) as store:
        exp_id, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 6}
        seen = check_finished_trials(healthy, store, exp_id, trials, steps)
        assert len({t.parameter_id for t in trials}) == 6  # none duplicated
        assert seen[victim.id].starts[0]["pgid"] == victim.pid


def test_controller_sigkilled_then_resume_reattaches(healthy: Any, tmp_path: Path) -> None:
    steps = 30
    experiment, machines = write_files(tmp_path, healthy, steps=steps)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    first = running_with_metrics(tmp_path, count=4)
    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(timeout=30)
    exp_id, _ = snapshot(tmp_path)
    for t in first:  # the trials outlived the controller and keep writing
        assert healthy.exec(t.host, f"kill -0 {t.pid}", check=False).returncode == 0
    time.sleep(2.0)
    resumed = run(tmp_path, "resume", exp_id)
    finish(resumed, timeout=180)
    with open_store(tmp_path) as store:
        _, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 6}
        seen = check_finished_trials(healthy, store, exp_id, trials, steps)
    by_id = {t.id: t for t in trials}
    for t in first:  # same processes, not restarted
        assert by_id[t.id].pid == t.pid
        assert seen[t.id].starts[0]["pgid"] == t.pid
        assert by_id[t.id].host == t.host


def test_sshd_restart_keeps_trials_running(healthy: Any, tmp_path: Path) -> None:
    steps = 30
    experiment, machines = write_files(tmp_path, healthy, steps=steps)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    victims = running_with_metrics(tmp_path, host="host1", count=2)
    healthy.restart_sshd("host1")
    finish(proc, timeout=180)
    with open_store(tmp_path) as store:
        exp_id, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 6}
        seen = check_finished_trials(healthy, store, exp_id, trials, steps)
        messages = events(store, exp_id)
    by_id = {t.id: t for t in trials}
    for t in victims:
        assert by_id[t.id].pid == t.pid and seen[t.id].starts[0]["pgid"] == t.pid
    assert any(m.startswith("host1 unreachable") for m in messages), messages
    assert any(m.startswith("host1 back") for m in messages), messages


def test_unwritable_workdir_makes_the_host_unusable_and_says_why(
    healthy: Any, tmp_path: Path
) -> None:
    steps = 5
    experiments_dir = f"{HOME_ON_HOST}/.remotetune/hosts/experiments"
    healthy.exec("host2", f"mkdir -p {experiments_dir} && chmod a-w {experiments_dir}",
                 user="trial")
    try:
        experiment, machines = write_files(tmp_path, healthy, steps=steps)
        proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
        finish(proc, timeout=180)
    finally:
        healthy.exec("host2", f"chmod u+w {experiments_dir}", user="trial")
    with open_store(tmp_path) as store:
        exp_id, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        assert by_status(trials) == {TrialStatus.SUCCEEDED: 6}
        check_finished_trials(healthy, store, exp_id, trials, steps)
        messages = events(store, exp_id)
        states = {s.host: s for s in store.host_states(exp_id)}
    assert {t.host for t in trials} == {"host1", "host3"}
    why = [m for m in messages if m.startswith("host2 cannot be used")]
    assert why and "not writable" in why[0] and ".remotetune/hosts" in why[0], messages
    assert not states["host2"].reachable
    assert "not writable" in (states["host2"].message or "")


def test_workdir_unwritable_mid_experiment_fails_the_trials_placed_there(
    healthy: Any, tmp_path: Path
) -> None:
    steps = 10
    experiment, machines = write_files(tmp_path, healthy, steps=steps, maxTrialNumber=8)
    proc = run(tmp_path, "run", str(experiment), "--machines", str(machines))
    (first,) = running_with_metrics(tmp_path, host="host3")
    exp_id = snapshot(tmp_path)[0]
    trials_dir = f"{HOME_ON_HOST}/.remotetune/hosts/experiments/{exp_id}/trials"
    healthy.exec("host3", f"chmod a-w {trials_dir}", user="trial")
    try:
        finish(proc, timeout=180)
    finally:
        healthy.exec("host3", f"chmod u+w {trials_dir}", user="trial")
    with open_store(tmp_path) as store:
        _, trials = snapshot(tmp_path)
        assert store.experiment(exp_id).status is ExperimentStatus.DONE
        counts = by_status(trials)
        check_finished_trials(healthy, store, exp_id, trials, steps)
        messages = events(store, exp_id)
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    assert failed, f"no trial was placed on host3 after its workdir broke: {counts}"
    assert counts == {TrialStatus.SUCCEEDED: 8 - len(failed), TrialStatus.FAILED: len(failed)}
    for t in failed:  # a clear error, naming the host, the directory and the cause
        assert t.host == "host3" and t.pid is None
        assert "launch failed" in (t.message or "") and "Permission denied" in (t.message or "")
        assert trials_dir in (t.message or "")
        assert any(m.startswith(f"trial {t.id} could not be launched on host3") for m in messages)
    # host3 ran only the trial started before the fault; the others took the rest
    assert [t.id for t in trials if t.host == "host3" and t.status is TrialStatus.SUCCEEDED] == [
        first.id
    ]
