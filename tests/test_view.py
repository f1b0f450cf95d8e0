"""The rich view: rendered into fixed-width capture consoles, asserted on as text."""

from __future__ import annotations

import io
import math
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from remotetune.errors import ExperimentNotFound, StoreError
from remotetune.model import (
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    GpuInfo,
    HostState,
    MetricKind,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import Store
from remotetune.view import (
    DEFAULT_MAX_TRIALS,
    LiveView,
    Snapshot,
    derive_waiting_reason,
    render,
    render_trial,
    sparkline,
    watch,
)

NOW = 1_700_000_000.0
EXP = "ab12cd34"
STDERR = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 3, in <module>\n'
    "    model.cuda()\n"
    "RuntimeError: CUDA out of memory\n"
)


def experiment(**changes: Any) -> ExperimentRecord:
    fields: dict[str, Any] = dict(
        id=EXP,
        name="mnist-lr",
        status=ExperimentStatus.RUNNING,
        config={},
        tuner="TPE",
        optimize_mode=OptimizeMode.MAXIMIZE,
        max_trial_number=100,
        max_experiment_duration=7200.0,
        trial_concurrency=4,
        created_at=NOW - 3700,
        started_at=NOW - 3600,
        machines=({"name": "gpu1"}, {"name": "gpu2"}),
    )
    fields.update(changes)
    return ExperimentRecord(**fields)


def trial(seq: int, status: TrialStatus = TrialStatus.SUCCEEDED, **changes: Any) -> TrialRecord:
    fields: dict[str, Any] = dict(
        id=f"t{seq:04d}",
        experiment_id=EXP,
        sequence=seq,
        parameters={"lr": 0.001 * (seq + 1), "batch": 64, "opt": {"_name": "sgd", "mom": 0.9}},
        status=status,
        created_at=NOW - 1000,
    )
    fields.update(changes)
    return TrialRecord(**fields)


def gpu_host(name: str, holders: dict[int, tuple[str, ...]], **changes: Any) -> HostState:
    fields: dict[str, Any] = dict(
        experiment_id=EXP,
        host=name,
        reachable=True,
        gpus=(
            GpuInfo(0, "A100", 81920.0, 40960.0, 97.0),
            GpuInfo(1, "A100", 81920.0, 0.0, 0.0),
        ),
        gpu_holders=holders,
        updated_at=NOW,
    )
    fields.update(changes)
    return HostState(**fields)


def snapshot(
    trials: tuple[TrialRecord, ...] = (),
    hosts: tuple[HostState, ...] = (),
    events: tuple[EventRecord, ...] = (),
    **changes: Any,
) -> Snapshot:
    exp = changes.pop("exp", None) or experiment()
    return Snapshot(exp, trials, hosts, events, now=NOW, **changes)


def text_of(renderable: RenderableType, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in out.splitlines()), out
    return out


def line_with(out: str, *needles: str) -> str:
    """The one line holding every needle (fails when none does)."""
    hits = [line for line in out.splitlines() if all(n in line for n in needles)]
    assert hits, f"no line with {needles!r} in:\n{out}"
    return hits[0]


def running_across_hosts() -> Snapshot:
    trials = (
        trial(
            1,
            TrialStatus.RUNNING,
            host="gpu1",
            gpus=(0,),
            started_at=NOW - 100,
            latest_intermediate=0.8,
            best_intermediate=0.85,
            intermediate_count=3,
        ),
        trial(2, TrialStatus.RUNNING, host="gpu2", gpus=(1,), started_at=NOW - 50),
        trial(
            3,
            TrialStatus.SUCCEEDED,
            host="gpu1",
            gpus=(0,),
            started_at=NOW - 900,
            ended_at=NOW - 300,
            final=0.91,
            best_intermediate=0.93,
        ),
        trial(
            4,
            TrialStatus.SUCCEEDED,
            host="gpu2",
            gpus=(0,),
            started_at=NOW - 900,
            ended_at=NOW - 300,
            final=0.95,
        ),
        trial(5, TrialStatus.WAITING),
    )
    hosts = (
        gpu_host("gpu1", {0: ("t0001",)}),
        # the holder of gpu2's GPU 1 comes from the running trial's placement alone
        gpu_host("gpu2", {}),
    )
    return snapshot(trials, hosts)


