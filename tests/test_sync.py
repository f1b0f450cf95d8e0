"""Code sync: ignore rules, manifests and the hash cache, freeze, the host's object store,
and whole syncs through a real agent, locally and over a real sshd."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshd import SshServer

from remotetune import sync, sync_packs
from remotetune.backends.hostpool._host import syncops
from remotetune.backends.hostpool._session import HostSession
from remotetune.errors import SyncError
from remotetune.model import HostSpec
from remotetune.sync import build_manifest, freeze, parse_ignore, sync_snapshot


def write(root: Path, rel: str, data: str | bytes = "x", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)
    return path


def paths(manifest: sync.Manifest) -> list[str]:
    return [e.path for e in manifest.entries]


class CountingClient:
    """Wraps an AgentClient and records every call (op, payload size)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.host = inner.host
        self.calls: list[tuple[str, int]] = []
        self.put_members: list[str] = []

    def call(self, op: str, *, payload: bytes | None = None, timeout: float = 60.0,
             **fields: Any) -> dict[str, Any]:
        self.calls.append((op, len(payload or b"")))
        if op == "sync_put" and payload:
            with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
                self.put_members += tar.getnames()
        return self.inner.call(op, payload=payload, timeout=timeout, **fields)


# ---------------------------------------------------------------------- ignore rules


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.log", "a.log", False, True),
        ("*.log", "deep/er/a.log", False, True),
        ("*.log", "a.logx", False, False),
        ("/build", "build", True, True),
        ("/build", "src/build", True, False),
        ("data/", "data", True, True),
        ("data/", "data", False, False),  # trailing slash: directories only
        ("data/", "x/data", True, True),
        ("doc/*.txt", "doc/a.txt", False, True),
        ("doc/*.txt", "doc/sub/a.txt", False, False),
        ("doc/*.txt", "x/doc/a.txt", False, False),  # a middle slash anchors
        ("**/tmp", "a/b/tmp", True, True),
        ("**/tmp", "tmp", True, True),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/x/y/b", False, True),
        ("out/**", "out/x/y.bin", False, True),
        ("file?.py", "file1.py", False, True),
        ("file?.py", "file10.py", False, False),
        ("[ab]*.csv", "b1.csv", False, True),
        ("[!ab]*.csv", "b1.csv", False, False),
        ("\\#hash", "#hash", False, True),
        ("\\!bang", "!bang", False, True),
    ],
)
def test_gitignore_patterns(pattern: str, path: str, is_dir: bool, expected: bool) -> None:
    (rule,) = parse_ignore(pattern)
    assert rule.matches(path, is_dir) is expected


def test_comments_blanks_and_negation() -> None:
    rules = parse_ignore("# comment\n\n*.log\n!keep.log\n   \n")
    assert [(r.pattern, r.negate) for r in rules] == [("*.log", False), ("!keep.log", True)]


def test_default_excludes(tmp_path: Path) -> None:
    for rel in ("main.py", "pkg/__init__.py", "pkg/__pycache__/m.cpython-311.pyc", "old.pyc",
                ".git/HEAD", "venv/bin/python", ".venv/lib/x.py", "node_modules/m/i.js",
                "myenv/pyvenv.cfg", "myenv/lib/site.py", "conda/conda-meta/history",
                ".ipynb_checkpoints/n.ipynb", ".pytest_cache/v", ".mypy_cache/x", "env/keep.py",
                ".env"):
        write(tmp_path, rel)
    assert paths(build_manifest(tmp_path)) == [".env", "env/keep.py", "main.py",
                                               "pkg/__init__.py"]


def test_nested_ignore_files_and_negation(tmp_path: Path) -> None:
    write(tmp_path, ".remotetuneignore", "data/\n/build\n*.ckpt\n!best.ckpt\n")
    write(tmp_path, ".nniignore", "**/scratch/*.bin\n")
    for rel in ("train.py", "data/big.npy", "build/out.o", "src/build/keep.py", "a.ckpt",
                "best.ckpt", "src/scratch/x.bin", "src/scratch/y.txt", "sub/notes.log",
                "sub/keep.log", "sub/deeper/other.log", "sub/data.txt", "venv/pyvenv.cfg"):
        write(tmp_path, rel)
    write(tmp_path, "sub/.remotetuneignore", "*.log\n!keep.log\n/data.txt\n!/venv\n")
    write(tmp_path, ".remotetuneignore2", "ignored: not an ignore file name")
    got = paths(build_manifest(tmp_path))
    assert got == [".nniignore", ".remotetuneignore", ".remotetuneignore2", "best.ckpt",
                   "src/build/keep.py", "src/scratch/y.txt", "sub/.remotetuneignore",
                   "sub/keep.log", "train.py"]


