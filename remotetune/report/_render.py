"""One call from a store to a finished report page."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from remotetune.model import ExperimentRecord
from remotetune.report._data import load_report_data
from remotetune.report._page import render_page
from remotetune.report._payload import build_payload

if TYPE_CHECKING:
    from remotetune.store import Store


def report_title(exp: ExperimentRecord) -> str:
    return f"remotetune: {exp.name} ({exp.id})"


def render_report(store: Store, experiment_id: str, *, now: float | None = None) -> str:
    """The self-contained HTML report of ``experiment_id`` (an id or an id prefix)."""
    data = load_report_data(store, experiment_id, now=now)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.generated_at))
    return render_page(
        build_payload(data),
        title=report_title(data.experiment),
        subtitle=f"report generated {stamp}; {len(data.trials)} trials",
    )
