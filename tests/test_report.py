"""The HTML report: data read from a real store, escaping, figures, importance, the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_nni_import import build_v2

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
from remotetune.nni_import import import_nni
from remotetune.report import (
    build_payload,
    load_report_data,
    parameter_importance,
    render_report,
    script_safe,
)
from remotetune.report._data import downsample, flatten_parameters
from remotetune.store import Store

EVIL = "</script><script>alert('x')</script><!--&"
T0 = 1_700_000_000.0


def embedded(page: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    assert match, "no embedded data"
    return json.loads(match.group(1))


def add_experiment(store: Store, exp_id: str = "exp00001", *, n: int = 6,
                   name: str = "demo", steps: int = 4) -> str:
    store.save_experiment(ExperimentRecord(
        id=exp_id, name=name, status=ExperimentStatus.DONE,
        config={"searchSpace": {"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}},
                "note": EVIL},
        tuner="TPE", optimize_mode=OptimizeMode.MAXIMIZE, max_trial_number=n,
        trial_concurrency=2, created_at=T0, started_at=T0, ended_at=T0 + 100,
        machines=({"name": "gpu-box", "host": "gpu-box"},),
    ))
    statuses = [TrialStatus.SUCCEEDED, TrialStatus.EARLY_STOPPED, TrialStatus.FAILED,
                TrialStatus.RUNNING]
    for i in range(n):
        tid = f"T{i:04d}"
        status = statuses[i % len(statuses)]
        final = 0.5 + 0.05 * i if status is TrialStatus.SUCCEEDED else None
        store.save_trial(TrialRecord(
            id=tid, experiment_id=exp_id, sequence=i, status=status,
            parameters={"lr": 10 ** -(1 + i % 3), "batch": [16, 32][i % 2],
                        "opt": {"_name": "sgd", "m": 0.1 * i} if i % 2 else {"_name": "adam"},
                        "tag": EVIL},
            host="gpu-box", gpus=(i % 2,), started_at=T0 + i,
            ended_at=None if status is TrialStatus.RUNNING else T0 + i + 5,
            final=final, message=EVIL if status is TrialStatus.FAILED else None,
        ))
        points = [MetricPoint(tid, k, MetricKind.INTERMEDIATE, 0.1 * k + 0.01 * i, 0.1 * k,
                              T0 + k) for k in range(steps)]
        if final is not None:
            points.append(MetricPoint(tid, steps, MetricKind.FINAL, final, final, T0 + steps))
        store.add_metrics(exp_id, tid, points, new_offset=len(points))
    store.save_host_state(HostState(
        experiment_id=exp_id, host="gpu-box", reachable=True, slots=2, running=1,
        gpus=(GpuInfo(0, "Fake A100", 40960, 100, 50), GpuInfo(1, "Fake A100", 40960)),
        gpu_holders={0: ("T0003",)}, message=EVIL, updated_at=T0 + 50,
    ))
    store.add_event(EventRecord(exp_id, T0 + 1, "trial", EVIL, trial_id="T0001"))
    return exp_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "remotetune.db") as s:
        yield s


def test_script_safe_json_cannot_close_the_script_element() -> None:
    text = json.dumps({"a": EVIL, "b": "\u2028"})
    safe = script_safe(text)
    assert "<" not in safe and ">" not in safe and "&" not in safe
    assert json.loads(safe) == {"a": EVIL, "b": "\u2028"}


def test_report_embeds_the_store_escaped_and_complete(store: Store) -> None:
    exp_id = add_experiment(store, name=EVIL)
    page = render_report(store, exp_id)
    assert page.count("<script>alert(") == 0 and "<!--&" not in page
    assert page.count("</script>") == 3  # plotly.js, the data, the page's script
    assert "&lt;/script&gt;&lt;script&gt;alert" in page  # the title, escaped
    data = embedded(page)
    trials = store.trials(exp_id)
    assert [t["id"] for t in data["trials"]] == [t.id for t in trials]
    assert [t["status"] for t in data["trials"]] == [t.status.value for t in trials]
    assert [t["final"] for t in data["trials"]] == [t.final for t in trials]
    assert data["trials"][1]["parameters"] == {"lr": 0.01, "batch": 32, "opt": "sgd",
                                               "opt/m": 0.1, "tag": EVIL}
    assert data["trials"][1]["where"] == "gpu-box:1"
    assert data["config"]["note"] == EVIL and data["experiment"]["name"] == EVIL
    assert data["hosts"][0]["gpus"][0]["trials"] == ["T0003"]
    assert data["events"][0]["message"] == EVIL
    assert set(data["figures"]) == {"history", "curves", "parallel", "importance", "timeline"}
    # plotly.js is embedded once, and nothing is fetched from the network
    assert page.count("plotly.js v") <= 2 and "cdn.plot.ly" not in page.split("<script>")[0]
    assert not re.search(r'<script[^>]+src=', page)
    assert "connect-src &#x27;none&#x27;" in page  # its CSP forbids any request


def test_curves_mark_early_stopped_trials(store: Store) -> None:
    exp_id = add_experiment(store, n=8)
    data = embedded(render_report(store, exp_id))
    traces = data["figures"]["curves"]["data"]
    names = [t["name"] for t in traces]
    assert "early stopped here" in names
    stopped = next(t for t in traces if t["name"].startswith("early_stopped"))
    assert stopped["line"]["dash"] == "dash"
    marks = next(t for t in traces if t["name"] == "early stopped here")
    assert sorted(marks["text"]) == ["T0001", "T0005"]
    timeline = data["figures"]["timeline"]["data"]
    lanes = {y for trace in timeline for y in trace["y"]}
    assert lanes == {"gpu-box:0", "gpu-box:1"}


def test_timeline_shows_gpus_that_never_ran_a_trial(store: Store) -> None:
    exp_id = add_experiment(store, n=4)
    store.save_host_state(HostState(
        experiment_id=exp_id, host="idle-box", reachable=True, slots=2,
        gpus=(GpuInfo(0, "Fake T4"), GpuInfo(1, "Fake T4")),
    ))
    store.save_host_state(HostState(experiment_id=exp_id, host="gpu-box", reachable=True,
                                    gpus=tuple(GpuInfo(i) for i in range(3))))
    data = embedded(render_report(store, exp_id))
    layout = data["figures"]["timeline"]["layout"]
    assert sorted(layout["yaxis"]["categoryarray"]) == [
        "gpu-box:0", "gpu-box:1", "gpu-box:2", "idle-box:0", "idle-box:1"]
    rows = data["figures"]["timeline"]["data"][-1]
    assert sorted(rows["y"]) == sorted(layout["yaxis"]["categoryarray"])
    history = data["figures"]["history"]["data"]
    assert history[1]["name"] == "best so far"
    assert history[1]["y"] == sorted(history[1]["y"])  # maximize: never goes down


def test_report_of_an_empty_experiment(store: Store) -> None:
    store.save_experiment(ExperimentRecord(id="empty000", name="e",
                                           status=ExperimentStatus.RUNNING, config={}))
    data = embedded(render_report(store, "empty000"))
    assert data["trials"] == [] and data["importance"]["note"]
    for fig in data["figures"].values():
        assert fig["layout"]["annotations"], "an empty figure says why"


def test_report_of_an_experiment_imported_from_nni(tmp_path: Path, store: Store) -> None:
    [exp_id] = import_nni(store, build_v2(tmp_path / "nni.sqlite"))
    data = embedded(render_report(store, exp_id))
    assert data["experiment"]["source"] == "nni"
    assert [t["id"] for t in data["trials"]] == ["AAAAA", "BBBBB", "CCCCC", "DDDDD", "EEEEE"]
    assert data["trials"][0]["final"] == 0.35 and data["trials"][0]["where"] == "10.0.0.2"
    assert data["experiment"]["optimize_mode"] == "minimize"


def test_downsample_keeps_ends_and_extremes() -> None:
    values = [float((i * 37) % 101) for i in range(1000)]
    curve = downsample(list(range(1, 1001)), values, 50)
    assert len(curve.values) <= 50 and curve.total == 1000
    assert curve.steps[0] == 1 and curve.steps[-1] == 1000
    assert max(curve.values) == max(values) and min(curve.values) == min(values)
    assert downsample([1, 2], [0.5, 0.6], 50).values == (0.5, 0.6)


def test_flatten_nested_choices() -> None:
    flat = flatten_parameters({"opt": {"_name": "sgd", "lr": 0.1, "inner": {"_name": "a"}},
                               "layers": [1, 2], "x": None})
    assert flat == {"opt": "sgd", "opt/lr": 0.1, "opt/inner": "a", "layers": "[1, 2]",
                    "x": None}


def _trials(params: list[dict], finals: list[float | None]) -> list[TrialRecord]:
    return [TrialRecord(id=f"t{i}", experiment_id="e", sequence=i, parameters=p,
                        status=TrialStatus.SUCCEEDED, final=f)
            for i, (p, f) in enumerate(zip(params, finals, strict=True))]


def test_importance_explains_when_it_cannot_be_computed() -> None:
    few = parameter_importance(_trials([{"x": 1}, {"x": 2}], [1.0, 2.0]),
                               OptimizeMode.MAXIMIZE)
    assert few.values == () and "needs 3" in (few.note or "")
    same = parameter_importance(_trials([{"x": 1}] * 4, [1.0, 2.0, 3.0, 4.0]),
                                OptimizeMode.MAXIMIZE)
    assert same.values == () and "more than one value" in (same.note or "")


def test_importance_over_numeric_categorical_and_nested_parameters() -> None:
    params = [{"x": i / 40, "c": ["a", "b", 3][i % 3],
               "opt": {"_name": "sgd", "m": i / 10} if i % 2 else {"_name": "adam"}}
              for i in range(40)]
    finals = [10 * p["x"] for p in params]  # only x matters
    imp = parameter_importance(_trials(params, finals), OptimizeMode.MINIMIZE)
    assert imp.note is None, imp.note
    names = [k for k, _ in imp.values]
    assert names[0] == "x" and set(names) <= {"x", "c", "opt", "opt/m"}
    assert sum(v for _, v in imp.values) == pytest.approx(1.0)


def test_payload_has_no_nan(store: Store) -> None:
    exp_id = add_experiment(store)
    store.save_trial(TrialRecord(id="Zinf0", experiment_id=exp_id, sequence=99,
                                 parameters={"lr": float("inf")},
                                 status=TrialStatus.SUCCEEDED, final=float("inf")))
    text = build_payload(load_report_data(store, exp_id))
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


def test_cli_report_writes_one_file(tmp_path: Path) -> None:
    from test_run_local import run_cli

    home = tmp_path / "home"
    with Store(home / "remotetune.db") as s:
        exp_id = add_experiment(s)
    result = run_cli(tmp_path, "report", exp_id[:4], "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr
    data = embedded((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert len(data["trials"]) == 6
    missing = run_cli(tmp_path, "report", "nosuchexp")
    assert missing.returncode == 2 and "nosuchexp" in missing.stderr


def test_cli_report_to_an_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    from test_run_local import run_cli

    with Store(tmp_path / "home" / "remotetune.db") as s:
        exp_id = add_experiment(s)
    result = run_cli(tmp_path, "report", exp_id, "-o", str(tmp_path / "no" / "dir" / "r.html"))
    assert result.returncode == 2 and "cannot write the report" in result.stderr