def test_a_negation_can_re_include_a_default_exclude(tmp_path: Path) -> None:
    write(tmp_path, "venv/vendored.py")
    write(tmp_path, ".remotetuneignore", "!venv/\n")
    assert "venv/vendored.py" in paths(build_manifest(tmp_path))


def test_size_limit_lists_the_largest_files(tmp_path: Path) -> None:
    for i in range(7):
        write(tmp_path, f"data/blob{i}.bin", b"\0" * (1000 * (i + 1)))
    write(tmp_path, "train.py", "print(1)")
    with pytest.raises(SyncError) as info:
        build_manifest(tmp_path, max_bytes=10_000)
    text = str(info.value)
    assert "over the 0 MiB limit" in text or "limit" in text
    for i in (6, 5, 4, 3, 2):
        assert f"data/blob{i}.bin" in text
    assert "data/blob1.bin" not in text and ".remotetuneignore" in text
    assert build_manifest(tmp_path, max_bytes=100_000).total_bytes == 28_008


def test_symlink_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    write(outside, "shared.py", "shared = 1")
    write(outside, "dataset/x.npy", "big")
    root = tmp_path / "code"
    write(root, "train.py")
    (root / "shared.py").symlink_to(outside / "shared.py")
    (root / "data").symlink_to(outside / "dataset")
    (root / "dangling.py").symlink_to(tmp_path / "missing.py")
    manifest = build_manifest(root)
    assert paths(manifest) == ["shared.py", "train.py"]  # file links followed
    assert manifest.entries[0].sha256 == sync.hash_file(outside / "shared.py")
    assert "data: symlinks to directories are not synced" in caplog.text
    assert "dangling" in caplog.text


# ---------------------------------------------------------------------- manifest and cache


def test_manifest_records_size_mode_and_hash(tmp_path: Path) -> None:
    write(tmp_path, "run.sh", "#!/bin/sh\n", mode=0o755)
    write(tmp_path, "a.py", "print(2)\n", mode=0o644)
    manifest = build_manifest(tmp_path)
    assert [(e.path, e.size, e.mode) for e in manifest.entries] == [
        ("a.py", 9, 0o644), ("run.sh", 10, 0o755)]
    assert manifest.total_bytes == 19
    assert manifest.digest == syncops.manifest_digest(
        [(e.path, e.size, e.mode, e.sha256) for e in manifest.entries])
    (tmp_path / "run.sh").chmod(0o644)  # a mode change is a new snapshot
    assert build_manifest(tmp_path).digest != manifest.digest


def test_hash_cache_skips_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    root = tmp_path / "code"
    old = 1_600_000_000_000_000_000
    for i in range(20):
        os.utime(write(root, f"m{i}.py", f"v{i}"), ns=(old, old))
    cache = tmp_path / "cache.json"
    hashed: list[str] = []
    real = sync.hash_file
    monkeypatch.setattr(sync, "hash_file", lambda p: hashed.append(str(p)) or real(p))
    first = build_manifest(root, cache_file=cache)
    assert len(hashed) == 20 and cache.exists()
    hashed.clear()
    assert build_manifest(root, cache_file=cache) == first
    assert hashed == []
    # Same size, new content: the nanosecond mtime changes, so it is hashed again.
    os.utime(write(root, "m3.py", "V3"), ns=(old + 1, old + 1))
    third = build_manifest(root, cache_file=cache)
    assert [Path(p).name for p in hashed] == ["m3.py"]
    assert third.digest != first.digest


def test_recently_modified_files_are_not_cached(tmp_path: Path) -> None:
    write(tmp_path / "code", "fresh.py", "now")
    cache = tmp_path / "cache.json"
    build_manifest(tmp_path / "code", cache_file=cache)
    assert not cache.exists() or json.loads(cache.read_text())["files"] == {}


# ---------------------------------------------------------------------- freeze


def test_freeze_packs_and_checks_blobs(tmp_path: Path) -> None:
    root = tmp_path / "code"
    write(root, "a.py", "A")
    write(root, "b.py", "A")  # same content: one object
    manifest = build_manifest(root)
    objects = tmp_path / "objects"
    freeze(root, manifest, objects)
    assert set(sync._load_index(objects)) == {manifest.entries[0].sha256}
    freeze(root, manifest, objects)  # nothing new: no new pack
    assert len(list((objects / "packs").glob("*.json"))) == 1
    write(root, "c.py", "C")
    manifest2 = build_manifest(root)
    write(root, "c.py", "edited after the manifest")
    with pytest.raises(SyncError, match="c.py changed while the code was being frozen"):
        freeze(root, manifest2, objects)
    assert sorted(p.name for p in (objects / "packs").iterdir() if p.name.startswith("."
                                                                                     )) == []
    write(root, "c.py", "C")
    freeze(root, manifest2, objects)
    index = sync._load_index(objects)
    assert len(index) == 2 and len(list((objects / "packs").glob("*.tar"))) == 2
    with tarfile.open(fileobj=io.BytesIO(sync._tar(index, sorted(index)))) as tar:
        assert sorted(tar.getnames()) == sorted(index)
        assert {tar.extractfile(m).read() for m in tar} == {b"A", b"C"}  # type: ignore[union-attr]


