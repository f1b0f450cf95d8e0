"""The view's sections, each a small renderer over a :class:`Snapshot`: header, hosts x GPUs,
best trial, recent events, waiting reason. The trials table is in ``_trials``."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from remotetune.model import ExperimentStatus, GpuInfo, HostState, TrialRecord, TrialStatus
from remotetune.view._format import (
    LEVEL_STYLE,
    fmt_duration,
    fmt_metric,
    full_params,
    tail_lines,
)
from remotetune.view._grid import Cell, Column, Grid
from remotetune.view._snapshot import Snapshot, best_by

EVENTS_SHOWN = 8
BAR_WIDTH = 20
STDERR_LINES = 3

_EXPERIMENT_STYLE: Mapping[ExperimentStatus, str] = {
    ExperimentStatus.RUNNING: "bold cyan",
    ExperimentStatus.DONE: "bold green",
    ExperimentStatus.STOPPED: "bold yellow",
    ExperimentStatus.FAILED: "bold red",
}


def header(snap: Snapshot) -> RenderableType:
    exp = snap.experiment
    title = Text.assemble(
        (exp.name or exp.id, "bold"),
        (f" ({exp.id})", "dim"),
        "  tuner ",
        (exp.tuner or "?", "bold"),
        f" ({exp.optimize_mode.value})  ",
        (exp.status.value, _EXPERIMENT_STYLE.get(exp.status, "")),
    )
    if exp.source != "remotetune":
        title.append(f"  imported from {exp.source}", style="dim")
    budget = fmt_duration(exp.max_experiment_duration) if exp.max_experiment_duration else "∞"
    timing = Text(f"elapsed {fmt_duration(snap.elapsed)} / {budget}")
    eta = snap.eta()
    if eta is not None:
        timing.append(f" · ETA {fmt_duration(eta)}")
    if exp.message:
        failed = exp.status is ExperimentStatus.FAILED
        timing.append(f"  {exp.message}", style="red" if failed else "dim")

    done = snap.done
    counts = [f"{done}/{exp.max_trial_number if exp.max_trial_number else '∞'} trials"]
    for status, label in (
        (TrialStatus.RUNNING, "running"),
        (TrialStatus.WAITING, "waiting"),
        (TrialStatus.FAILED, "failed"),
        (TrialStatus.LOST, "lost"),
    ):
        n = snap.count(status)
        if n:
            counts.append(f"{n} {label}")
    counts.append(f"{exp.trial_concurrency} at a time")  # `remotetune update` changes it
    total = exp.max_trial_number
    if total:
        bar = ProgressBar(total=float(total), completed=float(min(done, total)), width=BAR_WIDTH)
    else:  # no trial budget: pulse while running, full once finished
        finished = exp.status.is_finished()
        bar = ProgressBar(total=1.0 if finished else None, completed=1.0, width=BAR_WIDTH)
    progress = Table.grid(padding=(0, 1))
    progress.add_column(no_wrap=True, width=BAR_WIDTH)
    progress.add_column(no_wrap=True, overflow="ellipsis")
    progress.add_row(bar, Text(" · ".join(counts)))
    return Panel(Group(title, timing, progress), box=box.ROUNDED, padding=(0, 1))


def _gpu_cells(gpu: GpuInfo) -> tuple[Cell, Cell]:
    pct = gpu.utilization_pct
    util = Cell(f"{pct:3.0f}%", "red" if pct >= 90 else "green" if pct else "dim")
    mem = f"{gpu.memory_used_mib / 1024:.1f}/{gpu.memory_total_mib / 1024:.1f} GiB"
    return util, Cell(mem, "red" if gpu.memory_used_pct >= 90 else "")


def _holders(state: HostState, gpu: int, running: list[TrialRecord]) -> list[str]:
    """Trial ids on ``gpu``: the controller's record, plus running trials placed there."""
    ids = list(state.gpu_holders.get(gpu, ()))
    for trial in running:
        if trial.host == state.host and gpu in trial.gpus and trial.id not in ids:
            ids.append(trial.id)
    return ids


_HOST_COLUMNS = (
    Column("host", max_width=24),
    Column("GPU"),
    Column("util", justify="right"),
    Column("memory", justify="right"),
    Column("trials", flexible=True, min_width=8),
)
_NONE = Cell("")


