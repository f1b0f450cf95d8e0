"""One poll cycle in one process, deterministic: the tree's agent (op_poll, JSON encode) and the
tree's controller side (AgentClient decode, HostSession.poll's typed results), joined by a
fake channel instead of SSH. For cProfile and for callgrind instruction counts.

    cd TREE && PYTHONPATH=$PWD python AFTER/bench/issue14/pollcycle.py --cycles 50 [--cprofile]
    bench/issue14/callgrind.sh TREE...   (instructions per cycle under valgrind's callgrind)

TREE is the tree measured (its ``remotetune`` is imported from the current directory), so
the same script measures the tree before the redesign, which does not have it.

64 trials in one workdir (one host), each with a valid pid.json naming a live process
group (one `sleep`), a metrics.jsonl; before each cycle every second trial gets one new
metric line (the bench's ~140 of 256 lines per cycle). ``--no-poll`` appends only.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from remotetune.backends.hostpool._agent_client import AgentClient  # noqa: E402
from remotetune.backends.hostpool._host import agent  # noqa: E402
from remotetune.backends.hostpool._session import HostSession, PollItem  # noqa: E402
from remotetune.model import HostSpec  # noqa: E402

try:
    from remotetune.transport.base import AgentChannel
except ImportError:  # pragma: no cover
    AgentChannel = object  # type: ignore[misc,assignment]


class InProcessChannel(AgentChannel):
    """The agent's serve loop, one request at a time, in this process."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.out = [b'{"id": 0, "ok": true, "ready": true}\n']

    def send(self, data: bytes) -> None:
        if not data.strip():
            return
        req = json.loads(data.decode("utf-8"))
        answer = agent.OPS[req["op"]](self.workdir, req, None)
        answer.update({"id": req["id"], "ok": True})
        self.out.append(json.dumps(answer).encode("utf-8") + b"\n")

    def readline(self, timeout: float) -> bytes:
        return self.out.pop(0)

    def stderr_text(self) -> str:
        return ""

    def close(self) -> None:
        pass


LINE = '{"type": "PERIODICAL", "value": %d, "seq": %d}\n'


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--no-poll", action="store_true")
    ap.add_argument("--time", action="store_true", help="print CPU per cycle")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="pollcycle-")
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        ticks = agent._start_ticks(sleeper.pid)
        dirs = []
        for k in range(args.trials):
            rel = f"experiments/bench/trials/t{k:03d}"
            d = os.path.join(base, rel)
            os.makedirs(d)
            pid = {"pid": sleeper.pid, "pgid": sleeper.pid, "launcher_pid": sleeper.pid,
                   "started": 1796194736.4230974 + k, "hostname": "vm", "ticks": ticks,
                   "launcher_ticks": ticks}
            Path(d, "pid.json").write_text(json.dumps(pid))
            Path(d, "metrics.jsonl").write_text("".join(LINE % (i, i) for i in range(4)))
            dirs.append(rel)
        spec = HostSpec(name="h", local=True) if "local" in HostSpec.__dataclass_fields__ \
            else HostSpec(name="h")
        session = HostSession(spec)
        session.agent = AgentClient(InProcessChannel(base), "h")
        items = [PollItem(f"t{k:03d}", dirs[k], 0) for k in range(args.trials)]
        if not args.no_poll:
            res = session.poll(items)  # the backlog
            items = [PollItem(r.trial_id, i.trial_dir, r.offset)
                     for i, r in zip(items, res, strict=True)]
        prof = cProfile.Profile() if args.cprofile else None
        seq = 4
        cpu = 0.0
        for c in range(args.cycles):
            for k in range(c % 2, args.trials, 2):
                with open(os.path.join(base, dirs[k], "metrics.jsonl"), "a") as f:
                    f.write(LINE % (seq, seq))
            seq += 1
            if args.no_poll:
                continue
            t0 = time.process_time()
            if prof:
                prof.enable()
            res = session.poll(items)
            if prof:
                prof.disable()
            cpu += time.process_time() - t0
            items = [PollItem(r.trial_id, i.trial_dir, r.offset)
                     for i, r in zip(items, res, strict=True)]
            assert sum(len(r.lines) for r in res) == args.trials // 2, res[:2]
        if args.time and args.cycles:
            print(f"cpu per cycle ({args.trials} trials, 1 host, in-process): "
                  f"{cpu / args.cycles * 1e3:.3f} ms")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
