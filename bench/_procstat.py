"""What processes cost, from /proc (for bench_scale.py): one process's CPU and RSS, and the
whole machine's CPU split by kind (the controller, the bench's sshd servers, the hosts' agents,
the trials).

Linux only. CPU times are in clock ticks per process, so a process that lives a few
milliseconds often shows 0; the machine's total (/proc/stat) has no such loss.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

@dataclass(frozen=True)
class Sample:
    time: float
    cpu: float  # seconds of CPU, all threads
    rss_kb: int
    hwm_kb: int
    waits: dict[int, float]  # thread id -> seconds runnable but waiting for a CPU (schedstat)


@dataclass(frozen=True)
class Usage:
    """Cumulative CPU seconds at one time: the machine's busy time and per-process times."""

    time: float
    machine: float
    procs: dict[int, tuple[str, float]]  # pid -> (kind, utime + stime)
    groups: dict[str, float]  # cgroup name -> CPU seconds of every process it ever held


class CpuGroups:
    """cgroup-v1 ``cpuacct`` groups: the exact CPU of a process tree, short-lived processes
    included (per-process figures in /proc miss them). Processes forked later stay in the
    group. Empty (and harmless) where /sys/fs/cgroup/cpuacct cannot be written."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.paths: dict[str, Path] = {}
        self.broken = False

    def make(self, name: str, owner: int | None = None) -> Path | None:
        """The group's ``cgroup.procs`` (made if new; ``owner`` may then move its own
        processes in by writing their pid there), or None where groups cannot be made."""
        if self.broken:
            return None
        path = self.ROOT / f"{self.prefix}-{name}"
        try:
            if name not in self.paths:
                path.mkdir()
                self.paths[name] = path
            if owner is not None:
                os.chown(path / "cgroup.procs", owner, -1)
        except OSError:
            self.broken = True
            return None
        return path / "cgroup.procs"

    def add(self, name: str, pid: int) -> None:
        procs = self.make(name)
        try:
            if procs is not None:
                procs.write_text(f"{pid}\n")
        except OSError:
            self.broken = True

    def read(self) -> dict[str, float]:
        if self.broken:
            return {}
        try:
            return {name: int((path / "cpuacct.usage").read_text()) / 1e9
                    for name, path in self.paths.items()}
        except (OSError, ValueError):
            return {}

    def remove(self) -> None:
        """Hand any process still inside back to the root group, then delete the groups."""
        for path in self.paths.values():
            for _ in range(50):
                with suppress(OSError):
                    for pid in (path / "cgroup.procs").read_text().split():
                        with suppress(OSError):
                            (self.ROOT / "cgroup.procs").write_text(pid + "\n")
                    path.rmdir()
                if not path.exists():
                    break
                time.sleep(0.1)
        self.paths.clear()


def _machine_busy() -> float:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # all but idle and iowait


def _proc_table() -> dict[int, tuple[int, str, float, float]]:
    """pid -> (ppid, comm, own CPU, CPU of its reaped children) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                text = handle.read().decode(errors="replace")
        except OSError:
            continue
        comm = text[text.find("(") + 1:text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        table[int(entry)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / TICKS,
                             (int(fields[13]) + int(fields[14])) / TICKS)
    return table


def usage(controller: int, listeners: set[int], groups: CpuGroups) -> Usage:
    """Who uses the CPU now: the controller, sshd, the agents (under the listeners), trials,
    and the cgroups' totals.

    The agent is what an sshd session runs (``sh -c`` and the python under it); what that
    python starts (launchers, trials) counts as trials; the calling process is "bench".
    The long-lived ones get the scheduler's exact run time. A trial's figure includes its
    reaped children (each ``sleep``) but is in clock ticks, so it is often 0: the hosts'
    cgroup total is the trials' true figure (see :func:`usage_percent`).
    """
    machine = _machine_busy()
    table = _proc_table()
    kinds: dict[int, str] = {}

    def kind(pid: int) -> str:
        chain = []
        while pid not in kinds and pid > 1 and pid in table:
            chain.append(pid)
            pid = table[pid][0]
        found = kinds.get(pid, "controller" if pid == controller else
                          "sshd" if pid in listeners else "other")
        for child in reversed(chain):  # walk back down, from the ancestor found
            if child == controller:
                found = "controller"
            elif child in listeners:
                found = "sshd"
            elif found == "sshd":  # an agent is what an sshd session runs
                found = "sshd" if table[child][1].startswith("sshd") else "agents"
            elif found == "agents" and table[table[child][0]][1].startswith("python"):
                found = "trials"  # what the agent (python, under its sh -c) starts
            kinds[child] = found
        return found

    procs = {}
    for pid, (_, _, cpu, reaped) in table.items():
        found = kind(pid)
        if found == "trials":
            procs[pid] = (found, cpu + reaped)
        elif found != "other":  # long-lived: the scheduler's exact figure where it has one
            procs[pid] = (found, _run_time(pid, cpu))
    me = os.getpid()
    procs[me] = ("bench", _run_time(me, table.get(me, (0, "", 0.0, 0.0))[2]))
    return Usage(time.time(), machine, procs, groups.read())


def usage_percent(before: Usage, after: Usage) -> dict[str, float]:
    """CPU between two usages, % of one core: machine, controller, sshd, agents, trials,
    bench (the calling process) and rest (the machine's busy time minus all of those)."""
    span = max(1e-9, after.time - before.time)
    spent: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu) in after.procs.items():
        old = before.procs.get(pid)
        spent[kind] += cpu - (old[1] if old and old[0] == kind else 0.0)
    mine = ("controller", "sshd", "agents", "bench")
    out = {k: 100.0 * spent[k] / span for k in mine}
    out["machine"] = 100.0 * (after.machine - before.machine) / span
    group = {k: 100.0 * (v - before.groups.get(k, 0.0)) / span for k, v in after.groups.items()}
    if "controller" in group:
        out["controller"] = group["controller"]
    # The hosts' group holds sshd, the agents and what the agents start, except the trials'
    # shells and the GPU queries, which move to their own groups: the launches are the rest.
    out["trials"] = group.get("trials", float("nan"))
    out["gpus"] = group.get("gpus", float("nan"))
    out["launches"] = max(0.0, group["hosts"] - out["sshd"] - out["agents"]) \
        if "hosts" in group else float("nan")
    out["rest"] = out["machine"] - sum(
        out[k] for k in ("controller", "sshd", "agents", "bench", "trials", "gpus", "launches")
        if out[k] == out[k])  # not nan
    return out