def hosts_panel(snap: Snapshot) -> RenderableType:
    """One row per GPU (per host without GPUs); unreachable hosts in red with the reason."""
    rows: list[list[Cell]] = []
    running = [t for t in snap.trials if t.status is TrialStatus.RUNNING]
    seen = set()
    for state in snap.hosts:
        seen.add(state.host)
        if not state.reachable:
            why = f"unreachable: {state.message}" if state.message else "unreachable"
            rows.append([Cell(state.host, "bold red"), _NONE, _NONE, _NONE, Cell(why, "red")])
            continue
        name = Cell(state.host, "bold")
        if not state.gpus:
            ids = " ".join(t.id for t in running if t.host == state.host)
            slots = Cell(f"slots {state.running}/{state.slots}")
            rows.append(
                [name, Cell("cpu", "dim"), _NONE, slots, Cell(ids or "idle", "" if ids else "dim")]
            )
            continue
        for i, gpu in enumerate(state.gpus):
            util, mem = _gpu_cells(gpu)
            ids = " ".join(_holders(state, gpu.index, running))
            holders = Cell(ids) if ids else Cell("free", "dim")
            rows.append([name if i == 0 else _NONE, Cell(str(gpu.index)), util, mem, holders])
    for machine in snap.experiment.machines:
        label = str(machine.get("name") or machine.get("host") or "")
        if label and label not in seen:
            rows.append(
                [Cell(label, "bold"), _NONE, _NONE, _NONE, Cell("not contacted yet", "dim")]
            )
    if not rows:
        rows.append(
            [Cell("none", "dim"), _NONE, _NONE, _NONE, Cell("no host contacted yet", "dim")]
        )
    return Grid(_HOST_COLUMNS, rows, title="Hosts")


def best_panel(snap: Snapshot) -> RenderableType:
    mode = snap.experiment.optimize_mode
    best = snap.best()
    label = "final"
    value = best.final if best else None
    if best is None:
        best = best_by(snap.trials, mode, final=False)
        label = "best intermediate"
        value = best.best_intermediate if best else None
    text = Text("Best ", style="bold")
    if best is None:
        text.append("no metric reported yet", style="dim")
        return text
    text.append(best.id, style="bold green")
    text.append(f"  {label} ")
    text.append(fmt_metric(value), style="bold")
    text.append(f"  ({mode.value})", style="dim")
    if best.host:
        text.append(f"  on {best.host}")
    params = full_params(best.parameters)
    if params:
        text.append("\n  ")
        text.append("  ".join(f"{k}={v}" for k, v in params))
    return text


def _clock(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def events_panel(snap: Snapshot) -> RenderableType:
    """The last few events; a failed trial's latest event carries its stderr tail."""
    events = snap.events[-EVENTS_SHOWN:]
    lines: list[Text] = [Text("Events", style="bold")]
    if not events:
        lines.append(Text("  none yet", style="dim"))
        return Group(*lines)
    by_id = {t.id: t for t in snap.trials if t.status is TrialStatus.FAILED}
    last_for_trial = {e.trial_id: i for i, e in enumerate(events) if e.trial_id in by_id}
    for i, event in enumerate(events):
        line = Text(f"  {_clock(event.time)} ", style="dim")
        where = event.host or ""
        if event.trial_id:
            where = f"{where} {event.trial_id}".strip()
        if where:
            line.append(f"{where} ", style="bold")
        line.append(event.message, style=LEVEL_STYLE.get(event.level, ""))
        line.no_wrap = True
        line.overflow = "ellipsis"
        lines.append(line)
        if event.trial_id is not None and last_for_trial.get(event.trial_id) == i:
            for tail in tail_lines(by_id[event.trial_id].stderr_tail, STDERR_LINES):
                err = Text(f"      | {tail}", style="red dim", no_wrap=True, overflow="ellipsis")
                lines.append(err)
    return Group(*lines)


def waiting_line(snap: Snapshot) -> RenderableType | None:
    if not snap.waiting_reason:
        return None
    waiting = snap.count(TrialStatus.WAITING)
    noun = "trial" if waiting == 1 else "trials"
    return Text(f"Waiting: {waiting} {noun} not placed: {snap.waiting_reason}", style="yellow")
