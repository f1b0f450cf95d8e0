"""The trials table: running first, then best first, then the rest, cut to what fits."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from remotetune.model import TrialRecord, TrialStatus
from remotetune.view._format import (
    STATUS_STYLE,
    fmt_duration,
    fmt_metric,
    params_text,
    placement,
    queued,
    trial_duration,
)
from remotetune.view._grid import Cell, Column, Grid
from remotetune.view._snapshot import Snapshot

TABLE_CHROME = 3  # title, column header, header rule

_COLUMNS = (
    Column("trial", max_width=16),
    Column("host:GPU", max_width=20),
    Column("status", max_width=13),
    Column("parameters", flexible=True, min_width=8),
    Column("latest", justify="right", max_width=10),
    Column("best", justify="right", max_width=10),
    Column("final", justify="right", max_width=10),
    Column("time", justify="right"),
)


def _row(trial: TrialRecord, now: float) -> list[Cell]:
    return [
        Cell(trial.id, "bold"),
        Cell(placement(trial)),
        Cell("WAITING", STATUS_STYLE[TrialStatus.WAITING]) if queued(trial)
        else Cell(trial.status.value, STATUS_STYLE.get(trial.status, "")),
        Cell(params_text(trial.parameters)),
        Cell(fmt_metric(trial.latest_intermediate)),
        Cell(fmt_metric(trial.best_intermediate)),
        _final(trial),
        Cell(fmt_duration(trial_duration(trial, now))),
    ]


def _final(trial: TrialRecord) -> Cell:
    if trial.final is None and trial.status is TrialStatus.EARLY_STOPPED:
        # no final: it was stopped after its last report (the reason is in the events)
        return Cell(f"stop@{trial.intermediate_count}", STATUS_STYLE[TrialStatus.EARLY_STOPPED])
    return Cell(fmt_metric(trial.final), "bold" if trial.final is not None else "dim")


def trials_table(snap: Snapshot, limit: int) -> RenderableType:
    """At most ``limit`` rows (at least one), followed by ``... and N more`` when cut."""
    ordered = snap.ordered_trials()
    shown = ordered[: max(1, limit)]
    table = Grid(_COLUMNS, [_row(t, snap.now) for t in shown], title=f"Trials ({len(ordered)})")
    if not ordered:
        return Group(table, Text("  no trials yet", style="dim"))
    hidden = len(ordered) - len(shown)
    if hidden:
        return Group(table, Text(f"  ... and {hidden} more", style="dim"))
    return table