def test_a_frozen_pack_is_a_tar_file_of_the_blobs(tmp_path: Path) -> None:
    """freeze writes the members' headers itself: tarfile reads the pack back whole."""
    root = tmp_path / "code"
    contents = {"empty.py": "", "one.py": "x", "block.py": "b" * 512, "big.py": "y" * 70001}
    for name, text in contents.items():
        write(root, name, text)
    manifest = build_manifest(root)
    freeze(root, manifest, tmp_path / "objects")
    (pack,) = (tmp_path / "objects" / "packs").glob("*.tar")
    shas = {e.sha256: contents[e.path].encode() for e in manifest.entries}
    with tarfile.open(pack) as tar:
        members = tar.getmembers()
        assert sorted(m.name for m in members) == sorted(shas)
        for member in members:
            assert member.isfile() and member.mode == 0o444 and member.mtime == 0
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert tar.extractfile(member).read() == shas[member.name]  # type: ignore[union-attr]
    assert pack.stat().st_size % 512 == 0


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 8**11 - 1])
def test_blob_header_is_the_header_tarfile_writes(size: int) -> None:
    sha = hashlib.sha256(str(size).encode()).hexdigest()
    info = tarfile.TarInfo(sha)
    info.size, info.mode = size, 0o444
    header = sync_packs.blob_header(sha, size)
    parsed = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    assert (parsed.name, parsed.size, parsed.mode, parsed.type) == (sha, size, 0o444, b"0")
    if sys.version_info[:2] == (3, 11):  # the version whose bytes the docstring names
        assert header == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    with pytest.raises(ValueError):
        sync_packs.blob_header(sha, 8**11)


# ---------------------------------------------------------------------- host side directly


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_host_store_rejects_corruption_and_bad_manifests(tmp_path: Path) -> None:
    good = syncops.hashlib.sha256(b"ok").hexdigest()
    bad = syncops.hashlib.sha256(b"expected").hexdigest()
    assert syncops.store_tar(str(tmp_path), _tar({good: b"ok"}))["stored"] == 1
    assert syncops.store_tar(str(tmp_path), _tar({good: b"ok"}))["stored"] == 1  # idempotent
    with pytest.raises(ValueError, match="arrived corrupted"):
        syncops.store_tar(str(tmp_path), _tar({bad: b"tampered"}))
    with pytest.raises(ValueError, match="not a sha256"):
        syncops.store_tar(str(tmp_path), _tar({"../evil": b"x"}))
    assert sorted(os.listdir(tmp_path / "objects")) == [good]
    for path in ("../x", "/etc/passwd", "a//b", "a/./b"):
        entries = [(path, 2, 0o644, good)]
        payload = json.dumps({"entries": entries}).encode()
        with pytest.raises(ValueError, match="bad path"):
            syncops.parse_manifest(payload, syncops.manifest_digest(entries))
    entries = [("a.py", 2, 0o644, good)]
    with pytest.raises(ValueError, match="does not match its digest"):
        syncops.parse_manifest(json.dumps({"entries": entries}).encode(), "0" * 64)
    digest = syncops.manifest_digest(entries)
    missing = [("b.py", 8, 0o644, bad)]
    with pytest.raises(ValueError, match="1 objects missing"):
        syncops.materialize(str(tmp_path), syncops.manifest_digest(missing), missing)
    answer = syncops.materialize(str(tmp_path), digest, entries)
    assert (answer["created"], answer["linked"]) == (True, 1)
    assert syncops.materialize(str(tmp_path), digest, entries)["created"] is False
    assert not [p for p in os.listdir(tmp_path / "snapshots") if p.startswith(".tmp")]


# ---------------------------------------------------------------------- whole syncs


@pytest.fixture
def local_session(tmp_path: Path) -> Iterator[HostSession]:
    session = HostSession(HostSpec(name="local", local=True, workdir=str(tmp_path / "host")))
    session.open()
    yield session
    session.close()


