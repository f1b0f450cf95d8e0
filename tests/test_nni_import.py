"""Importing NNI's nni.sqlite: fixtures built here with NNI's exact tables."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotetune.errors import StoreError
from remotetune.model import ExperimentStatus, MetricKind, OptimizeMode, TrialStatus
from remotetune.nni_import import import_nni, import_nni_report
from remotetune.store import Store

T0 = 1_700_000_000_000  # epoch milliseconds, as NNI stores them
SECRET = "s3cret-pw-value"

NNI_SCHEMA = """
create table TrialJobEvent (timestamp integer, trialJobId text, event text, data text,
    logPath text, sequenceId integer, message text);
create index TrialJobEvent_trialJobId on TrialJobEvent(trialJobId);
create index TrialJobEvent_event on TrialJobEvent(event);
create table MetricData (timestamp integer, trialJobId text, parameterId text, type text,
    sequence integer, data text);
create index MetricData_trialJobId on MetricData(trialJobId);
create index MetricData_type on MetricData(type);
create table ExperimentProfile (params text, id text, execDuration integer, startTime integer,
    endTime integer, logDir text, nextSequenceId integer, revision integer);
create index ExperimentProfile_id on ExperimentProfile(id);
"""

V2_PARAMS: dict[str, Any] = {
    "experimentName": "mnist-tpe",
    "searchSpace": {"lr": {"_type": "loguniform", "_value": [0.0001, 0.1]}},
    "trialCommand": "python3 mnist.py",
    "trialConcurrency": 2,
    "maxTrialNumber": 10,
    "maxExperimentDuration": "1h",
    "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "minimize"}},
    "trainingService": {
        "platform": "remote",
        "machineList": [{"host": "10.0.0.2", "user": "bob", "password": SECRET, "port": 22}],
    },
}


class NniDb:
    """Writes rows the way NNI's sqlDatabase.ts does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.executescript(NNI_SCHEMA)

    def profile(
        self, nni_id: str, params: dict[str, Any], revision: int, end: int | None = None
    ) -> None:
        self.conn.execute(
            "insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
            (
                json.dumps(params),
                nni_id,
                60 * revision,
                T0,
                end,
                f"/home/bob/nni/{nni_id}",
                revision,
                revision,
            ),
        )

    def event(
        self,
        ms: int,
        trial: str,
        event: str,
        seq: int,
        params: tuple[int, dict[str, Any]] | None = None,
        host: str = "10.0.0.2",
        nni_id: str = "Gb8xYz3Q",
    ) -> None:
        data = ""
        if params is not None:
            data = json.dumps(
                {
                    "parameter_id": params[0],
                    "parameter_source": "algorithm",
                    "parameters": params[1],
                    "parameter_index": 0,
                }
            )
        log = f"file://{host}:/tmp/nni-experiments/{nni_id}/trials/{trial}"
        self.conn.execute(
            "insert into TrialJobEvent values (?,?,?,?,?,?,?)",
            (T0 + ms, trial, event, data, log, seq, "Platform: remote"),
        )

    def metric(self, ms: int, trial: str, pid: str, kind: str, seq: int, value: Any) -> None:
        # NNI: JSON.stringify of the already JSON-encoded value -> encoded twice
        data = json.dumps(json.dumps(value))
        self.conn.execute(
            "insert into MetricData values (?,?,?,?,?,?)", (T0 + ms, trial, pid, kind, seq, data)
        )

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()


