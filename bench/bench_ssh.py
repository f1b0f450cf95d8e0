"""Benchmark: remotetune over SSH, side by side with NNI 3.0 (prints figures; not a test).

Needs root (it starts Debian's sshd on loopback through tests/sshd.py, as the tests do).

1. workload: 40 trials of `sleep 0.6`, trialConcurrency 4, on ONE loopback sshd host.
   remotetune runs through its CLI (`python -m remotetune.cli run ... --machines`), NNI 3.0
   through `nnictl create` (remote mode, same sshd, polled over its REST API), one after
   the other in the same run. Wall time: from launching the command to the end of the last
   trial (remotetune: the CLI exits; NNI: the last trial's endTime). First trial: from
   launching the command to the first trial's start time.
   Goals: remotetune >= 4x faster than NNI in wall time; first trial within 1.5 s.
2. poll: one metrics cycle over 256 running trials on 4 sshd hosts (64 each, each writing
   metric lines), the 4 hosts polled in parallel through the controller's host workers.
   Goals: <= 50 ms wall, <= 25 ms controller CPU (time.process_time, all threads).

NNI runs from its own venv (default /tmp/nni-venv: `python3.11 -m venv /tmp/nni-venv &&
/tmp/nni-venv/bin/pip install nni==3.0`). It logs in as root (the venv's interpreter lives
under /root, which the test user cannot reach) with the server's client key, and its
`pythonPath` is the venv's bin directory, so the host finds `nni` there.

    python bench/bench_ssh.py [--part all|workload|poll] [--repeat 1] [--nni-venv DIR]
"""

from __future__ import annotations

import argparse
import os
import pwd
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import _nni  # noqa: E402
from sshd import TEST_USER, SshServer, free_port  # noqa: E402

from remotetune.backends.hostpool._session import HostSession, PollItem, launch_files  # noqa: E402
from remotetune.backends.hostpool._workers import Completion, HostWorker, Op  # noqa: E402
from remotetune.model import TrialStatus  # noqa: E402
from remotetune.store import Store  # noqa: E402

NNI_REFERENCE = "NNI 3.0 reference on this kind of machine: wall 32.5-33 s, first trial 17.7-18.3 s"


@dataclass(frozen=True)
class WorkloadResult:
    wall: float
    first: float
    trials: int
    fill: float | None = None  # remotetune: the first fill's last start - its first (s)
    per_round: float | None = None  # remotetune: median trial length - sleep + refill gap (s)
    end: float | None = None  # remotetune: the last trial's end to the CLI's exit (s)


def _bench_workdir(server: SshServer) -> tuple[str, Path]:
    """(workdir for machines.yml, its path here): in the test user's home, never /tmp."""
    home = Path(pwd.getpwnam(TEST_USER).pw_dir)
    return f"~/.remotetune-bench/{server.server_id}", home / ".remotetune-bench" / server.server_id


@contextmanager
def _servers(count: int, **kwargs: Any) -> Iterator[list[SshServer]]:
    servers: list[SshServer] = []
    try:
        for _ in range(count):
            servers.append(SshServer(**kwargs).start())
        yield servers
    finally:
        for server in servers:
            server.destroy()
            shutil.rmtree(_bench_workdir(server)[1], ignore_errors=True)


# ---------------------------------------------------------------------------- remotetune


