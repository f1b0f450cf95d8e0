"""Linux inotify through ctypes: the agent's long poll sleeps until a trial's files change.

Standard library only, Python >= 3.8 (shipped to hosts with the agent). One inotify
descriptor per agent, opened on first use and kept; :meth:`Inotify.track` adds a watch on
each trial directory a long poll waits on and removes those it no longer waits on, so
neither descriptors nor watches pile up across polls. A watched directory reports what a
trial's news is made of: ``metrics.jsonl`` appended (``IN_MODIFY``) or created, and
``exit.json`` / ``pid.json`` renamed into place (``IN_MOVED_TO``; the launcher writes them
atomically) or written in place. Other names in the directory (``stdout.log``, temporary
files) do not wake the agent. An event only says "look now": the caller still compares the
files' stat signatures (watch.py), so offsets and exactly-once lines do not depend on it.

Unavailable (not Linux, no ``ctypes``, no such libc symbol, ``REMOTETUNE_NO_INOTIFY`` set)
or unable to watch a directory (the per-user watch limit reached, ``ENOSPC``; a directory
that is gone), :meth:`track` returns False and the caller polls with ``stat`` as before.
"""

from __future__ import annotations

import errno
import os
import struct
import sys

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
        | IN_MOVE_SELF | IN_ONLYDIR)
SELF = IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW | IN_IGNORED  # always news
NAMES = frozenset((b"metrics.jsonl", b"exit.json", b"pid.json"))
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


def _libc():
    """libc's three inotify calls, or None where there is no inotify."""
    if os.environ.get("REMOTETUNE_NO_INOTIFY") or not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        init, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (ImportError, OSError, AttributeError):
        return None
    init.argtypes = [ctypes.c_int]
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    rm.argtypes = [ctypes.c_int, ctypes.c_int]
    return init, add, rm, ctypes.get_errno


class Inotify:
    """One inotify descriptor and the watches of the directories a long poll waits on."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.wds: dict = {}  # directory -> watch descriptor
        self.dirs: dict = {}  # watch descriptor -> directory
        self.last_error = 0
        calls = _libc()
        if calls is None:
            return
        self._init, self._add, self._rm, self._errno = calls
        fd = self._init(os.O_NONBLOCK | os.O_CLOEXEC)  # IN_NONBLOCK, IN_CLOEXEC
        if fd >= 0:
            self.fd = fd

    def track(self, dirs) -> bool:
        """Watch exactly ``dirs``; False when one of them cannot be watched (poll instead)."""
        if self.fd is None:
            return False
        self.drain()  # forget watches the kernel dropped (a directory deleted)
        wanted = set(dirs)
        for gone in [d for d in self.wds if d not in wanted]:
            self._remove(gone)
        complete = True
        for path in wanted:
            if path in self.wds:
                continue
            wd = self._add(self.fd, os.fsencode(path), MASK)
            if wd < 0:
                self.last_error = self._errno()  # ENOSPC: the watch limit; ENOENT: gone
                complete = False
                continue
            self.wds[path] = wd
            self.dirs[wd] = path
        return complete

    def _remove(self, path: str) -> None:
        wd = self.wds.pop(path)
        self.dirs.pop(wd, None)
        self._rm(self.fd, wd)  # EINVAL when the kernel dropped it already: nothing to do

    def drain(self) -> bool:
        """Read every queued event; whether one is about a trial's news files."""
        news, fd = False, self.fd
        if fd is None:
            return False
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return news
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return True
            if not data:
                return news
            news = self._parse(data) or news

    def _parse(self, data: bytes) -> bool:
        news, at, size = False, 0, _EVENT.size
        while at + size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, at)
            name = data[at + size:at + size + length].rstrip(b"\0")
            at += size + length
            if mask & IN_IGNORED and wd in self.dirs:  # the kernel dropped this watch
                self.wds.pop(self.dirs.pop(wd), None)
            if mask & SELF or name in NAMES:
                news = True
        return news

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.wds.clear()
            self.dirs.clear()