# --- the situations issue 5 lists --------------------------------------------------------------


@pytest.mark.parametrize("width", [120, 80])
def test_no_trials_yet(width: int) -> None:
    out = text_of(render(snapshot()), width)
    assert "mnist-lr" in out and EXP in out and "TPE" in out and "maximize" in out
    assert "RUNNING" in out
    assert "0/100 trials" in out
    assert "elapsed 1h00m / 2h00m" in out
    assert "no trials yet" in out
    assert "no metric reported yet" in out
    assert "none yet" in out  # events
    line_with(out, "gpu1", "not contacted yet")


@pytest.mark.parametrize("width", [120, 80])
def test_running_trials_across_hosts(width: int) -> None:
    out = text_of(render(running_across_hosts()), width)
    assert "Trials (5)" in out
    # host:GPU per trial
    line_with(out, "t0001", "gpu1:0", "RUNNING")
    line_with(out, "t0002", "gpu2:1", "RUNNING")
    # the hosts panel shows who holds each GPU, with utilisation and memory
    line_with(out, "gpu1", "97%", "40.0/80.0 GiB", "t0001")
    line_with(out, "0%", "0.0/80.0 GiB", "free")
    gpu2_rows = out.split("\ngpu2 ", 1)[1].splitlines()[:2]
    assert "t0002" in gpu2_rows[1] and "free" in gpu2_rows[0], out
    assert "2 running" in out and "1 waiting" in out
    # running first, then best final first (maximize), then the rest
    order = [t for t in ("t0001", "t0002", "t0004", "t0003", "t0005") if t in out]
    positions = [out.index(f"\n{t} ") for t in order]
    assert positions == sorted(positions), out
    # the best trial with its full parameters
    best = out[out.index("Best ") :]
    assert "t0004" in best.splitlines()[0] and "0.95" in best.splitlines()[0]
    assert "lr=0.005" in best and "opt=sgd" in best and "opt.mom=0.9" in best


def test_trials_table_columns_at_120() -> None:
    out = text_of(render(running_across_hosts()), 120)
    row = line_with(out, "t0001", "RUNNING")
    for cell in ("lr=0.002", "batch=64", "opt=sgd", "opt.mom=0.9", "0.8", "0.85", "1m40s"):
        assert cell in row, row
    line_with(out, "t0004", "0.95", "10m00s")


def test_parameters_are_truncated_to_fit_80_columns() -> None:
    long = {f"param_{i}": i * 1.5 for i in range(30)}
    snap = snapshot(
        (
            trial(
                1, TrialStatus.RUNNING, parameters=long, host="gpu1", gpus=(0,), started_at=NOW - 5
            ),
        )
    )
    out = text_of(render(snap), 80)
    row = line_with(out, "t0001", "gpu1:0", "RUNNING")
    assert "…" in row and "param_0=0" in row


def test_unreachable_host() -> None:
    hosts = (
        gpu_host("gpu1", {}),
        HostState(EXP, "gpu2", reachable=False, message="connection refused (port 22)"),
    )
    events = (
        EventRecord(
            EXP, NOW - 5, "host", "host unreachable, retrying", host="gpu2", level="warning"
        ),
    )
    for width in (120, 80):
        out = text_of(render(snapshot(hosts=hosts, events=events)), width)
        line_with(out, "gpu2", "unreachable: connection refused (port 22)")
        line_with(out, "gpu2", "host unreachable, retrying")
        assert "not contacted yet" not in out