def run_remotetune(server: SshServer, n: int, concurrency: int, sleep: float) -> WorkloadResult:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        code = base / "code"
        code.mkdir()
        (code / "README").write_text("sleep trial\n")
        workdir, _ = _bench_workdir(server)
        machines = {"machines": [{
            "name": "bench", "host": "127.0.0.1", "port": server.port, "user": TEST_USER,
            "identityFile": str(server.client_key), "knownHostsFile": str(server.known_hosts),
            "useAgent": False, "workdir": workdir, "slots": concurrency,
        }]}
        experiment = {
            "experimentName": "bench-ssh",
            "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
            "trialCommand": f"sleep {sleep}",
            "trialCodeDirectory": str(code),
            "trialConcurrency": concurrency,
            "maxTrialNumber": n,
            "tuner": {"name": "Random"},
        }
        (base / "machines.yml").write_text(yaml.safe_dump(machines))
        (base / "experiment.yml").write_text(yaml.safe_dump(experiment))
        env = dict(os.environ, REMOTETUNE_HOME=str(base / "home"),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "remotetune.cli", "run", str(base / "experiment.yml"),
             "--machines", str(base / "machines.yml"), "--plain"],
            env=env, capture_output=True, text=True, timeout=300, cwd=base,
        )
        wall = time.time() - t0
        if result.returncode != 0:
            raise RuntimeError(f"remotetune failed ({result.returncode}):\n{result.stderr}")
        with Store(base / "home" / "remotetune.db") as store:
            (exp,) = store.experiments()
            trials = store.trials(exp.id)
        ok = [t for t in trials if t.status is TrialStatus.SUCCEEDED]
        if len(ok) != n:
            raise RuntimeError(f"remotetune: {len(ok)} of {n} trials succeeded")
        starts = sorted(t.started_at for t in trials if t.started_at)
        ends = sorted(t.ended_at for t in trials if t.ended_at)
        lengths = [t.ended_at - t.started_at - sleep for t in ok if t.ended_at and t.started_at]
        gaps = [next(s for s in starts if s >= e) - e for e in ends if e <= starts[-1]]
        per_round = statistics.median(lengths) + statistics.median(gaps) if gaps else None
        return WorkloadResult(wall, starts[0] - t0, len(ok), starts[concurrency - 1] - starts[0],
                              per_round, t0 + wall - ends[-1])


# ---------------------------------------------------------------------------- NNI


def run_nni(server: SshServer, venv: Path, n: int, concurrency: int,
            sleep: float) -> WorkloadResult:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        code = base / "code"
        code.mkdir()
        (code / "README").write_text("sleep trial\n")
        port = free_port()
        config = {
            "experimentName": "bench-nni",
            "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
            "trialCommand": f"sleep {sleep}",
            "trialCodeDirectory": str(code),
            "trialConcurrency": concurrency,
            "maxTrialNumber": n,
            "tuner": {"name": "Random"},
            "nniManagerIp": "127.0.0.1",
            "experimentWorkingDirectory": str(base / "nni-experiments"),
            "trainingService": {"platform": "remote", "machineList": [{
                "host": "127.0.0.1", "port": server.port, "user": "root",
                "sshKeyFile": str(server.client_key), "pythonPath": str(venv / "bin"),
            }]},
        }
        (base / "config.yml").write_text(yaml.safe_dump(config))
        t0 = time.time()
        exp_id = None
        try:
            with _nni.created(venv, base / "config.yml", port) as exp_id:
                status, jobs = _nni.wait(port, 600)
                if status.get("status") != "DONE":
                    raise RuntimeError(f"NNI ended {status}")
                ok = [j for j in jobs if j.get("status") == "SUCCEEDED"]
                if len(ok) != n:
                    raise RuntimeError(f"NNI: {len(ok)} of {n} trials succeeded")
                first = min(j["startTime"] for j in jobs) / 1000 - t0
                wall = max(j["endTime"] for j in jobs) / 1000 - t0
                return WorkloadResult(wall, first, len(ok))
        finally:
            if exp_id:  # the trial files NNI left on the "host" (root's home)
                shutil.rmtree(Path("/root/nni-experiments") / exp_id, ignore_errors=True)


# ---------------------------------------------------------------------------- poll cycle

# A trial that writes 4 metric lines when it starts, then one every 0.5 s (one Python
# process, no forks: 256 of them must not be the load the benchmark measures).
_METRIC_TRIAL = (
    "exec python3 -c 'import json,os,time\n"
    "f=open(os.environ[\"REMOTETUNE_METRICS_FILE\"],\"a\")\n"
    "for i in range(1000000):\n"
    " f.write(json.dumps({\"type\":\"PERIODICAL\",\"value\":i,\"seq\":i})+\"\\n\"); f.flush()\n"
    " if i>=3: time.sleep(0.5)\n'\n"
)


