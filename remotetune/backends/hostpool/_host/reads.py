"""Reading what a trial leaves in its directory, safely: metric lines, pid and exit files.

Part of the host agent (standard library only, Python >= 3.8). Everything in a trial
directory is untrusted: a file may be a FIFO, a directory or garbage JSON, a metric line
may be of any length. Nothing here blocks, and every read moves on.
"""

from __future__ import annotations

import json
import math
import os
import stat


def _regular_fd(path: str):
    """(descriptor, size) of ``path`` opened for reading if it is a regular file, else
    (None, 0).

    A trial can put anything in its directory: a FIFO (whose open or read would block the
    agent and with it every trial on the host), a directory, a device. Only regular files
    are read (``O_NONBLOCK`` keeps the open of a FIFO from blocking; on a regular file it
    changes nothing). The size lets a read ask for what is there: a 1 MiB buffer for every
    read would cost more than the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None, 0
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return fd, st.st_size
    except OSError:
        pass
    os.close(fd)
    return None, 0


def open_regular(path: str):
    """``path`` opened for reading if it is a regular file, else None (see _regular_fd)."""
    fd = _regular_fd(path)[0]
    if fd is None:
        return None
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
        return None


def read_json(path: str, limit: int = 1 << 20):
    """A JSON object from a small regular file, else None."""
    fd, size = _regular_fd(path)
    if fd is None:
        return None
    try:
        raw = os.pread(fd, min(limit, size), 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


LINE_LIMIT = 16 << 20  # a metric line up to this size is read whole; a longer one is skipped
_SCAN_CHUNK = 1 << 20
_SCAN_BUDGET = 256 << 20  # bytes one poll may scan for the end of an over-long line


def _find_newline(f, start: int, budget: int):
    """Position of the first newline at or after ``start`` (``f`` positioned there), or
    None, with the position where the scan stopped (EOF or the budget)."""
    pos = start
    while pos - start < budget:
        chunk = f.read(_SCAN_CHUNK)
        if not chunk:
            return None, pos
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i, pos + i
        pos += len(chunk)
    return None, pos


def _continues_skipped_line(f, offset: int) -> bool:
    """An offset that does not follow a newline is inside a line skipped earlier."""
    if offset <= 0:
        return False
    f.seek(offset - 1)
    return f.read(1) not in (b"\n", b"")


def _read_long_line(f, offset: int, final: bool, limit: int):
    """The window at ``offset`` holds no newline: read that one line whole, or skip it."""
    f.seek(offset)
    end, stop = _find_newline(f, offset, limit + 1)
    if end is not None and end - offset > limit:
        stop = end  # found beyond the limit: skipped below
        end = None
    if end is not None:
        f.seek(offset)
        data = f.read(end - offset)
        return [data.decode("utf-8", "replace")], end + 1, True, []
    if stop - offset <= limit:  # still being written (or a torn last line of an ended trial)
        if not final:
            return [], offset, False, []
        f.seek(offset)
        return [f.read(stop - offset).decode("utf-8", "replace")], stop, False, []
    # Longer than the limit: skip it. The offset may stop inside the line; the next read
    # from there skips the rest of it (see _continues_skipped_line).
    f.seek(stop)
    end, stop = _find_newline(f, stop, _SCAN_BUDGET)
    new_offset = end + 1 if end is not None else stop
    size = (end if end is not None else stop) - offset
    return [], new_offset, True, [size]


def read_from(path: str, offset: int, max_bytes: int, final: bool, limit: int = LINE_LIMIT):
    """Whole lines from ``offset``; a torn last line only once the trial has ended.

    Returns (lines, new offset, more to read, sizes of lines skipped as too long). A line
    longer than ``max_bytes`` comes alone, whole, up to ``limit`` bytes; a longer one is
    skipped. Every call moves the offset unless it waits for the rest of a line.
    """
    return read_lines(path, offset, max_bytes, final, limit)[:4]


def read_lines(path: str, offset: int, max_bytes: int, final: bool, limit: int = LINE_LIMIT):
    """read_from, and whether ``path`` is a regular file (then its directory exists).

    The common case costs one ``pread``: it reads the byte before ``offset`` with the
    window, which says whether ``offset`` follows a newline (else it is inside a line
    skipped earlier). That case and a window without a newline go the slow way.
    """
    fd, size = _regular_fd(path)
    if fd is None:  # missing, or not a regular file: nothing to read
        return [], offset, False, [], False
    if size <= offset:  # nothing new (what grows meanwhile is read next time)
        os.close(fd)
        return [], offset, False, [], True
    try:
        head = 1 if offset > 0 else 0
        data = os.pread(fd, min(max_bytes + 1, size - offset) + head, offset - head)
    finally:
        os.close(fd)
    if head and data[:1] not in (b"\n", b""):  # continues a skipped line
        return _read_from_file(path, offset, max_bytes, final, limit) + (True,)
    size = len(data) - head
    if size <= 0:
        return [], offset, False, [], True
    more = size > max_bytes
    end = head + min(size, max_bytes)
    cut = data.rfind(b"\n", head, end) + 1 or head
    if cut == head and more:  # a line longer than the window
        return _read_from_file(path, offset, max_bytes, final, limit) + (True,)
    if final and not more and cut < end:
        cut = end  # the writer is gone: its torn line will never be completed
    return split_lines(data[head:cut]), offset + cut - head, more, [], True


def split_lines(chunk: bytes) -> list:
    """Lines of ``chunk``, split on newlines only: a trial's \\r or \\x1c inside a line is not
    a line break (a trailing \\r is dropped). The last line may lack its newline."""
    if not chunk:
        return []
    text = chunk.decode("utf-8", "replace")  # a newline never ends inside a UTF-8 sequence
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # the empty string after the last newline
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def _read_from_file(path: str, offset: int, max_bytes: int, final: bool, limit: int):
    """read_from through a file object: for an offset inside a skipped line, or a window
    without a newline (a line longer than ``max_bytes``)."""
    f = open_regular(path)
    if f is None:  # missing, or not a regular file: nothing to read
        return [], offset, False, []
    with f:
        if _continues_skipped_line(f, offset):
            end, stop = _find_newline(f, offset, _SCAN_BUDGET)
            if end is None:
                return [], stop, stop - offset >= _SCAN_BUDGET, []
            offset = end + 1
        f.seek(offset)
        data = f.read(max_bytes + 1)
        more = len(data) > max_bytes
        data = data[:max_bytes]
        cut = data.rfind(b"\n") + 1
        if cut == 0 and more:
            return _read_long_line(f, offset, final, limit)
    if final and not more and cut < len(data):
        cut = len(data)  # the writer is gone: its torn line will never be completed
    return split_lines(data[:cut]), offset + cut, more, []


def _int(value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if minimum is None or value >= minimum else None


def _finite(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def valid_pid(info):
    """pid.json as the launcher wrote it, or None when a trial overwrote it with garbage
    (pids below 2 would name init or, for killpg, our own group)."""
    if not info or _int(info.get("pid"), 2) is None or _int(info.get("pgid"), 2) is None:
        return None
    if _finite(info.get("started")) is None:
        return None
    for key in ("launcher_pid", "ticks", "launcher_ticks"):
        if info.get(key) is not None and _int(info.get(key), 0) is None:
            return None
    return info


def valid_exit(info):
    """exit.json with only well-typed fields (a trial may have overwritten it)."""
    if info is None:
        return None
    reason = info.get("reason")
    return {"code": _int(info.get("code")), "signal": _int(info.get("signal")),
            "ended": _finite(info.get("ended")),
            "reason": reason[:500] if isinstance(reason, str) else None}


def tail(path: str, limit: int) -> str:
    f = open_regular(path)
    if f is None:
        return ""
    try:
        with f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
