"""Early stopping end to end: the CLI as a subprocess, trials on a real sshd "host".

Medianstop stops the one poor trial of five. The tests check on the host that its process
group is gone (the trial and the child it started), that the store holds its metrics up to
the stop, that the tuner observed it with its last intermediate (NNI's rule), and that a
controller killed with SIGKILL and resumed keeps the assessor's decision.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sshd import SshServer

from remotetune.model import TrialRecord, TrialStatus
from remotetune.view import Snapshot, render
from tests.test_run_ssh import (
    _remove_workdirs,  # noqa: F401 - autouse: removes the host workdirs
    host_entry,
    open_store,
    pid_alive,
    run_cli,
    start_cli,
    the_experiment,
    wait_for,
    write_files,
)

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]
S = TrialStatus
XS = [0.9, 0.95, 0.1, 0.97, 0.99]  # the third is the poor one

TRIAL = '''
import os, subprocess, time
from remotetune import trial

p = trial.get_next_parameter()
x = float(p["x"])
here = os.environ["REMOTETUNE_TRIAL_DIR"]
child = subprocess.Popen(["sleep", "300"])  # in the trial's process group
with open(os.path.join(here, "pids.txt"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
with open(os.path.join(here, "reported.txt"), "a") as log:
    for i in range(10):
        value = round(x * (0.5 + 0.05 * i), 6)
        trial.report_intermediate_result(value)
        log.write(f"{value!r}\\n")
        log.flush()
        time.sleep(0.3)
child.kill()
trial.report_final_result(x)
'''

TUNER = '''
import json
from remotetune.tuners import Tuner

class Listed(Tuner):
    """Suggests x from a list, in order; logs every observe to a file."""

    def __init__(self, space, optimize_mode="maximize", *, seed=None, xs=(), log=""):
        super().__init__(space, optimize_mode, seed=seed)
        self.xs, self.log = list(xs), log

    def suggest(self, parameter_id, history):
        return {"x": self.xs[parameter_id]} if parameter_id < len(self.xs) else None

    def observe(self, parameter_id, parameters, value, status):
        with open(self.log, "a") as f:
            f.write(json.dumps([parameter_id, value, status.value]) + "\\n")
'''


def setup(tmp_path: Path, ssh_host: SshServer) -> tuple[Path, Path, Path]:
    tuners = tmp_path / "tuners"
    tuners.mkdir()
    (tuners / "listed.py").write_text(TUNER)
    log = tmp_path / "observed.jsonl"
    experiment, machines = write_files(
        tmp_path, [host_entry(ssh_host, "h")], {"x": {"_type": "uniform", "_value": [0, 1]}},
        trialConcurrency=1, maxTrialNumber=len(XS),
        tuner={"className": "listed.Listed", "codeDirectory": str(tuners),
               "classArgs": {"xs": XS, "log": str(log)}},
        assessor={"name": "Medianstop", "classArgs": {"start_step": 2}},
    )
    (tmp_path / "code" / "trial.py").write_text(TRIAL)
    return experiment, machines, log


def observed(log: Path) -> list[tuple[int, float | None, str]]:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore


def trial_processes(trial_dir: str) -> list[int]:
    """Processes on the host (this machine) started for ``trial_dir``."""
    marker = f"REMOTETUNE_TRIAL_DIR={trial_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in env and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def reported(trial: TrialRecord) -> list[float]:
    assert trial.trial_dir is not None
    return [float(v) for v in Path(trial.trial_dir, "reported.txt").read_text().split()]


def check_stopped(tmp_path: Path, exp_id: str, trials: list[TrialRecord]) -> TrialRecord:
    assert [t.status for t in trials] == [S.SUCCEEDED, S.SUCCEEDED, S.EARLY_STOPPED,
                                          S.SUCCEEDED, S.SUCCEEDED]
    stopped = trials[2]
    assert stopped.message is not None and stopped.message.startswith(
        "stopped by Medianstop: best 0.055 at step 2 < median"), stopped.message
    with open_store(tmp_path) as store:
        stored = [p.value for p in store.metrics(exp_id, stopped.id)]
        events = [e.message for e in store.events(exp_id, limit=None)]
    # its metrics up to the stop are stored: a prefix of what it wrote, the stop step included
    assert 2 <= len(stored) == stopped.intermediate_count < 10
    assert stored == reported(stopped)[:len(stored)]
    assert stopped.latest_intermediate == stored[-1]
    assert [m for m in events if "stopped by Medianstop" in m] == [
        f"trial {stopped.id} {stopped.message}"]  # decided once
    return stopped


def test_an_early_stopped_trial_is_killed_on_its_host_and_the_tuner_learns_it(
    ssh_host: SshServer, tmp_path: Path
) -> None:
    experiment, machines, log = setup(tmp_path, ssh_host)
    result = run_cli(tmp_path, "run", str(experiment), "--machines", str(machines), "--plain")
    assert result.returncode == 0, result.stderr + result.stdout
    exp_id, trials = the_experiment(tmp_path)
    stopped = check_stopped(tmp_path, exp_id, trials)
    # On the host: the trial and the child in its process group are gone.
    assert stopped.trial_dir is not None
    pids = [int(p) for p in Path(stopped.trial_dir, "pids.txt").read_text().split()]
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)
    assert trial_processes(stopped.trial_dir) == []
    # The tuner saw it, with its last intermediate as its value.
    seen = observed(log)
    assert (stopped.parameter_id, stopped.latest_intermediate, "EARLY_STOPPED") in seen
    assert sorted(pid for pid, _, _ in seen) == list(range(len(XS)))
    check_visible(tmp_path, exp_id, stopped)


def check_visible(tmp_path: Path, exp_id: str, stopped: TrialRecord) -> None:
    """``trials --json``, ``trials``, ``show`` and the live view say it was stopped, where
    and why."""
    result = run_cli(tmp_path, "trials", exp_id, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [r for r in json.loads(result.stdout) if r["id"] == stopped.id]
    assert row["status"] == "EARLY_STOPPED" and row["message"] == stopped.message
    assert row["early_stopped"] == {"step": stopped.intermediate_count,
                                    "reason": stopped.message}
    assert sum(r["early_stopped"] is not None for r in json.loads(result.stdout)) == 1
    result = run_cli(tmp_path, "trials", exp_id, env={"COLUMNS": "250"})
    line = next(t for t in result.stdout.splitlines() if stopped.id in t)
    assert "EARLY_STOPPED" in line and "stopped by Medianstop" in line, result.stdout
    result = run_cli(tmp_path, "show", exp_id, stopped.id, env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    assert f"after step {stopped.intermediate_count}: stopped by Medianstop" in result.stdout
    with open_store(tmp_path) as store:
        snap = Snapshot(store.experiment(exp_id), tuple(store.trials(exp_id)), (),
                        tuple(store.events(exp_id)), now=time.time())
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(render(snap))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "1 early-stopped" in out, out
    (row_line,) = [t for t in out.splitlines() if stopped.id in t and "EARLY_STOPPED" in t]
    assert f"stop@{stopped.intermediate_count}" in row_line
    assert f"{stopped.id} {stopped.message}"[:60] in out  # the event, with its reason


def test_resume_after_sigkill_keeps_the_assessors_decisions(
    ssh_host: SshServer, tmp_path: Path
) -> None:
    experiment, machines, log = setup(tmp_path, ssh_host)
    proc = start_cli(tmp_path, "run", str(experiment), "--machines", str(machines), "--plain")

    def fourth_running() -> Any:
        try:
            _, trials = the_experiment(tmp_path)
        except AssertionError:
            return None
        return len(trials) >= 4 and trials[3].pid and trials[2].status is S.EARLY_STOPPED

    try:
        wait_for(fourth_running, timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    exp_id, before = the_experiment(tmp_path)
    result = run_cli(tmp_path, "resume", exp_id, "--plain")
    assert result.returncode == 0, result.stderr + result.stdout
    exp_id, trials = the_experiment(tmp_path)
    stopped = check_stopped(tmp_path, exp_id, trials)
    assert stopped == before[2]  # not resumed, not re-decided: the same record
    assert trials[3].pid == before[3].pid  # the running one was reattached, not restarted
    # The restored tuner learned the stopped trial as the live one did.
    assert [o for o in observed(log) if o[0] == stopped.parameter_id] == [
        (stopped.parameter_id, stopped.latest_intermediate, "EARLY_STOPPED")] * 2
