"""Code sync figures against `rsync -a` over ssh, on one loopback sshd (tests/sshd.py).

    python bench/bench_sync.py [--files 2000] [--mb 20] [--reps 5]

Runs as root (the sshd fixture needs it). Prints, for a generated tree:

* first sync into an empty host (remotetune: manifest without cache + freeze + sync on an
  open host session; also with the connection and agent start-up counted) against
  `rsync -a` over ssh (a fresh ssh connection, as a user would run it) to the same sshd;
  the ratio is measured in the same run (issue 12's goal: no slower than rsync, <= 1.0x);
* re-sync with nothing changed (goal <= 0.15 s), against rsync;
* re-sync after 10 files changed, against rsync.

Figures are min / median over the repetitions, in seconds. Not a test. File creation
dominates both tools' first sync and its cost varies a lot on some VMs' file systems
(bench/README.md): ``TMPDIR=/dev/shm`` puts the host's workdir and rsync's destination on
tmpfs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sshd import TEST_USER, SshServer  # noqa: E402

from remotetune import sync  # noqa: E402
from remotetune.backends.hostpool._session import HostSession  # noqa: E402


def make_tree(root: Path, files: int, total_bytes: int, seed: int = 1) -> None:
    """``files`` files in nested packages, sizes skewed like a code tree, ``total_bytes``."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.5) for _ in range(files)]
    scale = total_bytes / sum(weights)
    for i, weight in enumerate(weights):
        path = root / f"pkg{i % 20}" / f"sub{i % 7}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(max(1, int(weight * scale))))
    old = time.time_ns() - 60 * 10**9  # not "racy" for the hash cache
    for path in root.rglob("*.py"):
        os.utime(path, ns=(old, old))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def fmt(values: list[float]) -> str:
    return f"{min(values):7.3f} / {statistics.median(values):7.3f}"


def rsync(server: SshServer, source: Path, dest: str) -> None:
    ssh = " ".join(c for c in server.ssh_command() if c not in ("-l", TEST_USER))
    subprocess.run(
        ["rsync", "-a", "-e", ssh, f"{source}/", f"{TEST_USER}@127.0.0.1:{dest}/"],
        check=True, capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rt-bench-sync-"))
    tree = work / "tree"
    make_tree(tree, args.files, int(args.mb * 2**20))
    server = SshServer(log_level="ERROR").start()
    try:
        run(server, tree, work, args.reps)
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def run(server: SshServer, tree: Path, work: Path, reps: int) -> None:
    first_rt: list[float] = []
    first_rt_connect: list[float] = []
    first_rsync: list[float] = []
    nochange_rt: list[float] = []
    nochange_rsync: list[float] = []
    changed_rt: list[float] = []
    changed_rsync: list[float] = []
    sent_changed = 0
    manifest = sync.build_manifest(tree)
    print(f"tree: {len(manifest.entries)} files, {manifest.total_bytes / 2**20:.1f} MiB; "
          f"sshd 127.0.0.1:{server.port}; {reps} repetitions; min / median seconds")

    for rep in range(reps):
        host_workdir = f"{server.workdir}/rep{rep}"
        objects = work / f"objects{rep}"
        cache = work / f"cache{rep}.json"
        rsync_dest = f"{server.workdir}/rsync{rep}"

        started = time.perf_counter()
        session = HostSession(server.spec(workdir=host_workdir))
        session.open()
        connected = time.perf_counter()

        def first_sync(objects: Path = objects, cache: Path = cache,
                       session: HostSession = session) -> None:
            fresh = sync.build_manifest(tree, cache_file=cache)
            sync.freeze(tree, fresh, objects)
            session.sync(fresh, objects)

        elapsed = timed(first_sync)
        first_rt.append(elapsed)
        first_rt_connect.append(elapsed + (connected - started))
        first_rsync.append(timed(lambda d=rsync_dest: rsync(server, tree, d)))

        nochange_rt.append(timed(lambda o=objects, c=cache, s=session: s.sync(
            sync.build_manifest(tree, cache_file=c), o)))
        nochange_rsync.append(timed(lambda d=rsync_dest: rsync(server, tree, d)))

        for entry in manifest.entries[::200][:10]:  # 10 files edited (same size, new content)
            path = tree / entry.path
            data = bytearray(path.read_bytes())
            data[0] = (data[0] + 1 + rep) % 256
            path.write_bytes(bytes(data))

        def changed_sync(objects: Path = objects, cache: Path = cache,
                         session: HostSession = session) -> None:
            nonlocal sent_changed
            fresh = sync.build_manifest(tree, cache_file=cache)
            before = len(sync._load_index(objects))
            sync.freeze(tree, fresh, objects)
            sent_changed = len(sync._load_index(objects)) - before
            session.sync(fresh, objects)

        changed_rt.append(timed(changed_sync))
        changed_rsync.append(timed(lambda d=rsync_dest: rsync(server, tree, d)))
        session.close()

    ratio = statistics.median(first_rt) / statistics.median(first_rsync)
    ratio_connect = statistics.median(first_rt_connect) / statistics.median(first_rsync)
    print(f"{'':44}{'remotetune':>18}{'rsync -a over ssh':>22}")
    print(f"{'first sync (open session)':44}{fmt(first_rt):>18}{fmt(first_rsync):>22}"
          f"   ratio {ratio:.2f}x (goal <= 1.0x)")
    print(f"{'first sync incl. connect + agent start':44}{fmt(first_rt_connect):>18}"
          f"{'':>22}   ratio {ratio_connect:.2f}x")
    print(f"{'re-sync, nothing changed':44}{fmt(nochange_rt):>18}{fmt(nochange_rsync):>22}"
          f"   goal <= 0.15 s: {'met' if statistics.median(nochange_rt) <= 0.15 else 'MISSED'}")
    print(f"{'re-sync, 10 files changed':44}{fmt(changed_rt):>18}{fmt(changed_rsync):>22}"
          f"   ({sent_changed} new blobs)")


if __name__ == "__main__":
    main()
