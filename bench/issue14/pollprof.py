"""Profile one poll cycle (bench_ssh --part poll's set-up) in whichever tree PYTHONPATH names.

    cd TREE && PYTHONPATH=$PWD python AFTER/bench/issue14/pollprof.py [--cycles 20] [--cprofile OUT]

Prints per cycle medians: wall, controller CPU (process), CPU of the main thread (decode)
and of the other threads (paramiko's transport threads), agent CPU (all 4 agents, from
/proc), answer bytes. Works with the before tree (e2af651) and the after tree.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import bench_ssh  # noqa: E402

from remotetune.backends.hostpool._session import HostSession, PollItem, launch_files  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _thread_cpus() -> dict[int, float]:
    me = os.getpid()
    out = {}
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            out[int(tid)] = _cpu_of(me, int(tid))
        except OSError:
            pass
    return out


def _launch(session: HostSession, k: int) -> int:
    trial_dir = session.trial_dir("bench", f"t{k:03d}")
    absolute = session.absolute(trial_dir)
    files = launch_files(
        parameters={}, parameter_id=k, script=bench_ssh._METRIC_TRIAL, cwd=absolute,
        env={"REMOTETUNE_METRICS_FILE": f"{absolute}/metrics.jsonl"},
        max_duration=None, kill_grace=1.0,
    )
    try:
        started = session.launch(f"t{k:03d}", trial_dir, files)  # after
        return int(started.handle.ref)
    except TypeError:
        info = session.launch(trial_dir, files)  # before
        return int(info["pgid"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--per-host", type=int, default=64)
    ap.add_argument("--cprofile", default=None, help="profile the main thread, sequential polls")
    ap.add_argument("--dump", default=None, help="write one host's poll answer line here")
    args = ap.parse_args()
    nbytes = [0]
    with bench_ssh._servers(args.hosts, log_level="ERROR") as servers:
        sessions: list[HostSession] = []
        items: dict[int, list[PollItem]] = {}
        pgids: dict[int, list[int]] = {}
        agents: list[int] = []
        try:
            for h, server in enumerate(servers):
                spec = server.spec(workdir=bench_ssh._bench_workdir(server)[0])
                session = HostSession(spec)
                session.open()
                sessions.append(session)
                agents.append(int(session.agent.call("hello")["pid"]))
                chan = session.agent.channel
                raw_readline = chan.readline

                def counted(timeout, raw_readline=raw_readline, h=h):
                    line = raw_readline(timeout)
                    nbytes[0] += len(line)
                    if args.dump and h == 0 and b'"trials"' in line:
                        Path(args.dump).write_bytes(line)
                    return line

                chan.readline = counted
                items[h], pgids[h] = [], []
                for k in range(args.per_host):
                    pgids[h].append(_launch(session, k))
                    trial_dir = session.trial_dir("bench", f"t{k:03d}")
                    items[h].append(PollItem(f"t{k:03d}", trial_dir, 0))
            time.sleep(1.0)
            pool = ThreadPoolExecutor(max_workers=args.hosts)
            prof = cProfile.Profile() if args.cprofile else None
            rows = []
            for cycle in range(args.cycles + 1):
                nbytes[0] = 0
                th0 = _thread_cpus()
                ag0 = sum(_cpu_of(p) for p in agents)
                cpu0, t0 = time.process_time(), time.perf_counter()
                if prof is not None:
                    if cycle:
                        prof.enable()
                    results = [s.poll(items[h]) for h, s in enumerate(sessions)]
                    if cycle:
                        prof.disable()
                else:
                    futs = [pool.submit(s.poll, items[h]) for h, s in enumerate(sessions)]
                    results = [f.result() for f in futs]
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                th1 = _thread_cpus()
                ag1 = sum(_cpu_of(p) for p in agents)
                main_tid = threading.get_native_id()
                main_cpu = th1.get(main_tid, 0) - th0.get(main_tid, 0)
                lines = 0
                for h, res in enumerate(results):
                    dirs = {i.trial_id: i.trial_dir for i in items[h]}
                    lines += sum(len(r.lines) for r in res)
                    items[h] = [PollItem(r.trial_id, dirs[r.trial_id], r.offset) for r in res]
                if cycle:
                    rows.append((wall, cpu, main_cpu, cpu - main_cpu, ag1 - ag0, nbytes[0], lines))
                time.sleep(0.25)
            cols = list(zip(*rows, strict=True))
            med = [statistics.median(c) for c in cols]
            print(f"wall {med[0]*1e3:.1f} ms  ctl cpu {med[1]*1e3:.1f} ms  (main {med[2]*1e3:.0f} "
                  f"other threads {med[3]*1e3:.0f}, 10ms ticks)  agents cpu {med[4]*1e3:.0f} ms "
                  f"(ticks)  answer bytes {med[5]:.0f}  lines {med[6]:.0f}  "
                  f"mean ctl cpu {statistics.mean(cols[1])*1e3:.2f} ms, "
                  f"mean agents {statistics.mean(cols[4])*1e3:.2f} ms")
            if prof is not None:
                prof.dump_stats(args.cprofile)
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        finally:
            for h, session in enumerate(sessions):
                for pgid in pgids.get(h, []):
                    try:
                        session.kill(pgid, 1.0)
                    except Exception:  # noqa: BLE001
                        pass
                session.close()


if __name__ == "__main__":
    main()
