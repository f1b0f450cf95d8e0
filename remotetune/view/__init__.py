"""The rich view: turns a :class:`Snapshot` of an experiment into renderables; reads, never acts.

- :func:`render`: the whole view (header, hosts x GPUs, trials, best trial, events).
- :func:`render_trial`: one trial in detail (``remotetune show EXP TRIAL``).
- :func:`watch`: the view attached to a store (``remotetune view EXP``), read-only.
- :class:`LiveView`: the view during ``run``, refreshed in rich's own thread.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remotetune.view._live import LiveView, watch
    from remotetune.view._render import DEFAULT_MAX_TRIALS, ExperimentView, render
    from remotetune.view._snapshot import Snapshot, derive_waiting_reason, order_trials
    from remotetune.view._sparkline import sparkline
    from remotetune.view._trial import render_trial

# Loaded on first use (PEP 562): `remotetune run --plain` imports `view._safe` alone, not the
# renderers and rich's live display (a tenth of its start-up on a busy machine).
_HOME = {
    "LiveView": "_live", "watch": "_live", "DEFAULT_MAX_TRIALS": "_render",
    "ExperimentView": "_render", "render": "_render", "Snapshot": "_snapshot",
    "derive_waiting_reason": "_snapshot", "order_trials": "_snapshot",
    "sparkline": "_sparkline", "render_trial": "_trial",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MAX_TRIALS",
    "ExperimentView",
    "LiveView",
    "Snapshot",
    "derive_waiting_reason",
    "order_trials",
    "render",
    "render_trial",
    "sparkline",
    "watch",
]
