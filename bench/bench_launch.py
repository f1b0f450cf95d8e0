"""Benchmark: one trial's launch through a host's agent (prints figures; not a test).

``HostSession.launch`` of a ``true`` trial, ``--launches`` times one after another (0.05 s
apart, so the agent is idle when each arrives, as at a refill), against a local agent
(a subprocess, as for `local` hosts) or, with ``--ssh``, a loopback sshd (tests/sshd.py;
needs root). Two figures per launch, medians printed:

- *to started*: from the call to the launcher's ``started`` time (taken on the host just
  before it starts ``bash run.sh``): what a refill gap pays for the launch;
- *call*: the whole round trip, until the controller has the pid record.

``--tree DIR`` measures another checkout (for before and after figures in one sitting,
alternate the two).

    python bench/bench_launch.py [--launches 30] [--ssh] [--tree DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _measure(session: Any, launch_files: Any, launches: int) -> tuple[list[float], list[float]]:
    to_started, calls = [], []
    for i in range(launches):
        trial_dir = session.trial_dir("bench", f"t{i}")
        files = launch_files(parameters={"x": i}, parameter_id=i, script="true\n",
                             cwd=session.absolute(trial_dir), env={}, max_duration=None,
                             kill_grace=1.0)
        t0 = time.time()
        result = session.launch(f"t{i}", trial_dir, files)
        calls.append((time.time() - t0) * 1000)
        to_started.append((result.started_at - t0) * 1000)
        time.sleep(0.05)
    return to_started, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=30)
    parser.add_argument("--ssh", action="store_true", help="over a loopback sshd (root)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree), str(ROOT / "tests")]
    from remotetune.backends.hostpool._session import HostSession, launch_files
    from remotetune.model import HostSpec

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.ssh:
            from sshd import SshServer

            server = SshServer(log_level="ERROR").start()
            spec = server.spec()
        else:
            spec = HostSpec(name="local", local=True, workdir=str(Path(tmp) / "host"))
        session = HostSession(spec)
        try:
            session.open()
            to_started, calls = _measure(session, launch_files, args.launches)
        finally:
            session.close()
            if server is not None:
                server.stop()
    where = "loopback sshd" if args.ssh else "local agent"
    print(f"{args.tree.name} ({where}): {args.launches} launches, to started median "
          f"{statistics.median(to_started):.2f} ms (min {min(to_started):.2f}), call median "
          f"{statistics.median(calls):.2f} ms (min {min(calls):.2f}) "
          f"(load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
