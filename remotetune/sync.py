"""Code sync: ``trialCodeDirectory`` as an immutable, content-addressed snapshot per host.

1. :func:`build_manifest` walks the tree (ignore rules below), hashing files with a local
   cache keyed on (path, size, mtime_ns).
2. :func:`freeze` copies the blobs into a local object store, checking each sha256, so
   edits made after the experiment started never reach a host.
3. :func:`sync_snapshot` asks the host's agent which blobs it lacks (``sync_missing``), sends
   only those as uncompressed tar streams of <= 4 MiB each (``sync_put``, back to back, each
   built once for all hosts: :mod:`remotetune.sync_packs`), then has the host build
   ``snapshots/<digest>/`` (``sync_materialize``, sent right behind the puts). An unchanged
   tree costs one round trip, a new one two; the host side is
   :mod:`remotetune.backends.hostpool._host.syncops`.

Ignore rules: ``.remotetuneignore`` and ``.nniignore`` in the root *and in any
subdirectory* (gitignore semantics, relative to the file's directory: globs, ``**``,
leading ``/`` anchors, trailing ``/`` for directories, ``!`` negation, ``#`` comments, later
rules and deeper files win; a file inside an excluded directory cannot be re-included).
Excluded by default (a ``!`` rule can re-include them): ``.git``, ``.hg``, ``.svn``,
``__pycache__``, ``*.pyc``, ``*.pyo``, ``.venv``, ``venv``, any directory holding
``pyvenv.cfg`` (a virtualenv, whatever its name) or ``conda-meta`` (a conda env),
``.mypy_cache``, ``.pytest_cache``, ``.ruff_cache``, ``.tox``, ``node_modules``,
``.ipynb_checkpoints``.

Symlinks: a link to a file is followed (the snapshot holds the target's content as a
regular file); ``remotetune run`` first refuses links to files outside the directory unless
``followSymlinks: true`` (:mod:`remotetune.symlinks`). Links to directories and dangling
links are skipped with a warning, so a ``data -> /datasets`` link never drags a dataset
along (nor loops). Empty directories are not recreated. Sockets and FIFOs are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotetune.backends.hostpool._host.syncops import manifest_digest, write_new
from remotetune.errors import LocalFilesError, SyncProtocolError
from remotetune.sync_packs import (  # noqa: F401 - _tar: tests build streams with it
    END_OF_ARCHIVE,
    TARS,
    AgentCaller,
    Request,
    _batches,
    _load_index,
    _tar,
    _timeout,
    blob_header,
    padding,
    send_all,
)

log = logging.getLogger(__name__)

IGNORE_FILES = (".remotetuneignore", ".nniignore")
DEFAULT_EXCLUDED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".tox", "node_modules", ".ipynb_checkpoints",
})
DEFAULT_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
ENV_MARKERS = ("pyvenv.cfg", "conda-meta")
RACY_SECONDS = 2.0  # files modified this recently are hashed again next time
CACHE_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative, "/"-separated
    size: int
    mode: int  # permission bits of the source file
    sha256: str


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]  # sorted by path
    digest: str  # names the snapshot on every host
    total_bytes: int

    def to_json(self) -> bytes:
        rows = [[e.path, e.size, e.mode, e.sha256] for e in self.entries]
        return json.dumps({"entries": rows}, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- ignore rules


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool

    def matches(self, relpath: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.fullmatch(relpath) is not None


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        at_segment_start = i == 0 or glob[i - 1] == "/"
        if glob.startswith("**/", i) and at_segment_start:
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i) and at_segment_start and i + 2 == n:
            out.append(".*")
            i += 2
        elif c == "*":
            while i + 1 < n and glob[i + 1] == "*":  # a "**" inside a name acts as "*"
                i += 1
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith("[!", i) or glob.startswith(
                "[]", i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_ignore(text: str) -> tuple[IgnoreRule, ...]:
    """Rules of one ignore file (gitignore syntax)."""
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip("\n\r")
        if not line.strip() or line.startswith("#"):
            continue
        stripped = line.rstrip(" ")  # trailing spaces are ignored unless escaped
        if stripped.endswith("\\") and len(line) > len(stripped):
            stripped += " "
        line = stripped
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line  # a slash at the start or in the middle anchors the rule
        body = _glob_to_regex(line.lstrip("/"))
        regex = body if anchored else "(?:.*/)?" + body
        rules.append(IgnoreRule(raw.strip(), re.compile(regex), negate, dir_only))
    return tuple(rules)


@dataclass(frozen=True)
class _RuleSet:
    base: str  # directory of the ignore file, relative to the root ("" for the root)
    rules: tuple[IgnoreRule, ...]


def _excluded(relpath: str, is_dir: bool, default: bool, rulesets: Sequence[_RuleSet]) -> bool:
    state = default
    for ruleset in rulesets:
        if ruleset.base:
            if not relpath.startswith(ruleset.base + "/"):
                continue
            local = relpath[len(ruleset.base) + 1:]
        else:
            local = relpath
        for rule in ruleset.rules:
            if rule.matches(local, is_dir):
                state = not rule.negate
    return state


def _default_excluded(entry: os.DirEntry[str], is_dir: bool) -> bool:
    if is_dir:
        if entry.name in DEFAULT_EXCLUDED_DIRS:
            return True
        # virtualenvs, and a remotetune home (its store changes while we freeze the code)
        return any(os.path.exists(os.path.join(entry.path, m))
                   for m in (*ENV_MARKERS, "remotetune.db"))
    return entry.name.endswith(DEFAULT_EXCLUDED_SUFFIXES)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class _FileStat:
    path: str
    abspath: str
    size: int
    mode: int
    mtime_ns: int


def _walk(root: Path) -> list[_FileStat]:
    files: list[_FileStat] = []
    stack: list[tuple[str, str, tuple[_RuleSet, ...]]] = [(str(root), "", ())]
    while stack:
        dirpath, reldir, inherited = stack.pop()
        rulesets = list(inherited)
        for name in IGNORE_FILES:
            ignore_file = os.path.join(dirpath, name)
            if os.path.isfile(ignore_file):
                with open(ignore_file, encoding="utf-8", errors="replace") as handle:
                    rulesets.append(_RuleSet(reldir, parse_ignore(handle.read())))
        frozen_rules = tuple(rulesets)
        try:
            entries = sorted(os.scandir(dirpath), key=lambda e: e.name)
        except OSError as exc:
            raise LocalFilesError(dirpath, f"cannot list it: {exc.strerror or exc}",
                                  hint="fix its permissions or exclude it in .remotetuneignore"
                            ) from None
        subdirs = []
        for entry in entries:
            rel = f"{reldir}/{entry.name}" if reldir else entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()
                st = os.stat(entry.path) if is_link else entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                log.warning("skipping %s: dangling symlink", rel)
                continue
            except OSError as exc:
                raise LocalFilesError(str(root / rel), f"cannot read it: {exc.strerror or exc}",
                                      hint="fix its permissions or exclude it in .remotetuneignore"
                                ) from None
            if _excluded(rel, is_dir, _default_excluded(entry, is_dir), frozen_rules):
                continue
            if is_dir and is_link:
                log.warning("skipping %s: symlinks to directories are not synced", rel)
            elif is_dir:
                subdirs.append((entry.path, rel, frozen_rules))
            elif stat.S_ISREG(st.st_mode):
                files.append(_FileStat(rel, entry.path, st.st_size, stat.S_IMODE(st.st_mode),
                                       st.st_mtime_ns))
            else:
                log.warning("skipping %s: not a regular file", rel)
        stack.extend(reversed(subdirs))
    files.sort(key=lambda f: f.path)
    return files


def hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _load_cache(cache_file: Path | None, root: Path) -> dict[str, list[Any]]:
    if cache_file is None or not cache_file.exists():
        return {}
    try:
        data = json.loads(cache_file.read_text())
        if data.get("version") == CACHE_VERSION and data.get("root") == str(root):
            return dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable hash cache %s", cache_file)
    return {}


def _save_cache(cache_file: Path, root: Path, files: dict[str, list[Any]]) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.tmp.{os.getpid()}")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "root": str(root), "files": files}))
        os.replace(tmp, cache_file)
    except OSError as exc:
        log.warning("cannot write hash cache %s: %s", cache_file, exc)


def _too_big(
    root: Path, files: list[_FileStat], total: int, max_bytes: int
) -> LocalFilesError:
    largest = sorted(files, key=lambda f: f.size, reverse=True)[:5]
    listing = ", ".join(f"{f.path} ({f.size / 2**20:.1f} MiB)" for f in largest)
    return LocalFilesError(
        str(root),
        f"the trial code directory holds {total / 2**20:.1f} MiB in {len(files)} files, over "
        f"the {max_bytes / 2**20:.0f} MiB limit; largest: {listing}",
        hint="exclude data, checkpoints and outputs in a .remotetuneignore file in that "
        "directory (gitignore syntax, e.g. `data/` or `*.ckpt`), or raise the size limit",
    )


def build_manifest(
    root: Path, *, max_bytes: int = 300 * 2**20, cache_file: Path | None = None
) -> Manifest:
    """Walk ``root`` (ignore rules above) and hash every file, reusing ``cache_file``."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise LocalFilesError(str(root), "the trial code directory does not exist",
                        hint="check trialCodeDirectory in the experiment file")
    files = _walk(root)
    total = sum(f.size for f in files)
    if total > max_bytes:
        raise _too_big(root, files, total, max_bytes)
    cache = _load_cache(cache_file, root)
    fresh: dict[str, list[Any]] = {}
    racy_after = time.time_ns() - int(RACY_SECONDS * 1e9)
    entries = []
    hashed = 0
    for f in files:
        cached = cache.get(f.path)
        if cached and cached[0] == f.size and cached[1] == f.mtime_ns:
            sha = str(cached[2])
        else:
            try:
                sha = hash_file(f.abspath)
            except OSError as exc:
                raise LocalFilesError(str(f.abspath), f"cannot read it: {exc.strerror or exc}",
                                      hint="fix its permissions or exclude it") from None
            hashed += 1
        if f.mtime_ns < racy_after:
            fresh[f.path] = [f.size, f.mtime_ns, sha]
        entries.append(ManifestEntry(f.path, f.size, f.mode, sha))
    if cache_file is not None and fresh != cache:
        _save_cache(cache_file, root, fresh)
    rows = [(e.path, e.size, e.mode, e.sha256) for e in entries]
    log.debug("manifest of %s: %d files, %d bytes, %d hashed", root, len(entries), total, hashed)
    return Manifest(tuple(entries), manifest_digest(rows), total)


