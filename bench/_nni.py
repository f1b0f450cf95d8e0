"""NNI 3.0 for the benchmarks: its venv, `nnictl create`, polling its REST API, `nnictl stop`.

Shared by ``bench_ssh.py`` (remote training service) and ``bench_early_stop.py`` (local).
NNI comes from its own venv, default ``/tmp/nni-venv``, built by hand with
``python3.11 -m venv /tmp/nni-venv && /tmp/nni-venv/bin/pip install nni==3.0``; nothing here
installs it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_VENV = Path("/tmp/nni-venv")
VENV_HINT = ("python3.11 -m venv /tmp/nni-venv && /tmp/nni-venv/bin/pip install nni==3.0")
TERMINAL = ("DONE", "STOPPED", "ERROR")


def nnictl(venv: Path) -> Path:
    return venv / "bin" / "nnictl"


def missing(venv: Path) -> str | None:
    """Why NNI cannot run from ``venv``, or None when its ``nnictl`` is there."""
    if nnictl(venv).exists():
        return None
    return f"{nnictl(venv)} not found (build it: {VENV_HINT})"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def api(port: int, path: str) -> Any:
    return get_json(f"http://127.0.0.1:{port}/api/v1/nni/{path}")


@contextmanager
def created(venv: Path, config: Path, port: int, timeout: float = 180) -> Iterator[str]:
    """``nnictl create --config CONFIG --port PORT``; yields the experiment id.

    ``nnictl stop --port PORT`` runs on the way out, whatever happened.
    """
    done = subprocess.run(
        [str(nnictl(venv)), "create", "--config", str(config), "--port", str(port)],
        capture_output=True, text=True, timeout=timeout,
    )
    try:
        if done.returncode != 0:
            raise RuntimeError(f"nnictl create failed ({done.returncode}):\n"
                               f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        yield api(port, "experiment")["id"]
    finally:
        subprocess.run([str(nnictl(venv)), "stop", "--port", str(port)], capture_output=True,
                       timeout=120)


def wait(port: int, timeout: float = 600, interval: float = 0.25,
         patient: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll ``check-status`` and ``trial-jobs`` until the experiment ends or ``timeout``.

    Returns the last status and trial jobs (``startTime``/``endTime`` in ms since the epoch).
    ``patient``: a request that fails or times out (NNI's manager busy on a loaded machine) is
    tried again at the next poll instead of ending the wait.
    """
    deadline = time.time() + timeout
    status: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    while time.time() < deadline:
        try:
            status = api(port, "check-status")
            jobs = api(port, "trial-jobs")
        except (OSError, ValueError):
            if not patient:
                raise
            time.sleep(interval)
            continue
        if status.get("status") in TERMINAL:
            break
        time.sleep(interval)
    return status, jobs


def final_value(job: dict[str, Any]) -> float | None:
    """A trial job's final result as a number (NNI stores it JSON-encoded, often twice)."""
    for metric in job.get("finalMetricData") or []:
        value: Any = metric.get("data")
        while isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, dict):
            value = value.get("default")
        if isinstance(value, (int, float)):
            return float(value)
    return None
