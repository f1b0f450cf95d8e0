"""The report's plotly figures, built from :class:`ReportData` (pure; no I/O).

Each function returns a ``plotly.graph_objects.Figure``. Large experiments stay light:
curves are drawn as one trace per status (NaN-separated), switched to WebGL (``scattergl``)
past ``GL_THRESHOLD`` points, and every curve is downsampled when it is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import plotly.graph_objects as go

from remotetune.model import OptimizeMode, TrialRecord, TrialStatus
from remotetune.report._data import Curve, ReportData, flatten_parameters, is_number
from remotetune.report._importance import Importance

GL_THRESHOLD = 20_000  # points in one figure past which scattergl is used
MAX_PARCOORDS_DIMS = 24

STATUS_COLORS = {
    TrialStatus.SUCCEEDED: "#2a9d8f",
    TrialStatus.EARLY_STOPPED: "#e76f51",
    TrialStatus.FAILED: "#d62828",
    TrialStatus.RUNNING: "#457b9d",
    TrialStatus.WAITING: "#adb5bd",
    TrialStatus.USER_CANCELED: "#8d99ae",
    TrialStatus.SYS_CANCELED: "#8d99ae",
    TrialStatus.LOST: "#6c757d",
}


def _layout(title: str, **kw: Any) -> dict[str, Any]:
    """The page's section headings name each figure, so ``title`` is only its meta label."""
    base: dict[str, Any] = {
        "meta": {"title": title},
        "template": "plotly_white",
        "uirevision": "keep",  # the live page keeps the user's zoom across refreshes
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "height": 420,
    }
    base.update(kw)
    return base


def _empty(title: str, note: str) -> go.Figure:
    return go.Figure(layout=_layout(title, annotations=[{
        "text": note, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
    }], xaxis={"visible": False}, yaxis={"visible": False}))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def history(data: ReportData) -> go.Figure:
    """Each trial's final by sequence, and the best final so far."""
    title = "Optimization history"
    finals = [t for t in data.trials if t.final is not None and math.isfinite(t.final)]
    if not finals:
        return _empty(title, "no trial has a final metric yet")
    mode = data.experiment.optimize_mode
    best: list[float] = []
    for t in finals:
        value = float(t.final)  # type: ignore[arg-type]
        best.append(value if not best or mode.better(value, best[-1]) else best[-1])
    scatter = go.Scattergl if len(finals) > GL_THRESHOLD // 10 else go.Scatter
    fig = go.Figure(layout=_layout(title, xaxis={"title": {"text": "trial sequence"}},
                                   yaxis={"title": {"text": "final"}}, hovermode="closest"))
    fig.add_trace(scatter(
        x=[t.sequence for t in finals], y=[t.final for t in finals], mode="markers",
        name="final", text=[t.id for t in finals],
        marker={"color": [STATUS_COLORS[t.status] for t in finals], "size": 7},
        hovertemplate="trial %{text}<br>sequence %{x}<br>final %{y}<extra></extra>",
    ))
    fig.add_trace(scatter(
        x=[t.sequence for t in finals], y=best, mode="lines", name="best so far",
        line={"shape": "hv", "color": "#264653", "width": 2},
    ))
    return fig


