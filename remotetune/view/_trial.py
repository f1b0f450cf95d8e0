"""One trial in detail, for ``remotetune show EXP TRIAL``."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from remotetune.model import (
    ExperimentRecord,
    MetricKind,
    MetricPoint,
    TrialRecord,
    TrialStatus,
)
from remotetune.view._format import (
    STATUS_STYLE,
    fmt_duration,
    fmt_metric,
    full_params,
    placement,
    tail_lines,
    trial_duration,
)
from remotetune.view._safe import clean_record
from remotetune.view._sparkline import sparkline

LOG_LINES = 20
SPARK_WIDTH = 60


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _facts(trial: TrialRecord, now: float) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("status", Text(trial.status.value, style=STATUS_STYLE.get(trial.status, "")))
    if trial.message:
        grid.add_row("message", Text(trial.message))
    gpus = ",".join(str(g) for g in trial.gpus) if trial.gpus else "none"
    grid.add_row("host", Text(f"{placement(trial)}  (GPUs: {gpus})"))
    if trial.pid is not None:
        grid.add_row("pid", str(trial.pid))
    if trial.trial_dir:
        grid.add_row("directory", Text(trial.trial_dir))
    grid.add_row("started", _when(trial.started_at))
    grid.add_row("ended", _when(trial.ended_at))
    grid.add_row("duration", fmt_duration(trial_duration(trial, now)))
    if trial.exit_code is not None:
        grid.add_row("exit code", str(trial.exit_code))
    if trial.attempt > 1 or trial.retry_of:
        grid.add_row("attempt", Text(f"{trial.attempt} (repeats {trial.retry_of or '?'})"))
    grid.add_row("parameter id", str(trial.parameter_id))
    return grid


def _params(trial: TrialRecord) -> RenderableType:
    table = Table(
        title="Parameters",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in full_params(trial.parameters):
        table.add_row(Text(key), Text(value))
    if not table.row_count:
        return Text("Parameters: none", style="dim")
    return table


def _metrics(
    experiment: ExperimentRecord, trial: TrialRecord, metrics: Sequence[MetricPoint]
) -> RenderableType:
    points = sorted(metrics, key=lambda m: m.seq)
    curve = [m.value for m in points if m.kind is MetricKind.INTERMEDIATE]
    finals = [m.value for m in points if m.kind is MetricKind.FINAL]
    final = finals[-1] if finals else trial.final
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    mode = experiment.optimize_mode
    if curve:
        best = curve[0]
        for value in curve[1:]:
            if mode.better(value, best):
                best = value
        grid.add_row("curve", Text(sparkline(curve, SPARK_WIDTH), style="cyan"))
        grid.add_row(
            "intermediate",
            f"{len(curve)} reports, first {fmt_metric(curve[0])}, latest {fmt_metric(curve[-1])}, "
            f"best {fmt_metric(best)} ({mode.value})",
        )
        if trial.status is TrialStatus.EARLY_STOPPED:  # the curve ends where it was stopped
            grid.add_row("stopped", Text(f"after step {len(curve)}: {trial.message or ''}",
                                         style=STATUS_STYLE[TrialStatus.EARLY_STOPPED]))
    else:
        grid.add_row("intermediate", Text("none reported", style="dim"))
    grid.add_row("final", Text(fmt_metric(final), style="bold" if final is not None else "dim"))
    return Group(Text("Metrics", style="bold"), grid)


def _log(title: str, text: str | None, style: str) -> RenderableType:
    lines = tail_lines(text, LOG_LINES)
    if not lines:
        return Text(f"{title}: empty", style="dim")
    body = Text("\n".join(lines), style=style, no_wrap=True, overflow="ellipsis")
    return Panel(
        body, title=Text(f"{title} (last {len(lines)} lines)"), title_align="left",
        box=box.ROUNDED, expand=False,
    )


def render_trial(
    experiment: ExperimentRecord,
    trial: TrialRecord,
    metrics: Sequence[MetricPoint],
    *,
    now: float | None = None,
) -> RenderableType:
    """Parameters, metric curve (a sparkline), host and GPUs, and log tails of one trial.

    ``now`` (default: the clock) is used for a running trial's duration.
    """
    experiment, trial = clean_record(experiment), clean_record(trial)
    title = Text.assemble(
        ("Trial ", "bold"),
        (trial.id, "bold"),
        (f"  #{trial.sequence} of {experiment.name or experiment.id} ({experiment.id})", "dim"),
    )
    return Group(
        title,
        _facts(trial, time.time() if now is None else now),
        Text(""),
        _params(trial),
        Text(""),
        _metrics(experiment, trial, metrics),
        Text(""),
        _log("stdout", trial.stdout_tail, ""),
        _log("stderr", trial.stderr_tail, "red"),
    )