def build_v2(path: Path, end: int | None = T0 + 900_000) -> Path:
    db = NniDb(path)
    old = {**V2_PARAMS, "maxTrialNumber": 5, "experimentName": "old-name"}
    db.profile("Gb8xYz3Q", old, 0)
    db.profile("Gb8xYz3Q", {**V2_PARAMS, "maxTrialNumber": 7}, 1)
    db.profile("Gb8xYz3Q", V2_PARAMS, 2, end)
    # succeeded, with intermediates and a dict final
    db.event(1000, "AAAAA", "WAITING", 0, (0, {"lr": 0.1}))
    db.event(2000, "AAAAA", "RUNNING", 0)
    db.metric(3000, "AAAAA", "0", "PERIODICAL", 0, 0.5)
    db.metric(4000, "AAAAA", "0", "PERIODICAL", 1, 0.3)
    db.metric(5000, "AAAAA", "0", "PERIODICAL", 2, 0.4)
    db.metric(6000, "AAAAA", "0", "FINAL", 0, {"default": 0.35, "acc": 0.9})
    db.event(7000, "AAAAA", "SUCCEEDED", 0)
    # failed
    db.event(1100, "BBBBB", "WAITING", 1, (1, {"lr": 0.01}))
    db.event(2100, "BBBBB", "RUNNING", 1)
    db.metric(3100, "BBBBB", "1", "PERIODICAL", 0, 0.9)
    db.event(4100, "BBBBB", "FAILED", 1)
    # running, its metrics reported under parameter id 7 (recorded on DDDDD's event)
    db.event(1200, "CCCCC", "WAITING", 2, (2, {"lr": 0.2}))
    db.event(2200, "CCCCC", "RUNNING", 2, host="10.0.0.3")
    db.metric(3200, "CCCCC", "7", "PERIODICAL", 0, {"default": 0.8})
    # waiting, never ran
    db.event(1300, "DDDDD", "WAITING", 3, (7, {"lr": 0.07}))
    # cancelled by the user, with a garbage metric
    db.event(1400, "EEEEE", "WAITING", 4, (4, {"lr": 0.04}))
    db.event(2400, "EEEEE", "RUNNING", 4)
    db.metric(3400, "EEEEE", "4", "PERIODICAL", 0, "not a number")
    db.metric(3500, "EEEEE", "4", "PERIODICAL", 1, 0.6)
    db.event(4400, "EEEEE", "USER_TO_CANCEL", 4)
    # NNI's import-data rows have no trial
    db.conn.execute(
        "insert into TrialJobEvent values (?,?,?,?,?,?,?)",
        (T0 + 5000, "", "IMPORT_DATA", "[]", None, None, None),
    )
    db.close()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "remotetune.db") as s:
        yield s


def test_import_v2_experiment(tmp_path: Path, store: Store) -> None:
    nni = build_v2(tmp_path / "nni.sqlite")
    [exp_id] = import_nni(store, nni)
    exp = store.experiment(exp_id)
    assert exp.source == "nni" and exp.id != "Gb8xYz3Q" and len(exp.id) == 8
    assert exp.name == "mnist-tpe (nni Gb8xYz3Q)"
    assert exp.status is ExperimentStatus.DONE
    assert exp.max_trial_number == 10  # the highest revision won
    assert exp.max_experiment_duration == 3600.0
    assert exp.trial_concurrency == 2
    assert exp.tuner == "TPE" and exp.optimize_mode is OptimizeMode.MINIMIZE
    assert exp.created_at == T0 / 1000 and exp.ended_at == (T0 + 900_000) / 1000
    assert exp.config["searchSpace"] == V2_PARAMS["searchSpace"]
    assert exp.config["importedFrom"]["experimentId"] == "Gb8xYz3Q"
    assert exp.config["importedFrom"]["revision"] == 2
    assert exp.machines == ({"host": "10.0.0.2", "user": "bob", "port": 22},)

    trials = {t.id: t for t in store.trials(exp_id)}
    assert [t.id for t in store.trials(exp_id)] == ["AAAAA", "BBBBB", "CCCCC", "DDDDD", "EEEEE"]
    assert {k: t.status for k, t in trials.items()} == {
        "AAAAA": TrialStatus.SUCCEEDED,
        "BBBBB": TrialStatus.FAILED,
        "CCCCC": TrialStatus.RUNNING,
        "DDDDD": TrialStatus.WAITING,
        "EEEEE": TrialStatus.USER_CANCELED,
    }
    a = trials["AAAAA"]
    assert a.sequence == 0 and a.parameter_id == 0 and a.parameters == {"lr": 0.1}
    assert a.created_at == (T0 + 1000) / 1000
    assert a.started_at == (T0 + 2000) / 1000 and a.ended_at == (T0 + 7000) / 1000
    assert a.final == 0.35
    assert a.best_intermediate == 0.3  # minimize
    assert a.latest_intermediate == 0.4 and a.intermediate_count == 3
    assert a.host == "10.0.0.2" and a.trial_dir == "/tmp/nni-experiments/Gb8xYz3Q/trials/AAAAA"
    # the metric's parameterId wins over the trial's own event
    c = trials["CCCCC"]
    assert c.parameters == {"lr": 0.07} and c.parameter_id == 7
    assert c.ended_at is None and c.started_at == (T0 + 2200) / 1000 and c.host == "10.0.0.3"
    assert trials["DDDDD"].started_at is None and trials["DDDDD"].parameters == {"lr": 0.07}
    e = trials["EEEEE"]
    assert e.intermediate_count == 1 and e.latest_intermediate == 0.6
    assert e.ended_at == (T0 + 4400) / 1000
    assert store.best_trial(exp_id) is not None

    pts = store.metrics(exp_id, "AAAAA")
    assert [(p.seq, p.kind, p.value) for p in pts] == [
        (0, MetricKind.INTERMEDIATE, 0.5),
        (1, MetricKind.INTERMEDIATE, 0.3),
        (2, MetricKind.INTERMEDIATE, 0.4),
        (3, MetricKind.FINAL, 0.35),
    ]
    assert pts[3].raw == {"default": 0.35, "acc": 0.9}
    assert pts[0].time == (T0 + 3000) / 1000
    assert store.metrics(exp_id, "CCCCC")[0].raw == {"default": 0.8}
    assert len(store.metrics(exp_id)) == 4 + 1 + 1 + 1


