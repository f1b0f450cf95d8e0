"""The controller's side of the code sync's transfer: the local packs and the tar streams
sent to hosts (:mod:`remotetune.sync` decides what to send).

The local object store keeps blobs in uncompressed tar packs (``objects/packs/*.tar``, each
with a ``.json`` index of its members' offsets). A ``sync_put`` payload is a tar stream of
the blobs a host lacks, copied member by member from the packs. Blobs are named by their
sha256 and their tar members carry nothing else, so the stream of a given list of blobs is
the same bytes for every host: :data:`TARS` builds it once and hands the same bytes to each
host that lacks the same blobs (64 fresh hosts: one build, not 64).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from remotetune.backends.hostpool._agent_client import Request
from remotetune.errors import LocalFilesError

log = logging.getLogger(__name__)

PUT_BATCH_BYTES = 4 * 2**20  # small enough that the host stores one while the next travels
_BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * _BLOCK)  # what ends a tar stream: two zero blocks


class AgentCaller(Protocol):
    """What sync needs of :class:`remotetune.backends.hostpool._agent_client.AgentClient`
    (which also has ``call_many``, used when present: :func:`send_all`)."""

    host: str

    def call(
        self, op: str, *, payload: bytes | None = None, timeout: float = 60.0, **fields: Any
    ) -> dict[str, Any]: ...


def send_all(client: AgentCaller, requests: Iterable[Request], timeout: float
             ) -> list[dict[str, Any]]:
    """Every request's answer, in order: pipelined through ``call_many`` when the client has
    it, else one call after the other."""
    call_many = getattr(client, "call_many", None)
    if call_many is not None:
        return list(call_many(requests, timeout=timeout))
    return [client.call(r.op, payload=r.payload, timeout=timeout, **r.fields)
            for r in requests]


@dataclass(frozen=True)
class _Blob:
    pack: Path
    start: int  # offset of the member's header in the pack
    end: int  # offset just past its data, padded to the block size


def _load_index(objects_dir: Path) -> dict[str, _Blob]:
    index: dict[str, _Blob] = {}
    packs = objects_dir / "packs"
    if not packs.is_dir():
        return index
    for idx in sorted(packs.glob("*.json")):
        try:
            members = json.loads(idx.read_text())["members"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable pack index %s: %s", idx, exc)
            continue
        pack = idx.with_suffix(".tar")
        for sha, (start, end) in members.items():
            index.setdefault(sha, _Blob(pack, int(start), int(end)))
    return index


def _tar(index: dict[str, _Blob], shas: Sequence[str], objects_dir: Path | None = None) -> bytes:
    """A tar stream of ``shas``: their members' raw bytes copied from the packs."""
    parts: list[bytes] = []
    handles: dict[Path, Any] = {}
    try:
        for sha in shas:
            blob = index.get(sha)
            if blob is None:
                raise LocalFilesError(str(objects_dir or "objects"), f"object {sha} is missing",
                                      hint="freeze() the manifest before syncing it")
            handle = handles.get(blob.pack)
            if handle is None:
                handle = handles[blob.pack] = open(blob.pack, "rb")  # noqa: SIM115
            handle.seek(blob.start)
            parts.append(handle.read(blob.end - blob.start))
    except OSError as exc:
        raise LocalFilesError(str(exc.filename or objects_dir), "cannot read the local object "
                              f"store: {exc.strerror or exc}") from None
    finally:
        for handle in handles.values():
            handle.close()
    parts.append(END_OF_ARCHIVE)
    return b"".join(parts)


def blob_header(sha: str, size: int) -> bytes:
    """The 512-byte ustar header of a blob's member: named by its sha256, a regular file,
    mode 0444, owner 0:0, mtime 0. What ``tarfile`` writes for such a ``TarInfo`` (Python
    3.11's, byte for byte), at a tenth of its cost: a first freeze writes thousands."""
    name = sha.encode("ascii")
    if len(name) > 100 or size < 0 or size >= 8**11:
        raise ValueError(f"no ustar header for a blob named {sha!r} of {size} bytes")
    head = b"".join((
        name.ljust(100, b"\0"), b"0000444\0", b"0000000\0", b"0000000\0",
        b"%011o\0" % size, b"00000000000\0",
    ))
    tail = b"".join((
        b"0", b"\0" * 100, b"ustar\x0000", b"\0" * 80,  # no link target, names, device
    ))
    checksum = 8 * 32 + sum(head) + sum(tail)  # the checksum field counts as 8 spaces
    header = head + b"%06o\0 " % checksum + tail
    return header.ljust(_BLOCK, b"\0")


def padding(size: int) -> bytes:
    """The zeros that round a member's data up to the tar block size."""
    return b"\0" * (-size % _BLOCK)


def _batches(shas: Sequence[str], sizes: dict[str, int]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    used = 0
    for sha in shas:
        if batches[-1] and used + sizes[sha] > PUT_BATCH_BYTES:
            batches.append([])
            used = 0
        batches[-1].append(sha)
        used += sizes[sha]
    return [b for b in batches if b]


def _timeout(nbytes: int) -> float:
    return 60.0 + nbytes / 2**20  # at least 1 MiB/s


class TarCache:
    """Tar streams by the blobs they hold, built once however many hosts ask at a time.

    A host worker that asks while another builds the same stream waits for it. Streams are
    dropped oldest first beyond ``limit`` bytes and after ``keep`` seconds unused (they
    serve the hosts' connect wave; a later reconnect builds again).
    """

    def __init__(self, limit: int = 128 * 2**20, keep: float = 120.0) -> None:
        self.limit, self.keep = limit, keep
        self._lock = threading.Lock()
        self._tars: collections.OrderedDict[tuple[str, ...], tuple[bytes, float]] = (
            collections.OrderedDict())
        self._building: dict[tuple[str, ...], threading.Event] = {}
        self.builds = 0  # streams built (for tests and benchmarks)

    def get(self, objects_dir: Path, index: dict[str, _Blob], shas: Sequence[str]) -> bytes:
        return self.get_or_build(tuple(shas), lambda: _tar(index, shas, objects_dir))

    def get_or_build(self, key: tuple[str, ...], build: Callable[[], bytes]) -> bytes:
        while True:
            with self._lock:
                self._expire(time.monotonic())
                if key in self._tars:
                    data, _ = self._tars.pop(key)
                    self._tars[key] = (data, time.monotonic())
                    return data
                event = self._building.get(key)
                if event is None:
                    self._building[key] = threading.Event()
                    break
            event.wait()  # another worker builds it; if that failed, build it here
        try:
            data = build()
            self.builds += 1
            with self._lock:
                self._tars[key] = (data, time.monotonic())
                self._trim()
            return data
        finally:
            with self._lock:
                self._building.pop(key).set()

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, used) in self._tars.items() if now - used > self.keep]:
            del self._tars[key]

    def _trim(self) -> None:
        total = sum(len(data) for data, _ in self._tars.values())
        while total > self.limit and len(self._tars) > 1:
            _, (data, _) = self._tars.popitem(last=False)
            total -= len(data)

    def clear(self) -> None:
        with self._lock:
            self._tars.clear()


TARS = TarCache()
