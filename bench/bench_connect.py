"""Benchmark: one host's connect over loopback sshd, first and repeated (prints figures).

``HostSession.open`` (the SSH handshake, the bootstrap that installs the host package when it
is missing and becomes the agent, its first line) then ``gpus`` (nvidia-smi, started at the
connect), ``--connects`` times against one fresh sshd (tests/sshd.py; needs root). The first
connect installs the package; the later ones find it, and since issue 12's change they also
find the agent's compiled modules. ``--tree DIR`` measures another checkout (for before and
after figures in one sitting, alternate the two).

    python bench/bench_connect.py [--connects 9] [--tree DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connects", type=int, default=9)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree), str(ROOT / "tests")]
    from sshd import SshServer

    from remotetune.backends.hostpool._session import HostSession

    server = SshServer(log_level="ERROR").start()
    try:
        opens, gpus = [], []
        for _ in range(args.connects):
            session = HostSession(server.spec())
            t0 = time.perf_counter()
            session.open(gpus_early=True)
            t1 = time.perf_counter()
            session.gpus()
            gpus.append((time.perf_counter() - t1) * 1000)
            opens.append((t1 - t0) * 1000)
            session.close()
    finally:
        server.stop()
    rest = opens[1:] or opens
    print(f"{args.tree.name}: first connect {opens[0]:.1f} ms; later connects median "
          f"{statistics.median(rest):.1f} ms (min {min(rest):.1f}, max {max(rest):.1f}); "
          f"gpus after the connect median {statistics.median(gpus):.1f} ms "
          f"(load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