def test_unreachable_host_is_red() -> None:
    hosts = (HostState(EXP, "gpu2", reachable=False, message="timed out"),)
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="standard")
    console.print(render(snapshot(hosts=hosts)))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[1;31mgpu2" in out  # bold red host name
    assert "\x1b[31munreachable: timed out" in out


def test_cpu_only_host_shows_slots() -> None:
    trials = (trial(1, TrialStatus.RUNNING, host="cpu1", started_at=NOW - 5),)
    hosts = (HostState(EXP, "cpu1", reachable=True, slots=4, running=1),)
    out = text_of(render(snapshot(trials, hosts)))
    line_with(out, "cpu1", "slots 1/4", "t0001")
    line_with(out, "t0001", "cpu1", "RUNNING")


@pytest.mark.parametrize("width", [120, 80])
def test_failed_trial_shows_stderr_tail(width: int) -> None:
    failed = trial(
        7,
        TrialStatus.FAILED,
        host="gpu1",
        gpus=(1,),
        started_at=NOW - 60,
        ended_at=NOW - 30,
        exit_code=1,
        message="exited with code 1",
        stderr_tail=STDERR,
    )
    events = (
        EventRecord(EXP, NOW - 61, "trial", "started", trial_id="t0007", host="gpu1"),
        EventRecord(
            EXP,
            NOW - 30,
            "trial",
            "failed: exited with code 1",
            trial_id="t0007",
            host="gpu1",
            level="error",
        ),
        EventRecord(EXP, NOW - 29, "experiment", "suggesting the next trial"),
    )
    out = text_of(render(snapshot((failed,), events=events)), width)
    line_with(out, "t0007", "gpu1:1", "FAILED")
    line_with(out, "t0007", "failed: exited with code 1")
    assert "1 failed" in out
    # the last 3 lines of stderr, right under the failure event and only once
    assert "Traceback" not in out
    tail = out[out.index("failed: exited with code 1") :].splitlines()[1:4]
    assert 'File "train.py", line 3' in tail[0]
    assert "model.cuda()" in tail[1]
    assert "RuntimeError: CUDA out of memory" in tail[2]
    assert out.count("RuntimeError: CUDA out of memory") == 1


def test_events_show_only_the_last_eight() -> None:
    events = tuple(
        EventRecord(EXP, NOW - 100 + i, "trial", f"event number {i:02d}") for i in range(20)
    )
    out = text_of(render(snapshot(events=events)))
    assert "event number 11" not in out
    assert all(f"event number {i:02d}" in out for i in range(12, 20))


def test_waiting_reason() -> None:
    snap = snapshot(
        (trial(1, TrialStatus.WAITING), trial(2, TrialStatus.WAITING)),
        waiting_reason="every GPU on gpu1, gpu2 is busy",
    )
    out = text_of(render(snap))
    assert "Waiting: 2 trials not placed: every GPU on gpu1, gpu2 is busy" in out
    assert "Waiting:" not in text_of(render(snapshot((trial(1, TrialStatus.WAITING),))))


def test_derive_waiting_reason() -> None:
    waiting = (trial(1, TrialStatus.WAITING),)
    exp = experiment()
    assert derive_waiting_reason(exp, (), ()) is None
    assert derive_waiting_reason(exp, waiting, ()) == "no host has been reached yet"
    down = HostState(EXP, "gpu1", reachable=False)
    assert derive_waiting_reason(exp, waiting, (down,)) == "every host is unreachable"
    full = HostState(EXP, "cpu1", reachable=True, slots=2, running=2)
    assert derive_waiting_reason(exp, waiting, (full,)) == (
        "all 2 slots on reachable hosts are busy"
    )
    busy = tuple(trial(i, TrialStatus.RUNNING) for i in range(2, 6)) + waiting
    assert "trialConcurrency reached (4/4" in str(derive_waiting_reason(exp, busy, (full,)))
    done = experiment(status=ExperimentStatus.DONE)
    assert derive_waiting_reason(done, waiting, ()) is None


def test_eta_from_mean_duration_and_concurrency() -> None:
    finished = tuple(
        trial(i, started_at=NOW - 200, ended_at=NOW - 140, final=0.5) for i in range(10)
    )
    running = tuple(trial(i, TrialStatus.RUNNING, started_at=NOW - 10) for i in range(10, 12))
    exp = experiment(max_trial_number=20, max_experiment_duration=None)
    snap = snapshot(finished + running, exp=exp)
    # 10 left, 60 s each, 2 at a time
    assert snap.eta() == pytest.approx(300.0)
    assert "ETA 5m00s" in text_of(render(snap))
    # capped by what is left of the time budget (7200 - 3600 - 3500)
    capped = snapshot(
        finished + running, exp=experiment(max_trial_number=20, max_experiment_duration=3700.0)
    )
    assert capped.eta() == pytest.approx(100.0)


def test_minimize_orders_lowest_final_first() -> None:
    trials = (
        trial(1, final=0.3),
        trial(2, final=0.1),
        trial(3, final=0.2),
        trial(4, TrialStatus.FAILED),
    )
    snap = snapshot(trials, exp=experiment(optimize_mode=OptimizeMode.MINIMIZE))
    assert [t.id for t in snap.ordered_trials()] == ["t0002", "t0003", "t0001", "t0004"]
    out = text_of(render(snap))
    assert "t0002" in line_with(out, "Best ")


def test_finished_experiment_header() -> None:
    exp = experiment(status=ExperimentStatus.DONE, ended_at=NOW - 600, max_trial_number=2)
    snap = snapshot(
        (trial(1, final=1.0, started_at=NOW - 900, ended_at=NOW - 700), trial(2, final=2.0)),
        exp=exp,
    )
    out = text_of(render(snap))
    assert "DONE" in out and "2/2 trials" in out and "ETA" not in out
    assert "elapsed 50m00s / 2h00m" in out  # up to the end, not to now


def test_500_trials_fit_and_render_fast() -> None:
    trials = tuple(
        trial(
            i,
            TrialStatus.RUNNING if i % 50 == 0 else TrialStatus.SUCCEEDED,
            host=f"gpu{i % 4}",
            gpus=(i % 2,),
            started_at=NOW - 900,
            ended_at=None if i % 50 == 0 else NOW - 100,
            final=None if i % 50 == 0 else math.sin(i),
            best_intermediate=0.5,
            latest_intermediate=0.4,
            intermediate_count=10,
        )
        for i in range(500)
    )
    hosts = tuple(gpu_host(f"gpu{h}", {0: ("t0000",)}) for h in range(4))
    events = tuple(EventRecord(EXP, NOW - i, "trial", f"trial t{i:04d} ended") for i in range(50))
    snap = snapshot(trials, hosts, events)

    def once(width: int) -> tuple[float, str]:
        console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
        start = time.perf_counter()
        console.print(render(snap))
        elapsed = time.perf_counter() - start
        return elapsed, console.file.getvalue()  # type: ignore[attr-defined]

    for width in (120, 80):
        once(width)  # warm up imports and caches
        timings = [once(width)[0] for _ in range(5)]
        assert statistics.median(timings) < 0.050, timings
        out = once(width)[1]
        assert f"... and {500 - DEFAULT_MAX_TRIALS} more" in out
        assert "Trials (500)" in out
        # the 10 running trials first, then the best finals
        rows = [line.split()[0] for line in out.splitlines() if line.startswith("t0")]
        assert len(rows) == DEFAULT_MAX_TRIALS
        assert rows[:10] == [f"t{i:04d}" for i in range(0, 500, 50)]
        best = max((t for t in trials if t.final is not None), key=lambda t: t.final or 0.0)
        assert rows[10] == best.id


def test_max_trials_caps_the_table() -> None:
    snap = snapshot(tuple(trial(i, final=float(i)) for i in range(10)))
    out = text_of(render(snap, max_trials=3))
    assert "... and 7 more" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("t0")] == [
        "t0009",
        "t0008",
        "t0007",
    ]


