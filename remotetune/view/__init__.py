"""The rich view: turns a :class:`Snapshot` of an experiment into renderables; reads, never acts.

- :func:`render`: the whole view (header, hosts x GPUs, trials, best trial, events).
- :func:`render_trial`: one trial in detail (``remotetune show EXP TRIAL``).
- :func:`watch`: the view attached to a store (``remotetune view EXP``), read-only.
- :class:`LiveView`: the view during ``run``, refreshed in rich's own thread.
"""

from __future__ import annotations

from remotetune.view._live import LiveView, watch
from remotetune.view._render import DEFAULT_MAX_TRIALS, ExperimentView, render
from remotetune.view._snapshot import Snapshot, derive_waiting_reason, order_trials
from remotetune.view._sparkline import sparkline
from remotetune.view._trial import render_trial

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