def curves(data: ReportData) -> go.Figure:
    """Every trial's intermediate results; early-stopped ones dashed and marked at their end."""
    title = "Intermediate results"
    shown = [t for t in data.trials if t.id in data.curves]
    if not shown:
        return _empty(title, "no intermediate results yet")
    total = sum(len(data.curves[t.id].values) for t in shown)
    scatter = go.Scattergl if total > GL_THRESHOLD else go.Scatter
    fig = go.Figure(layout=_layout(title, xaxis={"title": {"text": "step"}},
                                   yaxis={"title": {"text": "intermediate"}},
                                   hovermode="closest"))
    for status in TrialStatus:
        group = [t for t in shown if t.status is status]
        if not group:
            continue
        xs, ys, seqs = _joined([data.curves[t.id] for t in group], [t.sequence for t in group])
        stopped = status is TrialStatus.EARLY_STOPPED
        fig.add_trace(scatter(
            x=xs, y=ys, customdata=seqs, mode="lines",
            name=f"{status.value.lower()} ({len(group)})",
            line={"color": STATUS_COLORS[status], "width": 1, "dash": "dash" if stopped else
                  "solid"},
            opacity=0.8, connectgaps=False,
            hovertemplate="trial #%{customdata}<br>step %{x}<br>%{y}<extra></extra>",
        ))
        if stopped:
            ends = [data.curves[t.id] for t in group]
            fig.add_trace(scatter(
                x=[c.steps[-1] for c in ends], y=[c.values[-1] for c in ends],
                text=[t.id for t in group], mode="markers", name="early stopped here",
                marker={"symbol": "x", "size": 9, "color": STATUS_COLORS[status]},
                hovertemplate="trial %{text} early stopped<br>step %{x}<br>%{y}<extra></extra>",
            ))
    return fig