def _sync_scenario(session: HostSession, tmp_path: Path) -> None:
    """Full, unchanged and incremental syncs; freeze semantics; modes."""
    assert session.agent is not None
    root = tmp_path / "code"
    for i in range(30):
        write(root, f"pkg/m{i}.py", f"value = {i}\n")
    write(root, "run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(root, "secret.txt", "mine", mode=0o600)
    write(root, "pkg/dup.py", "value = 0\n")  # same content as pkg/m0.py
    write(root, ".remotetuneignore", "*.tmp\n")
    write(root, "scratch.tmp", "not synced")
    objects = tmp_path / "objects"
    cache = tmp_path / "cache.json"

    manifest = build_manifest(root, cache_file=cache)
    freeze(root, manifest, objects)
    client = CountingClient(session.agent)
    path = sync_snapshot(client, manifest, objects)
    assert [op for op, _ in client.calls] == ["sync_missing", "sync_put", "sync_materialize"]
    assert len(client.put_members) == 33  # 34 files, two share content
    snapshot = Path(path)
    assert snapshot.name == manifest.digest
    assert (snapshot / "pkg/m7.py").read_text() == "value = 7\n"
    assert not (snapshot / "scratch.tmp").exists()
    assert stat.S_IMODE((snapshot / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((snapshot / "secret.txt").stat().st_mode) == 0o400
    assert stat.S_IMODE((snapshot / "pkg/m1.py").stat().st_mode) == 0o444
    assert (snapshot / "pkg/m1.py").stat().st_nlink >= 2  # hard-linked to the object

    # Unchanged: one round trip.
    client.calls.clear()
    assert sync_snapshot(client, manifest, objects) == path
    assert [op for op, _ in client.calls] == ["sync_missing"]

    # Edit after the freeze: the frozen snapshot keeps the old content.
    write(root, "pkg/m7.py", "value = 'edited'\n")
    assert sync_snapshot(client, manifest, objects) == path
    assert (snapshot / "pkg/m7.py").read_text() == "value = 7\n"

    # Incremental: only the changed blobs travel.
    write(root, "pkg/m8.py", "value = 'also edited'\n")
    write(root, "pkg/new.py", "fresh = True\n")
    changed = build_manifest(root, cache_file=cache)
    freeze(root, changed, objects)
    client.calls.clear()
    client.put_members.clear()
    path2 = sync_snapshot(client, changed, objects)
    assert path2 != path
    assert len(client.put_members) == 3
    assert sorted(client.put_members) == sorted(
        e.sha256 for e in changed.entries if e.path in ("pkg/m7.py", "pkg/m8.py", "pkg/new.py"))
    assert (Path(path2) / "pkg/m7.py").read_text() == "value = 'edited'\n"
    assert (snapshot / "pkg/m7.py").read_text() == "value = 7\n"  # the old one is untouched

    # A tree made only of known blobs: materialised in the first round trip.
    (root / "pkg/new.py").unlink()
    fewer = build_manifest(root, cache_file=cache)
    client.calls.clear()
    assert Path(sync_snapshot(client, fewer, objects)).is_dir()
    assert [op for op, _ in client.calls] == ["sync_missing"]


def test_sync_through_a_local_agent(local_session: HostSession, tmp_path: Path) -> None:
    _sync_scenario(local_session, tmp_path)


@pytest.mark.ssh
def test_sync_over_real_sshd(ssh_host: SshServer, tmp_path: Path) -> None:
    session = HostSession(ssh_host.spec())
    session.open()
    try:
        _sync_scenario(session, tmp_path)
        # The snapshot belongs to the SSH user, inside the server's workdir.
        snapshots = ssh_host.workdir / "snapshots"
        assert len([p for p in snapshots.iterdir() if not p.name.startswith(".")]) == 3
    finally:
        session.close()


def test_host_session_sync_entry_point(local_session: HostSession, tmp_path: Path) -> None:
    root = tmp_path / "code"
    write(root, "train.py", "print('hi')\n")
    manifest = build_manifest(root)
    freeze(root, manifest, tmp_path / "objects")
    path = local_session.sync(manifest, tmp_path / "objects")
    assert (Path(path) / "train.py").read_text() == "print('hi')\n"


def test_local_file_problems_are_local_files_errors_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a TransportError of a host called "local": a LocalFilesError with the file's path."""
    from remotetune.errors import LocalFilesError, TransportError

    missing = tmp_path / "no-such-code"
    with pytest.raises(LocalFilesError) as info:
        build_manifest(missing)
    assert not isinstance(info.value, TransportError)
    assert info.value.path == str(missing) and str(info.value).startswith(f"{missing}: ")
    assert info.value.exit_code == 1

    root = tmp_path / "code"
    write(root, "train.py", "print(1)")
    secret = write(root, "data/locked.bin", b"\0")

    def denied(path: Any) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sync, "hash_file", denied)
    with pytest.raises(LocalFilesError, match="cannot read it: Permission denied") as info:
        build_manifest(root)
    assert info.value.path in (str(secret), str(root / "train.py"))
    monkeypatch.undo()

    objects = tmp_path / "objects"
    with pytest.raises(LocalFilesError, match="is missing") as info:
        sync._tar({}, ["ab" * 32], objects)
    assert info.value.path == str(objects)
