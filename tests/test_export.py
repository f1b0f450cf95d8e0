"""Exporting trials to CSV and JSON from a real store."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotetune.errors import ConfigError, ExperimentNotFound
from remotetune.export import export_trials, flatten_parameters
from remotetune.model import (
    ExperimentRecord,
    ExperimentStatus,
    MetricKind,
    MetricPoint,
    OptimizeMode,
    TrialRecord,
    TrialStatus,
)
from remotetune.store import Store

EXP = "exp00001"


def trial(tid: str, seq: int, params: dict[str, object], **kw: object) -> TrialRecord:
    return TrialRecord(
        id=tid,
        experiment_id=EXP,
        sequence=seq,
        parameters=params,
        status=kw.pop("status", TrialStatus.SUCCEEDED),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "remotetune.db") as s:
        s.save_experiment(
            ExperimentRecord(
                id=EXP,
                name="svm",
                status=ExperimentStatus.DONE,
                config={},
                optimize_mode=OptimizeMode.MINIMIZE,
            )
        )
        s.save_trial(
            trial(
                "aaaaa",
                0,
                {"model": {"_name": "svm", "kernel": "rbf"}, "lr": 0.1},
                host="gpu1",
                gpus=(0, 1),
                started_at=1_700_000_000.0,
                ended_at=1_700_000_090.5,
                exit_code=0,
                final=0.25,
                intermediate_count=99,  # the stored points win over the record
            )
        )
        s.add_metrics(
            EXP,
            "aaaaa",
            [
                MetricPoint("aaaaa", 0, MetricKind.INTERMEDIATE, 0.5, 0.5, 1.0),
                MetricPoint("aaaaa", 1, MetricKind.INTERMEDIATE, 0.2, {"default": 0.2}, 2.0),
                MetricPoint("aaaaa", 2, MetricKind.INTERMEDIATE, 0.3, 0.3, 3.0),
                MetricPoint("aaaaa", 3, MetricKind.FINAL, 0.25, 0.25, 4.0),
            ],
            100,
        )
        s.save_trial(
            trial(
                "bbbbb",
                1,
                {"model": {"_name": "tree", "depth": 4}, "lr": 0.01, "tags": ["a", "b"]},
                status=TrialStatus.FAILED,
                host="gpu2",
                exit_code=1,
            )
        )
        s.save_trial(
            trial(
                "ccccc",
                2,
                {"lr": 0.001},
                status=TrialStatus.RUNNING,
                best_intermediate=0.9,
                latest_intermediate=0.95,
                intermediate_count=2,
            )
        )
        yield s


def test_flatten_nested_choice() -> None:
    flat = flatten_parameters({"model": {"_name": "svm", "kernel": "rbf"}, "lr": 1, "x": {}})
    assert flat == {
        "param.model._name": "svm",
        "param.model.kernel": "rbf",
        "param.lr": 1,
        "param.x": {},
    }


def test_csv_export(store: Store) -> None:
    out = io.StringIO()
    assert export_trials(store, EXP, "csv", out) == 3
    text = out.getvalue()
    header = text.splitlines()[0].split(",")
    assert header == [
        "id", "sequence", "status", "host", "gpus", "parameter_id", "started", "ended",
        "duration_s", "exit_code",
        "param.model._name", "param.model.kernel", "param.lr", "param.model.depth", "param.tags",
        "final", "best_intermediate", "latest_intermediate", "intermediate_count",
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    a, b, c = rows
    assert a["id"] == "aaaaa" and a["status"] == "SUCCEEDED" and a["gpus"] == "0,1"
    assert a["param.model._name"] == "svm" and a["param.model.kernel"] == "rbf"
    assert a["param.model.depth"] == ""
    assert a["started"] == "2023-11-14T22:13:20.000+00:00"
    assert float(a["duration_s"]) == 90.5 and a["exit_code"] == "0"
    assert float(a["final"]) == 0.25
    assert float(a["best_intermediate"]) == 0.2  # minimize, from the stored points
    assert float(a["latest_intermediate"]) == 0.3 and a["intermediate_count"] == "3"
    assert b["param.model._name"] == "tree" and b["param.model.depth"] == "4"
    assert json.loads(b["param.tags"]) == ["a", "b"]
    assert b["status"] == "FAILED" and b["final"] == "" and b["duration_s"] == ""
    # no stored points: the trial record's own numbers
    assert c["best_intermediate"] == "0.9" and c["intermediate_count"] == "2"
    assert c["param.model._name"] == "" and c["param.lr"] == "0.001"


def test_json_export(store: Store) -> None:
    out = io.StringIO()
    assert export_trials(store, "exp0", "JSON", out) == 3  # prefix, any case
    rows = json.loads(out.getvalue())
    assert [r["id"] for r in rows] == ["aaaaa", "bbbbb", "ccccc"]
    a = rows[0]
    assert a["parameters"] == {"model": {"_name": "svm", "kernel": "rbf"}, "lr": 0.1}
    assert a["param.model._name"] == "svm" and a["param.lr"] == 0.1
    assert a["gpus"] == [0, 1] and a["best_intermediate"] == 0.2 and a["final"] == 0.25
    assert a["ended"] == "2023-11-14T22:14:50.500+00:00"
    assert rows[1]["param.tags"] == ["a", "b"] and rows[1]["final"] is None
    assert "param.model._name" not in rows[2]


def test_maximize_best_intermediate(store: Store) -> None:
    exp = store.experiment(EXP)
    from dataclasses import replace

    store.save_experiment(replace(exp, optimize_mode=OptimizeMode.MAXIMIZE))
    out = io.StringIO()
    export_trials(store, EXP, "json", out)
    assert json.loads(out.getvalue())[0]["best_intermediate"] == 0.5


def test_empty_experiment_and_errors(store: Store) -> None:
    store.save_experiment(
        ExperimentRecord(id="empty000", name="e", status=ExperimentStatus.RUNNING, config={})
    )
    out = io.StringIO()
    assert export_trials(store, "empty000", "csv", out) == 0
    assert out.getvalue().splitlines() == [
        "id,sequence,status,host,gpus,parameter_id,started,ended,duration_s,exit_code,"
        "final,best_intermediate,latest_intermediate,intermediate_count"
    ]
    out = io.StringIO()
    assert export_trials(store, "empty000", "json", out) == 0
    assert json.loads(out.getvalue()) == []
    with pytest.raises(ConfigError, match="unknown export format 'xml'.*csv or json"):
        export_trials(store, EXP, "xml", io.StringIO())
    with pytest.raises(ExperimentNotFound):
        export_trials(store, "nope", "csv", io.StringIO())


def test_export_of_an_imported_nni_experiment(tmp_path: Path, store: Store) -> None:
    from test_nni_import import build_v2

    from remotetune.nni_import import import_nni

    [exp_id] = import_nni(store, build_v2(tmp_path / "nni.sqlite"))
    out = io.StringIO()
    assert export_trials(store, exp_id, "csv", out) == 5
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["AAAAA"]["param.lr"] == "0.1" and rows["AAAAA"]["best_intermediate"] == "0.3"
    assert rows["CCCCC"]["param.lr"] == "0.07" and rows["EEEEE"]["status"] == "USER_CANCELED"
