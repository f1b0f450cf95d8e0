"""A trial that records which GPUs it was given, for placement tests. Standard library only.

    python3 gpu_probe.py [--seconds S] [--out FILE]

It reads ``CUDA_VISIBLE_DEVICES`` and the trial's ids, sleeps ``seconds`` (the tuner's
``seconds`` parameter wins over the option), and writes the record below as JSON to
``$REMOTETUNE_TRIAL_DIR/gpu_probe.json`` (or ``--out``) and as its final metric::

    {"default": <number of visible GPUs>, "cuda_visible_devices": "0,1" or null,
     "gpus": [0, 1], "trial_id": ..., "experiment_id": ..., "sequence_id": ...,
     "hostname": ..., "pid": ..., "started_at": <epoch s>, "ended_at": <epoch s>}

``gpus`` holds the entries of ``CUDA_VISIBLE_DEVICES`` (numbers as ints, UUIDs as strings);
``default`` is their count (0 when the variable is unset or empty).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

RECORD_NAME = "gpu_probe.json"


def visible_gpus(value: str | None) -> list[int | str]:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value."""
    entries: list[int | str] = []
    for part in (value or "").split(","):
        part = part.strip()
        if part:
            entries.append(int(part) if part.isdigit() else part)
    return entries


def _trial_api() -> Any:
    """``remotetune.trial``, from a source checkout when remotetune is not installed."""
    try:
        from remotetune import trial
    except ImportError:
        parents = Path(__file__).resolve().parents
        if len(parents) < 3:
            raise
        sys.path.insert(0, str(parents[2]))  # trials/<name>/ in a source checkout
        from remotetune import trial
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time to sleep (default 0.5)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the record (default $REMOTETUNE_TRIAL_DIR/"
                        f"{RECORD_NAME}; not written when neither is given)")
    args = parser.parse_args(argv)
    api = _trial_api()
    params = api.get_next_parameter()
    seconds = float(params.get("seconds", args.seconds))
    started = time.time()
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus(raw)
    api.report_intermediate_result(len(gpus))
    time.sleep(seconds)
    record: dict[str, Any] = {
        "default": len(gpus),
        "cuda_visible_devices": raw,
        "gpus": gpus,
        "trial_id": api.get_trial_id(),
        "experiment_id": api.get_experiment_id(),
        "sequence_id": api.get_sequence_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": started,
        "ended_at": time.time(),
    }
    trial_dir = os.environ.get("REMOTETUNE_TRIAL_DIR")
    out = args.out or (Path(trial_dir) / RECORD_NAME if trial_dir else None)
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, out)  # readers never see a half-written record
    api.report_final_result(record)
    print(json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
