"""The agent's Slurm ops on their own: the shipped bundle's agent, driven over its pipe,
with stand-in squeue/sacct/scontrol/sbatch scripts on PATH that log every call (pure
logic: which commands run, how often, with which arguments). The real Slurm is in
tests/test_slurm_cluster.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotetune.backends.hostpool import _bundle
from remotetune.backends.slurm import job_status, parse_squeue
from remotetune.backends.slurm._ops import finished_entries

FAKES = {
    "squeue": 'echo "$0 $*" >> "$LOG"; cat "$STATE/squeue"',
    "sacct": 'echo "$0 $*" >> "$LOG"; echo "Slurm accounting storage is disabled" >&2; exit 1',
    "scontrol": 'echo "$0 $*" >> "$LOG"; id="${@: -1}"\n'
                'if [ -f "$STATE/job$id" ]; then cat "$STATE/job$id"; else\n'
                'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; fi',
    "sbatch": 'echo "$0 $*" >> "$LOG"; echo "4242;cluster1"',
    "scancel": 'echo "$0 $*" >> "$LOG"',
}


class Agent:
    def __init__(self, tmp: Path) -> None:
        lib, bin_dir, self.state, self.work = (tmp / n for n in ("lib", "bin", "state", "w"))
        for d in (lib, bin_dir, self.state, self.work):
            d.mkdir()
        tarfile.open(fileobj=io.BytesIO(_bundle.bundle()[1])).extractall(lib)
        for name, body in FAKES.items():
            (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
            (bin_dir / name).chmod(0o755)
        self.log = tmp / "calls.log"
        self.log.touch()
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(self.log),
               "STATE": str(self.state), "PYTHONPATH": str(lib)}
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(lib / "remotetune" / "_host" / "agent.py"),
             str(self.work)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None and json.loads(self.proc.stdout.readline())["ready"]
        self.ids = 0

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.ids += 1
        self.proc.stdin.write(json.dumps({"id": self.ids, "op": op, **fields}).encode() + b"\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def calls(self) -> list[str]:
        return [Path(line.split()[0]).name + " " + " ".join(line.split()[1:])
                for line in self.log.read_text().splitlines()]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path)
    yield a
    a.proc.kill()
    a.proc.wait()


def test_submit_writes_files_runs_sbatch_once_and_records_the_job(agent: Agent) -> None:
    argv = ["sbatch", "--parsable", "--gres=gpu:1"]
    first = agent.call("slurm_submit", trial_dir="t/1", files={"run.sh": "true\n"},
                       script="#!/bin/bash\n", argv=argv)
    assert first["ok"] and (first["job_id"], first["cluster"], first["existing"]) == (
        "4242", "cluster1", False)
    trial = agent.work / "t" / "1"
    assert (trial / "run.sh").read_text() == "true\n"
    assert os.access(trial / "job.sh", os.X_OK)
    assert json.loads((trial / "job.json").read_text())["job_id"] == "4242"
    again = agent.call("slurm_submit", trial_dir="t/1", files={}, script="", argv=argv)
    assert (again["job_id"], again["existing"]) == ("4242", True)
    assert agent.calls() == [f"sbatch --parsable --gres=gpu:1 {trial}/job.sh"]
    refused = agent.call("slurm_submit", trial_dir="t/2", files={}, script="",
                         argv=["rm", "-rf", "/"])
    assert not refused["ok"] and "sbatch --parsable" in refused["error"]


def test_poll_runs_one_squeue_per_cycle_and_scontrol_only_for_forgotten_jobs(
    agent: Agent,
) -> None:
    (agent.state / "squeue").write_text("7|RUNNING|None|0|\n8|PENDING|Resources|0|\n")
    (agent.state / "job9").write_text("JobId=9 JobName=x JobState=TIMEOUT Reason=TimeLimit "
                                      "ExitCode=0:15\n")
    trial = agent.work / "t" / "7"
    trial.mkdir(parents=True)
    (trial / "metrics.jsonl").write_text('{"a": 1}\n{"b"')
    jobs = [{"job_id": "7", "dir": "t/7", "offset": 0}, {"job_id": "8", "dir": "t/8"},
            {"job_id": "9", "dir": "t/9"}, {"job_id": "10", "dir": "t/10"}]
    for _ in range(2):
        answer = agent.call("slurm_poll", jobs=jobs)
        assert answer["ok"], answer
    assert [c.split()[0] for c in agent.calls()] == [
        "squeue", "sacct", "scontrol", "scontrol",  # sacct once: it said "disabled"
        "squeue", "scontrol", "scontrol"]
    assert agent.calls()[0] == ("squeue --noheader --states=all --jobs=7,8,9,10 "
                                "--Format=JobID:|,State:|,Reason:|,exit_code:|")
    first = answer["trials"][0]
    assert (first["lines"], first["offset"], first["exists"]) == (['{"a": 1}'], 9, True)
    entries, accounting = finished_entries(answer["sacct"], answer["scontrol"])
    assert accounting is None  # sacct was not asked again
    entries.update(parse_squeue(answer["squeue"]["stdout"]))
    assert [job_status(j, entries.get(j), None).trial_status.value
            for j in ("7", "8", "9", "10")] == ["RUNNING", "WAITING", "FAILED", "LOST"]


def test_cancel_is_one_scancel_and_checks_ids(agent: Agent) -> None:
    assert agent.call("slurm_cancel", job_ids=["7", "8"])["ok"]
    assert agent.call("slurm_cancel", job_ids=[])["ok"]
    bad = agent.call("slurm_cancel", job_ids=["7; rm -rf ~"])
    assert not bad["ok"] and "not a job id" in bad["error"]
    assert agent.calls() == ["scancel 7 8"]


def test_the_jobs_launcher_runs_the_trial_from_the_shipped_bundle(agent: Agent) -> None:
    """What a Slurm job runs (``python slurmops.py run DIR``, slurm_commands.py), here as a
    plain process: it must find every helper it borrows from the bundle's agent."""
    from remotetune.backends.hostpool._session import launch_files

    trial_dir = agent.work / "t1"
    trial_dir.mkdir()
    files = launch_files(parameters={"x": 1}, parameter_id=0,
                         script='echo "ran with $CUDA_VISIBLE_DEVICES"\nexit 3\n',
                         cwd=str(trial_dir), env={"CUDA_VISIBLE_DEVICES": "1"},
                         max_duration=None, kill_grace=1.0)
    for name, text in files.items():
        (trial_dir / name).write_text(text)
    lib = agent.work.parent / "lib"
    done = subprocess.run(
        [sys.executable, str(lib / "remotetune" / "_host" / "slurmops.py"), "run",
         str(trial_dir)], env={**os.environ, "PYTHONPATH": str(lib)}, timeout=30,
        capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert json.loads((trial_dir / "exit.json").read_text())["code"] == 3
    assert json.loads((trial_dir / "pid.json").read_text())["pid"] > 0
    assert (trial_dir / "stdout.log").read_text() == "ran with 1\n"
