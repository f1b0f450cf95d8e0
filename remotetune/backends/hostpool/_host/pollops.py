"""The agent's ``poll`` op: every trial's news since its offset (docs/protocol.md).

Standard library only, Python >= 3.8 (shipped to hosts with the agent). One poll reads,
per trial, ``exit.json`` (first: when it exists every metric line was written before the
read), the pid record, and ``metrics.jsonl`` from the offset, and checks that a started
trial's processes still live. With ``wait`` it waits for news (``watch.wait_change``).

The answer is kept small, since a poll runs every few hundred milliseconds over every
running trial of a host: a trial the request marks ``"started": true`` (the controller
holds its pid record) gets no ``pid`` back, and ``skipped``/``line_limit`` are present
only when a line was skipped.
"""

from __future__ import annotations

import os
import time

try:  # on hosts: the shipped bundle; in the controller's own tree: the package
    from remotetune._host import reads, watch  # type: ignore[attr-defined]
except ImportError:
    from remotetune.backends.hostpool._host import reads, watch

# Valid pid records by trial directory. The launcher writes pid.json once (atomically), so
# a record read once holds for the trial's life: a poll reads the file again only when it
# has none for that directory (a new agent, a trial not started yet). An entry goes when
# its exit is reported, when its directory is gone, and when a launch reuses the directory.
_PIDS: dict = {}


def forget(trial_dir: str) -> None:
    _PIDS.pop(trial_dir, None)


def _pid_record(trial_dir: str, ended: bool):
    info = _PIDS.get(trial_dir)
    if info is None:
        info = reads.valid_pid(reads.read_json(trial_dir + "/pid.json"))
        if info is not None and not ended:
            _PIDS[trial_dir] = info
    return info


def _read_trial(trial_dir: str, item: dict, max_bytes: int, line_limit: int, alive):
    """(one trial's answer, its pid record or None)."""
    exit_file = trial_dir + "/exit.json"
    exit_info = reads.valid_exit(reads.read_json(exit_file))
    pid_info = _pid_record(trial_dir, exit_info is not None)
    lines, new_offset, more, skipped, found = reads.read_lines(
        trial_dir + "/metrics.jsonl", int(item.get("offset", 0)), max_bytes,
        exit_info is not None, line_limit,
    )
    exists = found or os.path.isdir(trial_dir)  # a file read in it: it exists
    if not exists and pid_info is not None:  # gone, its pid.json with it
        forget(trial_dir)
        pid_info = None
    is_alive = None
    if exit_info is None and pid_info:
        is_alive = alive(pid_info)
        if not is_alive:  # it may have finished between our two reads
            if reads.valid_exit(reads.read_json(exit_file)) is not None:
                more = True  # read again next time, with the exit in hand
                is_alive = True
    answer = {"lines": lines, "offset": new_offset, "more": more,
              "exit": None if more else exit_info, "alive": is_alive, "exists": exists}
    if skipped:
        answer["skipped"] = skipped
        answer["line_limit"] = line_limit
    if pid_info is None or not item.get("started"):
        answer["pid"] = pid_info
    if answer["exit"] is not None:
        forget(trial_dir)  # ended: the controller stops polling it
    return answer, pid_info


def _dirs(workdir: str, req: dict) -> list:
    join, isabs = os.path.join, os.path.isabs
    return [item["dir"] if isabs(item["dir"]) else join(workdir, item["dir"])
            for item in req["trials"]]


def _poll_once(workdir: str, req: dict, alive, dirs=None, last=None, changed=None):
    """Every trial's answer; with ``last`` (an earlier call's) and ``changed`` (indexes),
    only those trials are read again: the others' files did not change since."""
    max_bytes = int(req.get("max_bytes", 1 << 20))
    line_limit = int(req.get("line_limit", reads.LINE_LIMIT))
    results, watched = [], []
    dirs = dirs or _dirs(workdir, req)
    for i, item in enumerate(req["trials"]):  # zip(strict=) is not in Python 3.8
        if changed is not None and i not in changed:
            results.append(last[0][i])
            watched.append(last[1][i])
            continue
        trial_dir = dirs[i]
        answer, pid_info = _read_trial(trial_dir, item, max_bytes, line_limit, alive)
        results.append(answer)
        watched.append((trial_dir, pid_info))
    return results, watched


def poll(workdir: str, req: dict, alive, pending, input_fd=None) -> dict:
    """Read every trial's news; with ``wait``, wait up to that long for some (see watch).

    ``alive(pid record)``: whether a trial's processes live; ``pending()``: whether a
    request waits on the agent's input, ``input_fd`` its descriptor (None: no inotify).
    The watches are set and the signatures taken before each read, so that nothing written
    after a read goes unseen. When files changed, only the trials they belong to are read
    again; a request or a vanished process reads all.
    """
    dirs = _dirs(workdir, req)
    wait = min(float(req.get("wait") or 0), 30.0)
    if not wait:
        return {"trials": _poll_once(workdir, req, alive, dirs)[0], "time": time.time()}
    waiter = watch.Waiter(dirs, input_fd, float(req.get("every", 0.005)))

    def sign():
        return [watch.signature(d, d in _PIDS) for d in dirs]

    before = sign()
    last = _poll_once(workdir, req, alive, dirs)
    deadline = time.monotonic() + wait
    while (last[0] and not any(watch.news(r) for r in last[0])
           and time.monotonic() < deadline):
        pids = [pid for _, pid in last[1] if pid is not None]
        why, now = watch.wait_change(pids, before, deadline - time.monotonic(), waiter,
                                     pending, alive, sign)
        if why == "timeout":
            break
        changed = None
        if why == "changed":  # only those trials: the others' files are as read
            changed = {i for i, s in enumerate(now) if s != before[i]}
        before = now or sign()
        last = _poll_once(workdir, req, alive, dirs, last, changed)
        if why == "request":
            break
    return {"trials": last[0], "time": time.time()}