def test_terminal_height_is_filled_not_exceeded() -> None:
    snap = snapshot(tuple(trial(i, final=float(i)) for i in range(200)), (gpu_host("gpu1", {}),))
    for height in (30, 50):
        console = Console(
            file=io.StringIO(), width=100, height=height, force_terminal=True, color_system=None
        )
        console.print(render(snap))
        lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
        assert height - 2 <= len(lines) <= height, len(lines)
        assert any("more" in line for line in lines)


def test_width_argument_narrows_the_view() -> None:
    out = text_of(render(running_across_hosts(), width=70), 120)
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 70


# --- one trial: `remotetune show EXP TRIAL` ----------------------------------------------------


def test_render_trial() -> None:
    t = trial(
        3,
        TrialStatus.FAILED,
        host="gpu1",
        gpus=(0, 1),
        pid=4242,
        trial_dir="/w/t0003",
        started_at=NOW - 90,
        ended_at=NOW,
        exit_code=1,
        message="exited with code 1",
        final=None,
        stdout_tail="epoch 1\nepoch 2\n",
        stderr_tail=STDERR,
    )
    points = [
        MetricPoint("t0003", i, MetricKind.INTERMEDIATE, v, v, NOW - 90 + i)
        for i, v in enumerate([0.1, 0.2, 0.4, 0.3, 0.8])
    ]
    points.append(MetricPoint("t0003", 5, MetricKind.FINAL, 0.75, {"default": 0.75}, NOW))
    out = text_of(render_trial(experiment(), t, points), 100)
    assert "Trial t0003" in out and EXP in out
    line_with(out, "status", "FAILED")
    line_with(out, "host", "gpu1:0,1", "GPUs: 0,1")
    line_with(out, "pid", "4242")
    line_with(out, "duration", "1m30s")
    line_with(out, "exit code", "1")
    line_with(out, "opt.mom", "0.9")
    line_with(out, "lr", "0.004")
    line_with(out, "curve", sparkline([0.1, 0.2, 0.4, 0.3, 0.8]))
    line_with(out, "5 reports", "latest 0.8", "best 0.8")
    line_with(out, "final", "0.75")
    assert "epoch 2" in out
    assert "Traceback" in out and "CUDA out of memory" in out


