"""Benchmark: how the controller's cost grows with the number of hosts (prints figures; not a test).

Issue 12's measurement. For each N in ``--hosts`` (default 1, 8, 64) it starts N sshd servers
on loopback, each with 8 fake GPUs (tests/sshd.py, as the tests and bench_ssh.py do), then runs
one real experiment through the CLI (``python -m remotetune.cli run ... --machines ...
--plain`` as a subprocess, REMOTETUNE_HOME in a temp dir):

- each trial is a shell script that appends one metric line a second for D seconds
  (``--seconds``, default 4), with ``trialGpuNumber: 1``;
- ``trialConcurrency`` 8N and ``maxTrialNumber`` rounds x 8N (``--rounds``, default 2).

Host set-up and teardown are outside the timed part. One row per N: trials at once, refill
gap (a trial's end to the next start on the same host:GPU, from the store), wall, first
trial, the controller's CPU and peak RSS, the steady-state CPU by kind of process, and the
load average. bench/README.md says how each figure is taken.

Needs root (sshd on loopback, the test user). Everything it started is cleaned up at the end,
also on Ctrl-C or SIGTERM.

    python bench/bench_scale.py [--hosts 1,8,64] [--seconds 4] [--rounds 2] [--json]
        [--py-spy PREFIX] [--set KEY=YAML] [--quiet-trials]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _procstat import (  # noqa: E402
    CpuGroups,
    Sample,
    Usage,
    cpu_percent,
    read_proc,
    usage,
    usage_percent,
    wait_percent,
)
from sshd import TEST_USER, SshServer, ensure_test_user  # noqa: E402

GPUS_PER_HOST = 8
FAKE_GPU = {"name": "NVIDIA Fake GPU", "memory_total": 16384, "memory_used": 0, "utilization": 0}
SAMPLE_EVERY = 0.2

# One metric line a second for $1 seconds (sh only: 512 of these must not be a Python load).
TRIAL_SCRIPT = """\
#!/bin/sh
i=0
while [ "$i" -lt "$1" ]; do
  printf '{"seq": %d, "type": "PERIODICAL", "value": %d}\\n' "$i" "$i" \\
    >> "$REMOTETUNE_METRICS_FILE"
  sleep 1
  i=$((i + 1))
done
"""

# The same without a fork a second (--quiet-trials): bash waits on a FIFO nobody writes.
QUIET_TRIAL_SCRIPT = """\
#!/bin/bash
tick="$REMOTETUNE_METRICS_FILE.tick"
mkfifo "$tick" && exec 3<>"$tick" && rm -f "$tick"
i=0
while [ "$i" -lt "$1" ]; do
  printf '{"seq": %d, "type": "PERIODICAL", "value": %d}\\n' "$i" "$i" \\
    >> "$REMOTETUNE_METRICS_FILE"
  read -r -t 1 -u 3 _
  i=$((i + 1))
done
exit 0
"""


@dataclass(frozen=True)
class Row:
    hosts: int
    gpus: int
    trials: int
    metric_lines: int  # stored intermediate results, all trials (rounds x 8N x D expected)
    at_once: int
    gap_median_ms: float
    gap_p99_ms: float
    gap_max_ms: float
    wall_s: float
    ideal_s: float
    over_s: float
    first_s: float
    cpu_steady_pct: float
    cpu_wait_pct: float  # controller threads runnable but without a CPU (steady state)
    cpu_total_pct: float
    cpu_s: float
    rss_peak_mb: float
    machine_pct: float  # the whole machine's busy CPU, % of one core (steady state)
    sshd_pct: float  # the bench's sshd processes (listeners and per-connection)
    agents_pct: float  # the hosts' agents (what the sshd sessions run)
    launch_pct: float  # the hosts' cgroup minus sshd and agents: launchers, run.sh start
    trials_pct: float  # the trials' own cgroup: their shells and every `sleep`
    gpus_pct: float  # the GPU queries (the fake nvidia-smi, a Python script)
    bench_pct: float  # this script (sampling /proc every second costs)
    rest_pct: float  # everything else: other users' work, this script, the kernel
    load: float
    load_after: float
    setup_s: float


@dataclass(frozen=True)
class Trial:
    host: str
    gpu: int
    started: float
    ended: float
    status: str
    lines: int  # intermediate results stored


# ---------------------------------------------------------------------------- hosts


def _bench_workdir(server: SshServer) -> tuple[str, Path]:
    """(workdir for machines.yml, its path here): in the test user's home, never /tmp."""
    home = Path(pwd.getpwnam(TEST_USER).pw_dir)
    return f"~/.remotetune-bench/{server.server_id}", home / ".remotetune-bench" / server.server_id


