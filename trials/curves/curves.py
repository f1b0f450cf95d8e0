"""Synthetic learning curves that depend on the parameters: noisy, and crossing.

``value(params, epoch)`` is an accuracy-like score in [0, 1] after ``epoch`` epochs (1-based):
``q * (1 - exp(-k * epoch)) + noise``. The plateau ``q`` is best for ``lr`` near 1e-2 and a
middling ``width``; the speed ``k`` grows with ``lr``, so large learning rates rise fast and
level off low while small ones start slow and overtake them: early leaders are not always the
final winners. The noise (sd 0.01) is a pure function of the parameters and the epoch, so every
run of a configuration gives the same curve. Standard library only.

Two workloads share the space. ``smooth`` (the default, issue 10's) is the above: every
configuration learns, the plateaus lie between 0.71 and 0.95. ``lr-sweep`` adds what real
learning-rate searches show: a configuration whose ``lr`` is above ``DIVERGE_LR`` does not
learn at all and stays at chance level (``CHANCE``, ten classes) from the first epoch. With
``lr`` log-uniform on [1e-4, 1] that is 20.6% of the draws; in the three NNI CIFAR-10 searches
of a course report (lr log-uniform on [1e-4, 0.1], several optimizers) 11 of 50 trials (22%)
ended at chance level (<= 0.2) or failed, most with a large learning rate.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from typing import Any

EPOCHS = 20
WORKLOADS = ("smooth", "lr-sweep")
DIVERGE_LR = 0.15
CHANCE = 0.1
SPACE: dict[str, Any] = {
    "lr": {"_type": "loguniform", "_value": [1e-4, 1.0]},
    "width": {"_type": "choice", "_value": [16, 32, 64, 128, 256]},
    "dropout": {"_type": "uniform", "_value": [0.0, 0.6]},
}


def _knobs(params: Mapping[str, Any]) -> tuple[float, float]:
    lr = float(params.get("lr", 1e-2))
    width = float(params.get("width", 64))
    dropout = float(params.get("dropout", 0.2))
    x = math.log10(max(lr, 1e-12))  # -4 .. 0
    q = 0.95 - 0.06 * (x + 2.0) ** 2 - 0.04 * (math.log2(width) - 6.0) ** 2 / 4.0 \
        - 0.3 * (dropout - 0.25) ** 2
    k = 0.05 + 0.45 * (x + 4.0) / 4.0  # slow at 1e-4, fast at 1
    return max(0.05, q), max(0.02, k)


def diverges(params: Mapping[str, Any], workload: str = "smooth") -> bool:
    """True when this configuration does not learn under ``workload``."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r} (one of {', '.join(WORKLOADS)})")
    return workload == "lr-sweep" and float(params.get("lr", 1e-2)) > DIVERGE_LR


def value(params: Mapping[str, Any], epoch: int, workload: str = "smooth") -> float:
    q, k = _knobs(params)
    key = json.dumps({k2: v for k2, v in params.items() if k2 != "TRIAL_BUDGET"},
                     sort_keys=True) + f"/{epoch}"
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    noise = random.Random(seed).gauss(0.0, 0.01)
    mean = CHANCE if diverges(params, workload) else q * (1.0 - math.exp(-k * epoch))
    return min(1.0, max(0.0, mean + noise))