def read_proc(pid: int) -> Sample | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().decode().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
    except (OSError, ValueError):
        return None
    if fields[0] == "Z":  # exited, not yet reaped: no more figures
        return None
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    rss = int(status.get("VmRSS", "0 kB").split()[0])
    hwm = int(status.get("VmHWM", "0 kB").split()[0])
    return Sample(time.time(), cpu, rss, hwm, _run_queue_waits(pid))


def _run_time(pid: int, default: float) -> float:
    """Seconds on a CPU, all threads, from schedstat (exact; /proc/PID/stat counts ticks)."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return default
    return total


def _run_queue_waits(pid: int) -> dict[int, float]:
    waits = {}
    with suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError, ValueError, IndexError), \
                    open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                waits[int(tid)] = int(handle.read().split()[1]) / 1e9
    return waits


def cpu_percent(samples: list[Sample], start: float, end: float) -> float:
    """CPU as % of one core between the samples nearest to ``start`` and ``end``."""
    inside = [s for s in samples if start <= s.time <= end]
    if len(inside) < 2:
        return float("nan")
    first, last = inside[0], inside[-1]
    return 100.0 * (last.cpu - first.cpu) / (last.time - first.time)


def wait_percent(samples: list[Sample], start: float, end: float) -> float:
    """Time the process's threads were runnable but had no CPU, % of one core, between the
    samples nearest to ``start`` and ``end``: high when the machine is oversubscribed."""
    inside = [s for s in samples if start <= s.time <= end]
    if len(inside) < 2:
        return float("nan")
    first, last = inside[0], inside[-1]
    waited = sum(w - first.waits.get(tid, 0.0) for tid, w in last.waits.items())
    return 100.0 * waited / (last.time - first.time)