def _destroy(server: SshServer) -> None:
    server.destroy()
    shutil.rmtree(_bench_workdir(server)[1], ignore_errors=True)


@contextmanager
def sshd_hosts(count: int) -> Iterator[list[SshServer]]:
    """``count`` sshd servers with 8 fake GPUs each, started in parallel; all destroyed after.

    The servers are built one by one (each build runs chpasswd, which locks /etc/shadow), then
    started from a thread pool. Each waits for its own banner, so a slow start only costs time.
    """
    ensure_test_user()
    servers: list[SshServer] = []
    try:
        for _ in range(count):
            servers.append(SshServer(gpus=[FAKE_GPU] * GPUS_PER_HOST, log_level="ERROR"))
        with ThreadPoolExecutor(max_workers=min(16, count)) as pool:
            list(pool.map(lambda s: s.start(timeout=60.0), servers))
        yield servers
    finally:
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(servers)))) as pool:
            list(pool.map(_destroy, servers))


# ---------------------------------------------------------------------------- experiment


@dataclass(frozen=True)
class Options:
    seconds: int  # D, each trial's length
    rounds: int  # trials per GPU
    timeout: float  # per CLI run
    py_spy: Path | None  # record the controller into <py_spy>-<hosts>.txt
    extra: dict[str, Any]  # experiment keys to add or override (e.g. pollInterval)
    quiet_trials: bool = False  # trials that wait without forking a sleep every second


def _wrap_nvidia_smi(server: SshServer, procs: Path) -> None:
    """The host's fake nvidia-smi, run from a wrapper that first joins the GPU-query group."""
    fake = server.bin_dir / "nvidia-smi"
    real = fake.rename(server.bin_dir / "nvidia-smi.real")
    fake.write_text(f"#!/bin/sh\necho $$ > {shlex.quote(str(procs))} 2>/dev/null\n"
                    f"exec {shlex.quote(str(real))} \"$@\"\n")
    fake.chmod(0o755)


def write_files(base: Path, servers: list[SshServer], options: Options,
                trials_group: Path | None) -> None:
    """The code dir, machines.yml and experiment.yml. With ``trials_group``, each trial's
    shell first moves itself into that cgroup (a `setup` line), so its CPU is counted apart."""
    seconds, rounds = options.seconds, options.rounds
    code = base / "code"
    code.mkdir()
    (code / "trial.sh").write_text(QUIET_TRIAL_SCRIPT if options.quiet_trials else TRIAL_SCRIPT)
    machines = {"machines": [{
        "name": f"h{k:02d}", "host": "127.0.0.1", "port": server.port, "user": TEST_USER,
        "identityFile": str(server.client_key), "knownHostsFile": str(server.known_hosts),
        "useAgent": False, "workdir": _bench_workdir(server)[0],
        **({"setup": f"echo $$ > {shlex.quote(str(trials_group))} 2>/dev/null || true"}
           if trials_group else {}),
    } for k, server in enumerate(servers)]}
    slots = GPUS_PER_HOST * len(servers)
    experiment = {
        "experimentName": f"bench-scale-{len(servers)}",
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": f"{'bash' if options.quiet_trials else 'sh'} trial.sh {seconds}",
        "trialCodeDirectory": str(code),
        "trialGpuNumber": 1,
        "trialConcurrency": slots,
        "maxTrialNumber": rounds * slots,
        "tuner": {"name": "Random"},
        **options.extra,
    }
    (base / "machines.yml").write_text(yaml.safe_dump(machines))
    (base / "experiment.yml").write_text(yaml.safe_dump(experiment))


@dataclass(frozen=True)
class Trace:
    """One CLI run: spawn and exit times, the controller's samples, the CPU usages."""

    t0: float
    t1: float
    samples: list[Sample]
    usages: list[Usage]