def test_password_is_not_imported(tmp_path: Path, store: Store) -> None:
    import_nni(store, build_v2(tmp_path / "nni.sqlite"))
    for file in tmp_path.iterdir():
        if file.name.startswith("remotetune.db"):
            assert SECRET.encode() not in file.read_bytes()


def test_import_twice_returns_existing_id(tmp_path: Path, store: Store) -> None:
    nni = build_v2(tmp_path / "nni.sqlite")
    first = import_nni_report(store, nni)
    again = import_nni_report(store, nni)
    assert first[0].created and first[0].trials == 5 and first[0].metrics == 7
    assert first[0].skipped_metrics == 1
    assert not again[0].created and again[0].experiment_id == first[0].experiment_id
    assert len(store.experiments()) == 1
    assert len(store.trials(first[0].experiment_id)) == 5


def test_running_experiment_stays_running(tmp_path: Path, store: Store) -> None:
    [exp_id] = import_nni(store, build_v2(tmp_path / "nni.sqlite", end=None))
    assert store.experiment(exp_id).status is ExperimentStatus.RUNNING


def test_v1_config_keys(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "nni.sqlite"
    db = NniDb(path)
    params = {
        "authorName": "alice",
        "experimentName": "legacy",
        "trialConcurrency": 3,
        "maxExecDuration": 7200,
        "maxTrialNum": 4,
        "searchSpace": json.dumps({"x": {"_type": "choice", "_value": [1, 2]}}),
        "trainingServicePlatform": "remote",
        "tuner": {"builtinTunerName": "Anneal", "classArgs": {"optimize_mode": "maximize"}},
        "machineList": [{"ip": "10.1.1.1", "port": 22, "username": "al", "passwd": SECRET}],
    }
    db.profile("v1expAAA", params, 0, T0 + 10)
    db.event(10, "XyZ12", "WAITING", 0, (0, {"x": 2}), nni_id="v1expAAA")
    db.event(20, "XyZ12", "RUNNING", 0, nni_id="v1expAAA")
    db.metric(30, "XyZ12", "0", "FINAL", 0, 0.75)
    db.event(40, "XyZ12", "SUCCEEDED", 0, nni_id="v1expAAA")
    db.metric(50, "ghost", "9", "FINAL", 0, 1.0)  # a trial without events: skipped
    db.close()
    [report] = import_nni_report(store, path)
    assert (report.trials, report.metrics, report.skipped_metrics) == (1, 1, 1)
    exp_id = report.experiment_id
    exp = store.experiment(exp_id)
    assert exp.name == "legacy (nni v1expAAA)"
    assert exp.tuner == "Anneal" and exp.optimize_mode is OptimizeMode.MAXIMIZE
    assert exp.max_trial_number == 4 and exp.max_experiment_duration == 7200.0
    assert exp.trial_concurrency == 3
    assert exp.config["searchSpace"] == {"x": {"_type": "choice", "_value": [1, 2]}}
    assert exp.machines == ({"ip": "10.1.1.1", "port": 22, "username": "al"},)
    [trial] = store.trials(exp_id)
    assert trial.final == 0.75 and trial.parameters == {"x": 2}
    assert trial.status is TrialStatus.SUCCEEDED


def test_two_experiments_in_one_file(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "nni.sqlite"
    db = NniDb(path)
    db.profile("expOne11", {"experimentName": "one"}, 0, T0)
    db.profile("expTwo22", {"experimentName": "two"}, 0, T0)
    db.event(1, "t1aaa", "WAITING", 0, (0, {"a": 1}), nni_id="expOne11")
    db.event(2, "t2bbb", "WAITING", 0, (0, {"b": 2}), nni_id="expTwo22")
    db.close()
    report = {r.nni_id: r for r in import_nni_report(store, path)}
    assert set(report) == {"expOne11", "expTwo22"}
    assert [t.id for t in store.trials(report["expOne11"].experiment_id)] == ["t1aaa"]
    assert [t.id for t in store.trials(report["expTwo22"].experiment_id)] == ["t2bbb"]


def test_empty_experiment_without_name(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "nni.sqlite"
    db = NniDb(path)
    db.profile("emptyExp", {"trialConcurrency": 1}, 0)
    db.close()
    [exp_id] = import_nni(store, path)
    exp = store.experiment(exp_id)
    assert exp.name == "nni emptyExp" and exp.status is ExperimentStatus.DONE
    assert store.trials(exp_id) == []


def test_not_an_nni_database(tmp_path: Path, store: Store) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("create table MetricData (x int)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"other\.sqlite.*ExperimentProfile, TrialJobEvent"):
        import_nni(store, other)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"hello" * 1000)
    with pytest.raises(StoreError, match="garbage.sqlite"):
        import_nni(store, garbage)
    with pytest.raises(StoreError, match="missing.sqlite"):
        import_nni(store, tmp_path / "missing.sqlite")
    empty = tmp_path / "empty.sqlite"
    NniDb(empty).close()
    with pytest.raises(StoreError, match="holds no experiment"):
        import_nni(store, empty)
    assert store.experiments() == []


def test_import_does_not_write_to_the_nni_file(tmp_path: Path, store: Store) -> None:
    nni = build_v2(tmp_path / "nni.sqlite")
    before = nni.read_bytes()
    import_nni(store, nni)
    assert nni.read_bytes() == before


def test_import_writes_through_the_store_api_in_one_transaction(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the controller's public writer methods, inside one `Store.batch()`: all or nothing."""
    nni = build_v2(tmp_path / "nni.sqlite")
    calls: list[str] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        real = getattr(store, name)

        def call(*a, **kw):  # type: ignore[no-untyped-def]
            calls.append(name if store._lock._is_owned() else f"{name} outside batch")  # type: ignore[attr-defined]
            return real(*a, **kw)

        return call

    for name in ("save_trial", "add_metrics", "add_event", "save_experiment"):
        monkeypatch.setattr(store, name, spy(name))
    [exp_id] = import_nni(store, nni)
    assert calls and all("outside" not in c for c in calls), calls
    assert calls[-1] == "save_experiment" and "save_trial" in calls and "add_metrics" in calls

    def boom(rec: object) -> None:
        raise RuntimeError("disk full")

    other = tmp_path / "other.sqlite"
    build_v2(other)
    with Store(tmp_path / "second.db") as fresh:
        monkeypatch.setattr(fresh, "save_experiment", boom)
        with pytest.raises(RuntimeError, match="disk full"):
            import_nni(fresh, other)
        assert fresh.experiments() == []
        assert fresh._rows("count", "select count(*) from trials")[0][0] == 0
        assert fresh._rows("count", "select count(*) from metrics")[0][0] == 0
