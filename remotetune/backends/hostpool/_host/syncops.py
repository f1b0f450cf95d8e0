"""Host side of code sync: a content-addressed object store and immutable snapshots.

Standard library only, Python >= 3.8 (shipped to bare hosts; the agent dispatches
:data:`OPS`). Layout under the agent's workdir::

    objects/<sha256>            one file per distinct content, mode 0444, written atomically
    snapshots/<digest>/         a materialised code tree, never changed once renamed in

A manifest travels as JSON ``{"entries": [[path, size, mode, sha256], ...]}`` sorted by
path; its digest (:func:`manifest_digest`) names the snapshot, and the host recomputes it
before trusting the manifest.

Snapshot files are hard links to the objects where the wanted mode is 0444 (a copy
otherwise, or when linking fails); every file loses its write bits, keeping its read and
execute bits. Directories stay writable so trials may create files next to the code;
they must not rewrite the code files (for root, 0444 does not prevent it, and a rewrite
would change the shared object).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time

_SHA = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def manifest_digest(entries) -> str:
    """The snapshot name of a manifest: sha256 over its (path, size, mode, sha) lines."""
    digest = hashlib.sha256()
    for path, size, mode, sha in entries:
        digest.update(f"{path}\0{size}\0{mode:o}\0{sha}\n".encode())
    return digest.hexdigest()


def _check_sha(value) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise ValueError(f"not a sha256 hex digest: {value!r}")
    return value


def _check_path(path) -> str:
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise ValueError(f"bad path in manifest: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad path in manifest: {path!r}")
    return path


def parse_manifest(payload, digest: str) -> list:
    """The entries of a manifest payload, checked against ``digest``."""
    if not payload:
        raise ValueError("the request carries no manifest")
    data = json.loads(payload.decode("utf-8"))
    entries = []
    for item in data["entries"]:
        path, size, mode, sha = item
        entries.append((_check_path(path), int(size), int(mode) & 0o7777, _check_sha(sha)))
    if manifest_digest(entries) != digest:
        raise ValueError(f"manifest does not match its digest {digest} (corrupted in transit?)")
    return entries


def _dirs(workdir: str):
    return os.path.join(workdir, "objects"), os.path.join(workdir, "snapshots")


def _have(objects: str, sha: str, size: int) -> bool:
    try:
        return os.stat(os.path.join(objects, sha)).st_size == size
    except OSError:
        return False


def _missing(objects: str, entries) -> list:
    sizes = {}
    for _path, size, _mode, sha in entries:
        sizes[sha] = size
    return sorted(sha for sha, size in sizes.items() if not _have(objects, sha, size))


def readonly_mode(mode: int) -> int:
    """The mode a snapshot file gets: the original's read and execute bits, no write bits."""
    return (mode & 0o555) | 0o400


def materialize(workdir: str, digest: str, entries) -> dict:
    """Build ``snapshots/<digest>`` from the objects (no-op when it exists)."""
    objects, snapshots = _dirs(workdir)
    final = os.path.join(snapshots, _check_sha(digest))
    if os.path.isdir(final):
        return {"path": final, "created": False, "linked": 0, "copied": 0}
    missing = _missing(objects, entries)
    if missing:
        raise ValueError(f"{len(missing)} objects missing on the host, e.g. {missing[0]}")
    os.makedirs(snapshots, exist_ok=True)
    tmp = os.path.join(snapshots, f".tmp-{digest[:12]}-{os.getpid()}-{os.urandom(4).hex()}")
    linked = copied = 0
    made = set()
    try:
        os.mkdir(tmp)
        for path, _size, mode, sha in entries:
            target = os.path.join(tmp, path)
            parent = os.path.dirname(target)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            source = os.path.join(objects, sha)
            want = readonly_mode(mode)
            if want == 0o444:
                try:
                    os.link(source, target)
                    linked += 1
                    continue
                except OSError:  # another file system, EMLINK, no hard links at all
                    pass
            shutil.copyfile(source, target)
            os.chmod(target, want)
            copied += 1
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # not a concurrent materialise of the same tree
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": final, "created": True, "linked": linked, "copied": copied}


def write_new(path: str, data, mode: int = 0o444) -> None:
    """Write ``data`` to a temporary name created with ``mode``, then rename it to ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def store_tar(workdir: str, payload) -> dict:
    """Store every member of an uncompressed tar (named by sha256) into ``objects/``.

    Each member is hashed and written straight from the payload buffer (no copies). The
    controller sends only what ``sync_missing`` reported absent; one already present is
    rewritten (same bytes, atomically).
    """
    objects, _ = _dirs(workdir)
    os.makedirs(objects, exist_ok=True)
    started = time.time()
    stored = total = 0
    view = memoryview(payload)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as tar:
        for member in tar:
            sha = _check_sha(member.name)
            if not member.isfile():
                raise ValueError(f"tar member {sha} is not a regular file")
            data = view[member.offset_data:member.offset_data + member.size]
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha:
                raise ValueError(f"object {sha} arrived corrupted (sha256 {actual})")
            write_new(os.path.join(objects, sha), data)
            stored += 1
            total += member.size
    return {"stored": stored, "bytes": total, "seconds": round(time.time() - started, 4)}


# --------------------------------------------------------------------------- ops


def op_sync_missing(workdir: str, req: dict, payload) -> dict:
    """Which objects are absent. When none are, materialise at once (one round trip)."""
    digest = _check_sha(req["snapshot"])
    _, snapshots = _dirs(workdir)
    final = os.path.join(snapshots, digest)
    if os.path.isdir(final):
        return {"path": final, "missing": [], "created": False}
    entries = parse_manifest(payload, digest)
    objects, _ = _dirs(workdir)
    missing = _missing(objects, entries)
    if missing:
        _MANIFESTS.clear()  # one snapshot syncs at a time per agent
        _MANIFESTS[digest] = entries  # sync_materialize needs it sent only once
        return {"path": None, "missing": missing}
    answer = materialize(workdir, digest, entries)
    answer["missing"] = []
    return answer


def op_sync_put(workdir: str, req: dict, payload) -> dict:
    if not payload:
        raise ValueError("sync_put carries no tar payload")
    return store_tar(workdir, payload)


def op_sync_materialize(workdir: str, req: dict, payload) -> dict:
    digest = _check_sha(req["snapshot"])
    _, snapshots = _dirs(workdir)
    final = os.path.join(snapshots, digest)
    if os.path.isdir(final):
        return {"path": final, "created": False, "linked": 0, "copied": 0}
    if payload:
        entries = parse_manifest(payload, digest)
    elif digest in _MANIFESTS:
        entries = _MANIFESTS[digest]
    else:
        return {"path": None, "need_manifest": True}
    answer = materialize(workdir, digest, entries)
    _MANIFESTS.pop(digest, None)
    return answer


# Manifests received by sync_missing, by digest, for the sync_materialize that follows.
_MANIFESTS: dict = {}


OPS = {
    "sync_missing": op_sync_missing,
    "sync_put": op_sync_put,
    "sync_materialize": op_sync_materialize,
}