def test_render_trial_without_metrics_or_logs() -> None:
    t = trial(1, TrialStatus.RUNNING, started_at=NOW - 30, parameters={})
    out = text_of(render_trial(experiment(), t, [], now=NOW), 80)
    line_with(out, "duration", "30s")
    assert "none reported" in out and "stdout: empty" in out and "Parameters: none" in out


# --- sparkline ---------------------------------------------------------------------------------


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([8, 1]) == "█▁"
    assert sparkline([3.0, 3.0, 3.0]) == "▄▄▄"
    assert sparkline([1.0, math.nan, 2.0]) == "▁ █"
    assert sparkline([math.inf]) == " "
    long = sparkline([float(i) for i in range(1000)], width=40)
    assert len(long) == 40 and long[0] == "▁" and long[-1] == "█"
    assert list(long) == sorted(long)
    assert len(sparkline([1.0] * 5, width=10)) == 5
    with pytest.raises(ValueError):
        sparkline([1.0], width=0)


# --- live: attached to a real store, and driven by the controller ------------------------------


def fill_store(path: Path, status: ExperimentStatus) -> Store:
    store = Store(path)
    store.save_experiment(experiment(status=status, ended_at=NOW if status.is_finished() else None))
    for t in running_across_hosts().trials:
        store.save_trial(t)
    store.save_host_state(gpu_host("gpu1", {0: ("t0001",)}))
    store.save_host_state(HostState(EXP, "gpu2", reachable=False, message="no route to host"))
    store.add_event(EventRecord(EXP, NOW - 10, "trial", "trial t0001 started", trial_id="t0001"))
    return store


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_snapshot_from_a_real_store(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "remotetune.db", ExperimentStatus.RUNNING)
    with store:
        snap = Snapshot.from_store(store, EXP[:4], now=NOW)  # an id prefix works too
    assert snap.experiment.id == EXP and snap.now == NOW
    assert [t.id for t in snap.trials] == ["t0001", "t0002", "t0003", "t0004", "t0005"]
    assert snap.waiting_reason == "trialConcurrency reached (2/4 running)" or (
        snap.waiting_reason is None
    )
    out = text_of(render(snap))
    line_with(out, "gpu1", "t0001")
    line_with(out, "gpu2", "unreachable: no route to host")
    line_with(out, "trial t0001 started")
    with Store(tmp_path / "remotetune.db") as again, pytest.raises(ExperimentNotFound):
        Snapshot.from_store(again, "zzzz")