def bench_poll(hosts: int, per_host: int, cycles: int) -> dict[str, float]:
    completions: queue.Queue[Completion] = queue.Queue()
    with _servers(hosts, log_level="ERROR") as servers:
        workers: list[HostWorker] = []
        items: dict[str, list[PollItem]] = {}
        pgids: dict[str, list[int]] = {}
        try:
            for server in servers:
                spec = server.spec(workdir=_bench_workdir(server)[0])
                session = HostSession(spec)
                session.open()
                worker = HostWorker(spec, session, completions.put)
                workers.append(worker)
                items[worker.name], pgids[worker.name] = [], []
                for k in range(per_host):
                    trial_dir = session.trial_dir("bench", f"t{k:03d}")
                    absolute = session.absolute(trial_dir)
                    files = launch_files(
                        parameters={}, parameter_id=k, script=_METRIC_TRIAL, cwd=absolute,
                        env={"REMOTETUNE_METRICS_FILE": f"{absolute}/metrics.jsonl"},
                        max_duration=None, kill_grace=1.0,
                    )
                    started = session.launch(f"t{k:03d}", trial_dir, files)
                    assert started.handle.ref is not None
                    pgids[worker.name].append(started.handle.ref)
                    items[worker.name].append(PollItem(f"t{k:03d}", trial_dir, 0))
            time.sleep(1.0)  # every trial has written lines
            walls, cpus, lines = [], [], []
            for cycle in range(cycles + 1):
                cpu0, t0 = time.process_time(), time.perf_counter()
                for worker in workers:
                    worker.submit(Op.POLL, worker.session.poll, items[worker.name])
                got = 0
                for _ in workers:
                    done = completions.get(timeout=30)
                    if done.error is not None:
                        raise done.error
                    dirs = {i.trial_id: i.trial_dir for i in items[done.host]}
                    got += sum(len(r.lines) for r in done.result)
                    items[done.host] = [PollItem(r.trial_id, dirs[r.trial_id], r.offset)
                                        for r in done.result]
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                if cycle:  # the first cycle reads the backlog
                    walls.append(wall)
                    cpus.append(cpu)
                    lines.append(got)
                time.sleep(0.25)
            running = sum(1 for name in items for _ in items[name])
            return {
                "trials": running,
                "wall_median": statistics.median(walls), "wall_min": min(walls),
                "cpu_median": statistics.median(cpus), "cpu_min": min(cpus),
                "lines_median": statistics.median(lines),
            }
        finally:
            for worker in workers:
                for pgid in pgids.get(worker.name, []):
                    with suppress(Exception):
                        worker.session.kill(pgid, 1.0)
                worker.shutdown(wait=True)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "workload", "poll"], default="all")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.6)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--nni-venv", type=Path, default=_nni.DEFAULT_VENV)
    parser.add_argument("--no-nni", action="store_true")
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M"), f"{os.cpu_count()} cores, load",
          " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
    if args.part in ("all", "workload"):
        for _ in range(args.repeat):
            with _servers(1, log_level="ERROR") as (server,):
                rt = run_remotetune(server, args.trials, args.concurrency, args.sleep)
                print(f"remotetune: {args.trials} trials of sleep {args.sleep} at "
                      f"{args.concurrency} on 1 sshd host: wall {rt.wall:.2f} s, first trial "
                      f"running after {rt.first:.2f} s (goal <= 1.5 s); first fill spread "
                      f"{(rt.fill or 0) * 1000:.1f} ms, per round {(rt.per_round or 0) * 1000:.1f}"
                      " ms (trial length over the sleep + refill gap, medians); last end to "
                      f"exit {(rt.end or 0) * 1000:.0f} ms", flush=True)
                nni_venv = args.nni_venv
                if args.no_nni:
                    print(f"NNI skipped (--no-nni). {NNI_REFERENCE}")
                elif not (nni_venv / "bin" / "nnictl").exists():
                    print(f"NNI not run: {nni_venv}/bin/nnictl not found. {NNI_REFERENCE}")
                else:
                    try:
                        nni = run_nni(server, nni_venv, args.trials, args.concurrency,
                                      args.sleep)
                    except Exception as exc:  # noqa: BLE001 - report, then the reference
                        print(f"NNI failed: {exc}\n{NNI_REFERENCE}")
                    else:
                        print(f"NNI 3.0:    same workload and sshd: wall {nni.wall:.2f} s, "
                              f"first trial after {nni.first:.2f} s")
                        print(f"ratio: remotetune {nni.wall / rt.wall:.1f}x faster in wall "
                              f"time (goal >= 4x), first trial {nni.first / rt.first:.0f}x "
                              "sooner", flush=True)
    if args.part in ("all", "poll"):
        r = bench_poll(4, 64, args.cycles)
        print(f"poll cycle over {r['trials']:.0f} running trials on 4 sshd hosts (parallel, "
              f"{r['lines_median']:.0f} new lines per cycle): wall median "
              f"{r['wall_median'] * 1000:.1f} ms (min {r['wall_min'] * 1000:.1f}; goal <= 50), "
              f"controller CPU median {r['cpu_median'] * 1000:.1f} ms "
              f"(min {r['cpu_min'] * 1000:.1f}; goal <= 25)")


if __name__ == "__main__":
    main()
