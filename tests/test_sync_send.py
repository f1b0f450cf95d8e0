"""The sync's transfer: puts and the materialise sent back to back through a real agent, and
one tar stream per batch for all hosts that lack the same blobs (issue 12)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SshServer

from remotetune import sync as sync_module
from remotetune import sync_packs
from remotetune.backends.hostpool._session import HostSession
from remotetune.errors import AgentError
from remotetune.model import HostSpec
from remotetune.sync import build_manifest, freeze, sync_snapshot
from remotetune.sync_packs import Request, TarCache


class AnswerCounter:
    """Wraps an agent channel: how many answers were waited for (round trips)."""

    def __init__(self, session: HostSession) -> None:
        assert session.agent is not None
        self.inner = session.agent.channel
        self.answers = 0
        session.agent.channel = self  # type: ignore[assignment]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def readline(self, timeout: float) -> bytes:
        self.answers += 1
        return self.inner.readline(timeout)


def make_tree(root: Path, files: int = 40) -> None:
    for i in range(files):
        path = root / f"pkg{i % 4}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i % 251]) * (3000 + i))


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[list[HostSession]]:
    made = [HostSession(HostSpec(name=f"local{i}", local=True,
                                 workdir=str(tmp_path / f"host{i}"))) for i in range(3)]
    for session in made:
        session.open()
    yield made
    for session in made:
        session.close()


def test_a_new_tree_is_two_round_trips_whatever_its_batches(
    sessions: list[HostSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_packs, "PUT_BATCH_BYTES", 20_000)  # about 6 files a batch
    root, objects = tmp_path / "code", tmp_path / "objects"
    make_tree(root)
    manifest = build_manifest(root)
    freeze(root, manifest, objects)
    counter = AnswerCounter(sessions[0])
    path = Path(sync_snapshot(sessions[0].agent, manifest, objects))  # type: ignore[arg-type]
    assert counter.answers == 1 + 7 + 1  # sync_missing; then 7 puts and the materialise, piped
    assert sorted(p.name for p in path.rglob("*.py")) == sorted(
        Path(e.path).name for e in manifest.entries)
    assert (path / "pkg1" / "m5.py").read_bytes() == bytes([5]) * 3005


def test_each_batch_is_built_once_for_all_hosts(
    sessions: list[HostSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = TarCache()
    monkeypatch.setattr(sync_packs, "PUT_BATCH_BYTES", 50_000)
    monkeypatch.setattr(sync_module, "TARS", cache)
    root, objects = tmp_path / "code", tmp_path / "objects"
    make_tree(root)
    manifest = build_manifest(root)
    freeze(root, manifest, objects)
    paths: list[str] = []
    threads = [threading.Thread(target=lambda s=s: paths.append(s.sync(manifest, objects)))
               for s in sessions]  # the hosts' workers sync at the same time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 3 and all(Path(p).is_dir() for p in paths)
    assert cache.builds == 3  # 130 KB in 50 KB batches: 3 streams, not 9


def test_a_failed_put_in_the_pipe_is_raised_and_the_channel_stays_in_step(
    sessions: list[HostSession],
) -> None:
    agent = sessions[0].agent
    assert agent is not None
    with pytest.raises(AgentError, match="sync_put"):
        agent.call_many([Request("sync_put", b"not a tar"), Request("hello", None)])
    assert agent.call("hello")["workdir"].endswith("host0")


def test_the_cache_drops_old_and_oversized_streams() -> None:
    cache = TarCache(limit=10, keep=60.0)
    assert cache.get_or_build(("a",), lambda: b"12345678") == b"12345678"
    assert cache.get_or_build(("a",), lambda: b"rebuilt") == b"12345678"
    cache.get_or_build(("b",), lambda: b"abcdefgh")  # over the limit: "a" goes
    assert cache.get_or_build(("a",), lambda: b"again") == b"again"
    assert cache.builds == 3


@pytest.mark.ssh
def test_pipelined_sync_over_real_sshd(ssh_host: SshServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_packs, "PUT_BATCH_BYTES", 20_000)
    root, objects = tmp_path / "code", tmp_path / "objects"
    make_tree(root, files=60)
    manifest = build_manifest(root)
    freeze(root, manifest, objects)
    session = HostSession(ssh_host.spec())
    session.open()
    try:
        counter = AnswerCounter(session)
        path = session.sync(manifest, objects)
        assert counter.answers >= 3
        assert path.startswith(str(ssh_host.workdir / "snapshots"))
        assert session.sync(manifest, objects) == path  # unchanged: one round trip
    finally:
        session.close()