def test_watch_a_finished_experiment_returns_after_one_refresh(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    fill_store(path, ExperimentStatus.DONE).close()
    before = dump(path)
    console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
    slept: list[float] = []
    watch(path, EXP, console=console, sleep=slept.append)
    assert slept == []
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.count("mnist-lr") == 1 and "DONE" in out
    assert out.endswith("trial t0001 started\n")
    line_with(out, "t0001", "gpu1:0")
    assert dump(path) == before  # attaching and detaching wrote nothing


def test_watch_a_running_experiment_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    writer = fill_store(path, ExperimentStatus.RUNNING)
    console = Console(
        file=io.StringIO(), width=100, height=60, force_terminal=True, color_system=None
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        # the controller moves on between two refreshes
        writer.save_trial(trial(9, TrialStatus.RUNNING, host="gpu1", gpus=(1,), started_at=NOW))

    calls = iter([False, False, True])
    watch(path, EXP, console=console, refresh_per_second=4.0, stop=lambda: next(calls), sleep=sleep)
    writer.close()
    assert slept == [0.25, 0.25]
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "t0009" in out  # a later refresh saw the new trial


def test_watch_returns_on_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    fill_store(path, ExperimentStatus.RUNNING).close()
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    watch(path, EXP, console=console, sleep=interrupt)
    assert "mnist-lr" in console.file.getvalue()  # type: ignore[attr-defined]


def test_watch_errors_before_drawing(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=100)
    with pytest.raises(StoreError, match="no store at"):
        watch(tmp_path / "missing.db", EXP, console=console)
    assert not (tmp_path / "missing.db").exists()
    fill_store(tmp_path / "remotetune.db", ExperimentStatus.DONE).close()
    with pytest.raises(ExperimentNotFound):
        watch(tmp_path / "remotetune.db", "nope", console=console)
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_live_view_pulls_snapshots_in_its_own_thread() -> None:
    snaps = [running_across_hosts()]
    callers: set[int] = set()
    lock = threading.Lock()

    def get_snapshot() -> Snapshot:
        with lock:
            callers.add(threading.get_ident())
            return snaps[-1]

    console = Console(
        file=io.StringIO(), width=120, height=60, force_terminal=True, color_system=None
    )
    with LiveView(get_snapshot, console=console, refresh_per_second=50.0) as view:
        deadline = time.monotonic() + 5.0
        while not callers - {threading.get_ident()} and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            snaps.append(
                snapshot((trial(42, TrialStatus.RUNNING, host="gpu1", gpus=(0,), started_at=NOW),))
            )
    assert callers - {threading.get_ident()}, "rich's refresh thread never pulled a snapshot"
    assert view.failures == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "t0001" in out
    assert "t0042" in out  # the last frame, drawn on exit, shows the latest snapshot


def test_live_view_survives_a_failing_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("controller state torn")

    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    with LiveView(broken, console=console, refresh_per_second=50.0) as view:
        view.refresh()
    assert isinstance(view.last_error, RuntimeError)
    assert "live view unavailable" in console.file.getvalue()  # type: ignore[attr-defined]
    assert "controller state torn" in caplog.text


def test_live_view_can_pause_for_a_prompt_and_resume() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    view = LiveView(running_across_hosts, console=console, refresh_per_second=50.0)
    with view:
        pass
    view.__exit__(None, None, None)  # closing twice is harmless
    console.print("Interrupted. [k]ill, [l]eave or [c]ontinue?")
    with view:
        view.refresh()
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Interrupted." in out
    assert out.rindex("t0001") > out.index("Interrupted.")  # drawn again after the prompt
    assert view.failures == 0