def _joined(
    group: Sequence[Curve], sequences: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curves end to end, each followed by a NaN gap, as numpy arrays.

    numpy arrays keep plotly fast on 100,000 points: it neither checks nor copies them
    element by element, and writes them to JSON as typed arrays (base64).
    """
    size = sum(len(c.values) + 1 for c in group)
    xs = np.full(size, np.nan)
    ys = np.full(size, np.nan)
    seqs = np.full(size, -1, dtype=np.int32)
    at = 0
    for c, seq in zip(group, sequences, strict=True):
        n = len(c.values)
        xs[at:at + n] = c.steps
        ys[at:at + n] = c.values
        seqs[at:at + n] = seq
        at += n + 1
    return xs, ys, seqs


def parallel(data: ReportData) -> go.Figure:
    """Parallel coordinates of the (flattened) parameters against the final."""
    title = "Parameters against the final"
    finals = [t for t in data.trials if t.final is not None and math.isfinite(t.final)]
    if not finals:
        return _empty(title, "no trial has a final metric yet")
    flat = [flatten_parameters(t.parameters) for t in finals]
    keys = sorted({k for params in flat for k in params})[:MAX_PARCOORDS_DIMS]
    dims = [_dimension(k, [p.get(k) for p in flat]) for k in keys]
    finals_values = [float(t.final) for t in finals]  # type: ignore[arg-type]
    dims.append({"label": "final", "values": finals_values})
    reverse = data.experiment.optimize_mode is OptimizeMode.MINIMIZE
    fig = go.Figure(layout=_layout(title, margin={"l": 80, "r": 80, "t": 80, "b": 40}))
    fig.add_trace(go.Parcoords(
        dimensions=dims,
        line={"color": finals_values, "colorscale": "Viridis", "reversescale": reverse,
              "showscale": True, "colorbar": {"title": {"text": "final"}}},
    ))
    return fig


def _dimension(label: str, values: Sequence[Any]) -> dict[str, Any]:
    """A numeric axis (log10 when the values span 2+ decades), else a categorical one.

    Trials without the parameter (another branch of a nested choice) sit on a "(none)"
    tick just below a numeric axis's range.
    """
    present = [v for v in values if v is not None]
    if present and all(is_number(v) and math.isfinite(v) for v in present):
        present = [float(v) for v in present]
        log = min(present) > 0 and max(present) / min(present) >= 100
        nums = [math.log10(v) for v in present] if log else present
        low, high = min(nums), max(nums)
        none = low - 0.1 * ((high - low) or 1.0)
        it = iter(nums)
        out: dict[str, Any] = {
            "label": f"log10({label})" if log else label,
            "values": [none if v is None else next(it) for v in values],
        }
        if len(present) < len(values):
            ticks = [low + i * (high - low) / 4 for i in range(5)] if high > low else [low]
            out["tickvals"] = [none, *ticks]
            out["ticktext"] = ["(none)", *(f"{t:.3g}" for t in ticks)]
            out["range"] = [none, high]
        return out
    cats = sorted({"(none)" if v is None else str(v) for v in values})
    index = {c: i for i, c in enumerate(cats)}
    return {
        "label": label,
        "values": [index["(none)" if v is None else str(v)] for v in values],
        "tickvals": list(range(len(cats))),
        "ticktext": [c if len(c) <= 24 else c[:23] + "…" for c in cats],
    }


def importance(imp: Importance) -> go.Figure:
    title = "Parameter importance (optuna, PED-ANOVA)"
    if not imp.values:
        return _empty(title, f"parameter importance {imp.note or 'is not available'}")
    names = [k for k, _ in reversed(imp.values)]
    fig = go.Figure(layout=_layout(title, xaxis={"title": {"text": "importance"}},
                                   height=max(260, 60 + 28 * len(names))))
    fig.add_trace(go.Bar(x=[v for _, v in reversed(imp.values)], y=names, orientation="h",
                         marker={"color": "#457b9d"},
                         hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_yaxes(type="category", automargin=True)
    return fig


def gpu_lane(t: TrialRecord) -> list[str]:
    """The timeline rows a trial occupies: one per GPU (``host:gpu``), or ``host`` alone."""
    host = t.host or "?"
    return [f"{host}:{g}" for g in t.gpus] if t.gpus else [host]


def timeline(data: ReportData) -> go.Figure:
    """Which trial ran on which host:GPU and when: gaps in a row are idle time."""
    title = "Trials per host:GPU over time"
    ran = [t for t in data.trials if t.started_at is not None and t.host]
    if not ran:
        return _empty(title, "no trial has started yet")
    now = data.generated_at
    lanes = sorted({lane for t in ran for lane in gpu_lane(t)} | idle_lanes(data))
    fig = go.Figure(layout=_layout(
        title, barmode="overlay", height=max(260, 90 + 26 * len(lanes)),
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": lanes[::-1],
               "automargin": True},
    ))
    for status in TrialStatus:
        group = [(t, lane) for t in ran if t.status is status for lane in gpu_lane(t)]
        if not group:
            continue
        fig.add_trace(go.Bar(
            base=[_iso(t.started_at) for t, _ in group],  # type: ignore[arg-type]
            x=[1000.0 * max(0.0, (t.ended_at or now) - t.started_at)  # type: ignore[operator]
               for t, _ in group],
            y=[lane for _, lane in group], orientation="h", name=status.value.lower(),
            text=[t.id for t, _ in group], textposition="none",
            marker={"color": STATUS_COLORS[status], "line": {"width": 0.5, "color": "#fff"}},
            hovertemplate="trial %{text} on %{y}<br>from %{base}<extra></extra>",
        ))
    start = min(t.started_at or now for t in ran)
    fig.add_trace(go.Scatter(  # every lane gets a row, even one that never ran a trial
        x=[_iso(start)] * len(lanes), y=lanes, mode="markers", marker={"opacity": 0},
        showlegend=False, hoverinfo="skip",
    ))
    return fig


def idle_lanes(data: ReportData) -> set[str]:
    """Rows for GPUs the hosts reported that no trial used, when trials are put on GPUs."""
    used_gpus = {t.host for t in data.trials if t.gpus}
    ran_on = {t.host for t in data.trials if t.host}
    lanes: set[str] = set()
    for h in data.hosts:
        if h.host in used_gpus or (h.host not in ran_on and h.gpus):
            lanes.update(f"{h.host}:{g.index}" for g in h.gpus)
        elif h.host not in ran_on:
            lanes.add(h.host)
    return lanes


def all_figures(data: ReportData, imp: Importance) -> dict[str, go.Figure]:
    return {
        "history": history(data),
        "curves": curves(data),
        "parallel": parallel(data),
        "importance": importance(imp),
        "timeline": timeline(data),
    }