# --------------------------------------------------------------------------- local store
#
# The local store holds packs: ``packs/<id>.tar`` is a tar of blobs named by sha256 (the
# very format sent to hosts) and ``packs/<id>.json`` its index, written last, so a pack
# without an index is an interrupted freeze and is ignored. One freeze writes one pack:
# two files instead of one per source file.

def freeze(root: Path, manifest: Manifest, objects_dir: Path) -> None:
    """Copy the blobs the local store lacks into one new pack, checking each sha256.

    Raises :class:`LocalFilesError` when a file changed since :func:`build_manifest` (then build
    the manifest again).
    """
    root = Path(root).resolve()
    index = _load_index(objects_dir)
    needed: dict[str, ManifestEntry] = {}
    for entry in manifest.entries:
        if entry.sha256 not in index:
            needed.setdefault(entry.sha256, entry)
    if not needed:
        return
    packs = objects_dir / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():x}-{os.getpid()}"
    tmp = packs / f".{name}.tar.tmp"
    members: dict[str, list[int]] = {}
    try:
        with open(tmp, "wb") as out:
            offset = 0
            for sha, entry in needed.items():
                data = (root / entry.path).read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise LocalFilesError(str(root / entry.path), f"{entry.path} changed while "
                                          "the code was being frozen", hint="start the "
                                          "experiment again once edits are saved")
                member = (blob_header(sha, len(data)), data, padding(len(data)))
                out.writelines(member)
                end = offset + sum(len(part) for part in member)
                members[sha] = [offset, end]  # what _tar copies: header, data, padding
                offset = end
            out.write(END_OF_ARCHIVE)
        os.replace(tmp, packs / f"{name}.tar")
        write_new(str(packs / f"{name}.json"), json.dumps({"members": members}).encode())
    except OSError as exc:
        raise LocalFilesError(str(exc.filename or packs), f"cannot freeze the code into "
                              f"{packs}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def sync_snapshot(client: AgentCaller, manifest: Manifest, objects_dir: Path) -> str:
    """Make ``snapshots/<manifest.digest>`` exist on the client's host; return its path.

    Two round trips for a host that lacks blobs: ``sync_missing``, then every ``sync_put``
    and the ``sync_materialize`` sent back to back (:meth:`AgentClient.call_many`), so the
    link carries the next batch while the host stores the last. The tar of a batch is built
    once for all hosts that lack the same blobs (:data:`sync_packs.TARS`).
    """
    payload = manifest.to_json()
    answer = client.call("sync_missing", snapshot=manifest.digest, payload=payload,
                         timeout=_timeout(len(payload)))
    if answer.get("path"):
        return str(answer["path"])
    missing = [str(sha) for sha in answer["missing"]]
    sizes = {e.sha256: e.size for e in manifest.entries}
    unknown = [sha for sha in missing if sha not in sizes]
    if unknown:
        raise SyncProtocolError(client.host, f"the host asked for objects not in the manifest: "
                        f"{unknown[:3]}")
    index = _load_index(objects_dir) if missing else {}

    def requests() -> Iterator[Request]:
        for batch in _batches(missing, sizes):
            yield Request("sync_put", TARS.get(objects_dir, index, batch))
        # The agent kept the manifest from sync_missing: it crosses the link once per host.
        yield Request("sync_materialize", None, {"snapshot": manifest.digest})

    timeout = _timeout(sum(sizes[sha] for sha in missing) + manifest.total_bytes)
    answer = send_all(client, requests(), timeout)[-1]
    if answer.get("need_manifest"):  # an agent that did not keep it
        answer = client.call("sync_materialize", snapshot=manifest.digest, payload=payload,
                             timeout=_timeout(manifest.total_bytes))
    log.debug("%s: sent %d objects for snapshot %s", client.host, len(missing),
              manifest.digest[:12])
    return str(answer["path"])