def _profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` into ``out`` (collapsed stacks), or None without ``out``."""
    if out is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--threads",
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes], spy: subprocess.Popen[bytes] | None) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # let it stop its trials, then insist
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if spy is not None:  # it writes its file when the target exits
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def run_cli(base: Path, servers: list[SshServer], groups: CpuGroups, timeout: float,
            profile: Path | None = None) -> Trace:
    """Run the experiment through the CLI, sampling its process (and, every second, all)."""
    env = dict(os.environ, REMOTETUNE_HOME=str(base / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    samples: list[Sample] = []
    usages: list[Usage] = []
    listeners = {s.proc.pid for s in servers if s.proc is not None}
    with open(base / "cli.log", "wb") as log:
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotetune.cli", "run", str(base / "experiment.yml"),
             "--machines", str(base / "machines.yml"), "--plain"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base,
        )
        groups.add("controller", proc.pid)
        spy = _profiler(proc.pid, profile)
        try:
            while proc.poll() is None:
                sample = read_proc(proc.pid)
                if sample is not None:
                    samples.append(sample)
                    if len(samples) % int(1 / SAMPLE_EVERY) == 1:
                        usages.append(usage(proc.pid, listeners, groups))
                if time.time() - t0 > timeout:
                    raise RuntimeError(f"the CLI ran past {timeout:.0f} s")
                time.sleep(SAMPLE_EVERY)
            t1 = time.time()
        finally:
            _stop(proc, spy)
    if proc.returncode != 0:
        tail = (base / "cli.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the CLI exited {proc.returncode}:\n{tail}")
    return Trace(t0, t1, samples, usages)


def read_trials(db: Path) -> list[Trial]:
    """Every trial of the (only) experiment, from the store opened read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "select host, gpus, started_at, ended_at, status, intermediate_count from trials"
        ).fetchall()
    finally:
        conn.close()
    trials = []
    for host, gpus, started, ended, status, lines in rows:
        indices = json.loads(gpus) if gpus else []
        if started is None or ended is None or len(indices) != 1:
            raise RuntimeError(f"trial on {host} gpus {gpus}: started {started}, ended {ended}, "
                               f"status {status}")
        trials.append(Trial(host, int(indices[0]), float(started), float(ended), status,
                            int(lines or 0)))
    return trials


# ---------------------------------------------------------------------------- figures


def most_at_once(trials: list[Trial]) -> int:
    events = sorted([(t.started, 1) for t in trials] + [(t.ended, -1) for t in trials])
    running = best = 0
    for _, step in events:  # at equal times the end (-1) sorts first
        running += step
        best = max(best, running)
    return best


def refill_gaps(trials: list[Trial]) -> list[float]:
    """From a trial's end to the next start on the same host:GPU, in seconds."""
    by_slot: dict[tuple[str, int], list[Trial]] = defaultdict(list)
    for trial in trials:
        by_slot[(trial.host, trial.gpu)].append(trial)
    gaps = []
    for slot in by_slot.values():
        slot.sort(key=lambda t: t.started)
        gaps += [nxt.started - prev.ended for prev, nxt in zip(slot, slot[1:], strict=False)]
    return gaps


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def steady_usage(usages: list[Usage], start: float, end: float) -> dict[str, float]:
    inside = [u for u in usages if start <= u.time <= end]
    if len(inside) < 2:
        return defaultdict(lambda: float("nan"))
    return usage_percent(inside[0], inside[-1])


def figures(hosts: int, trials: list[Trial], trace: Trace, seconds: int, rounds: int) -> Row:
    t0, t1, samples = trace.t0, trace.t1, trace.samples
    gaps = refill_gaps(trials) or [float("nan")]
    first_start = min(t.started for t in trials)
    last_end = max(t.ended for t in trials)
    quarter = (last_end - first_start) / 4
    last = samples[-1] if samples else Sample(t0, float("nan"), 0, 0, {})
    cpu = steady_usage(trace.usages, first_start + quarter, last_end - quarter)
    return Row(
        hosts=hosts, gpus=hosts * GPUS_PER_HOST, trials=len(trials),
        metric_lines=sum(t.lines for t in trials),
        at_once=most_at_once(trials),
        gap_median_ms=1000 * statistics.median(gaps), gap_p99_ms=1000 * percentile(gaps, 99),
        gap_max_ms=1000 * max(gaps),
        wall_s=t1 - t0, ideal_s=float(rounds * seconds), over_s=t1 - t0 - rounds * seconds,
        first_s=first_start - t0,
        cpu_steady_pct=cpu_percent(samples, first_start + quarter, last_end - quarter),
        cpu_wait_pct=wait_percent(samples, first_start + quarter, last_end - quarter),
        cpu_total_pct=100.0 * last.cpu / max(1e-9, last.time - t0), cpu_s=last.cpu,
        rss_peak_mb=max((s.hwm_kb for s in samples), default=0) / 1024,
        machine_pct=cpu["machine"], sshd_pct=cpu["sshd"], agents_pct=cpu["agents"],
        launch_pct=cpu["launches"], trials_pct=cpu["trials"], gpus_pct=cpu["gpus"],
        bench_pct=cpu["bench"], rest_pct=cpu["rest"], load=float("nan"),
        load_after=os.getloadavg()[0], setup_s=0.0,
    )


def measure(hosts: int, options: Options) -> Row:
    """Set up N hosts (not timed), run the experiment through the CLI, tear down."""
    load = os.getloadavg()[0]
    setup0 = time.time()
    groups = CpuGroups(f"rt-bench-scale-{os.getpid()}")
    try:
        with sshd_hosts(hosts) as servers, \
                tempfile.TemporaryDirectory(prefix="rt-scale-") as tmp:
            uid = pwd.getpwnam(TEST_USER).pw_uid
            trials_group, gpus_group = groups.make("trials", uid), groups.make("gpus", uid)
            for server in servers:  # sshd, its sessions, the agents, what they start
                assert server.proc is not None
                groups.add("hosts", server.proc.pid)
                if gpus_group is not None:
                    _wrap_nvidia_smi(server, gpus_group)
            setup = time.time() - setup0
            base = Path(tmp)
            write_files(base, servers, options, trials_group)
            profile = None if options.py_spy is None else Path(f"{options.py_spy}-{hosts}.txt")
            trace = run_cli(base, servers, groups, options.timeout, profile)
            trials = read_trials(base / "home" / "remotetune.db")
    finally:
        groups.remove()
    expected = options.rounds * hosts * GPUS_PER_HOST
    bad = [t for t in trials if t.status != "SUCCEEDED"]
    if len(trials) != expected or bad:
        raise RuntimeError(f"{len(trials)} trials of {expected}, {len(bad)} did not succeed")
    row = figures(hosts, trials, trace, options.seconds, options.rounds)
    return Row(**dict(asdict(row), load=load, setup_s=setup))


# ---------------------------------------------------------------------------- output


HEADER = ("| hosts × GPUs | trials at once | refill gap median / p99 (max) | wall (ideal, over) "
          "| first trial after | controller CPU steady (waiting for a CPU) / whole | peak RSS "
          "| steady CPU: sshd / agents / launches / trials / nvidia-smi / bench / others (machine) "
          "| load before → after "
          "| host set-up |")


def table_row(r: Row) -> str:
    return (f"| {r.hosts} × {GPUS_PER_HOST} | {r.at_once} | {r.gap_median_ms:,.0f} / "
            f"{r.gap_p99_ms:,.0f} ms ({r.gap_max_ms:,.0f}) | {r.wall_s:.1f} s ({r.ideal_s:.0f} s, "
            f"+{r.over_s:.1f}) | {r.first_s:.2f} s | {r.cpu_steady_pct:.0f}% "
            f"({r.cpu_wait_pct:.0f}%) / "
            f"{r.cpu_total_pct:.0f}% ({r.cpu_s:.1f} s) | {r.rss_peak_mb:.0f} MB | "
            f"{r.sshd_pct:.0f} / {r.agents_pct:.0f} / {r.launch_pct:.0f} / {r.trials_pct:.0f} / "
            f"{r.gpus_pct:.0f} / {r.bench_pct:.0f} / "
            f"{r.rest_pct:.0f}% "
            f"({r.machine_pct:.0f}%) | {r.load:.1f} → {r.load_after:.1f} | {r.setup_s:.1f} s |")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _host_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("a comma-separated list of host counts >= 1")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=_host_counts, default=[1, 8, 64],
                        help="comma-separated host counts (default 1,8,64)")
    parser.add_argument("--seconds", type=int, default=4, help="trial length D (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="trials per GPU (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--py-spy", type=Path, metavar="PREFIX",
                        help="py-spy the controller into PREFIX-<hosts>.txt (collapsed stacks)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                        help="an experiment key to add or override, e.g. --set pollInterval=0.2")
    parser.add_argument("--quiet-trials", action="store_true",
                        help="trials wait on a FIFO instead of forking `sleep 1` each second")
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        extra[key] = yaml.safe_load(value)
    options = Options(args.seconds, args.rounds, args.timeout, args.py_spy, extra,
                      args.quiet_trials)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up as on Ctrl-C
    rows: list[Row] = []
    if not args.json:
        print(time.strftime("%Y-%m-%d %H:%M %Z"), f"{os.cpu_count()} cores, load",
              " ".join(f"{x:.1f}" for x in os.getloadavg()),
              f"- {args.rounds} rounds of {args.seconds} s, trialGpuNumber 1,",
              "quiet trials (no fork a second)" if args.quiet_trials else "sh + sleep trials",
              " ".join(f"{k}={v}" for k, v in extra.items()), flush=True)
        print(HEADER)
        print("|" + "---|" * (HEADER.count("|") - 1))
    for hosts in args.hosts:
        try:
            rows.append(measure(hosts, options))
        except KeyboardInterrupt:
            sys.exit("interrupted: the hosts, their processes and the temp files are removed")
        if not args.json:
            print(table_row(rows[-1]), flush=True)
        if rows[-1].metric_lines != rows[-1].trials * args.seconds:
            print(f"warning: {rows[-1].metric_lines} metric lines stored, expected "
                  f"{rows[-1].trials * args.seconds}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
