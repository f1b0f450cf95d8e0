"""The SQLite store: real files, real second processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from remotetune.store import MIGRATIONS, Store
from remotetune.store._schema import Migration, migrate

REPO = Path(__file__).resolve().parents[1]


def make_experiment(exp_id: str = "abcd1234", **kw: object) -> ExperimentRecord:
    fields: dict[str, object] = {
        "id": exp_id,
        "name": "mnist",
        "status": ExperimentStatus.RUNNING,
        "config": {"searchSpace": {"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}}},
        "tuner": "TPE",
        "optimize_mode": OptimizeMode.MAXIMIZE,
        "max_trial_number": 10,
        "trial_concurrency": 2,
        "created_at": 1000.0,
    }
    fields.update(kw)
    return ExperimentRecord(**fields)  # type: ignore[arg-type]


def make_trial(trial_id: str, seq: int, exp_id: str = "abcd1234", **kw: object) -> TrialRecord:
    fields: dict[str, object] = {
        "id": trial_id,
        "experiment_id": exp_id,
        "sequence": seq,
        "parameters": {"lr": 0.01 * (seq + 1)},
        "status": TrialStatus.WAITING,
    }
    fields.update(kw)
    return TrialRecord(**fields)  # type: ignore[arg-type]


def point(trial_id: str, seq: int, value: float, kind: MetricKind = MetricKind.INTERMEDIATE):
    return MetricPoint(trial_id, seq, kind, value, value, 2000.0 + seq)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "remotetune.db") as s:
        yield s


def test_open_creates_wal_file_with_recorded_migrations(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "remotetune.db"
    with Store(path) as s:
        assert s.path == path
    conn = sqlite3.connect(path)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    names = [r[0] for r in conn.execute("select name from _migrations order by rowid")]
    assert names == [m.name for m in MIGRATIONS]
    applied_at = conn.execute("select min(applied_at) from _migrations").fetchone()[0]
    assert abs(applied_at - time.time()) < 60
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"experiments", "trials", "metrics", "events", "hosts", "_migrations"} <= tables
    conn.close()
    # reopening applies nothing twice
    with Store(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("select count(*) from _migrations").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_new_migration_is_applied_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    Store(path).close()
    calls: list[str] = []

    def add_column(db: object) -> None:
        calls.append("x")
        db.execute("alter table trials add column note text")  # type: ignore[attr-defined]

    extra = (*MIGRATIONS, Migration("9999_note", add_column))
    from sqlite_utils import Database

    db = Database(sqlite3.connect(path))
    assert migrate(db.conn, str(path), extra) == ["9999_note"]
    assert migrate(db.conn, str(path), extra) == []
    assert calls == ["x"]
    assert "note" in db.table("trials").columns_dict
    db.close()
    # this code does not know 9999_note: the file came from a newer remotetune
    with pytest.raises(StoreError, match="newer remotetune.*9999_note|9999_note.*newer"):
        Store(path)


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    Store(path).close()

    def broken(db: object) -> None:
        db.execute("create table half (x int)")  # type: ignore[attr-defined]
        raise RuntimeError("boom")

    from sqlite_utils import Database

    db = Database(sqlite3.connect(path))
    with pytest.raises(RuntimeError):
        migrate(db.conn, str(path), (*MIGRATIONS, Migration("9999_broken", broken)))
    assert not db.table("half").exists()
    assert "9999_broken" not in [r[0] for r in db.execute("select name from _migrations")]
    db.close()


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match=str(path)):
        Store(path)


def test_default_path_honours_remotetune_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTETUNE_HOME", str(tmp_path / "home"))
    assert Store.default_path() == tmp_path / "home" / "remotetune.db"
    with Store.open_default() as s:
        assert s.path.exists()
    monkeypatch.delenv("REMOTETUNE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Store.default_path() == tmp_path / ".remotetune" / "remotetune.db"


def test_experiment_roundtrip_and_replace(store: Store) -> None:
    rec = make_experiment(
        machines=({"name": "gpu1", "host": "10.0.0.2", "gpu_indices": [0, 1]},),
        config_file="/x/exp.yml",
        max_experiment_duration=3600.0,
        message=None,
    )
    store.save_experiment(rec)
    assert store.experiment("abcd1234") == rec
    done = make_experiment(status=ExperimentStatus.DONE, ended_at=5000.0, message="all done")
    store.save_experiment(done)
    assert store.experiment("abcd1234") == done
    assert len(store.experiments()) == 1


def test_experiment_prefix_lookup(store: Store) -> None:
    store.save_experiment(make_experiment("abcd1234", created_at=1.0))
    store.save_experiment(make_experiment("abzz9999", created_at=2.0))
    store.save_experiment(make_experiment("q1111111", created_at=3.0))
    assert store.experiment("abc").id == "abcd1234"
    assert store.experiment("q").id == "q1111111"
    with pytest.raises(StoreError, match="ambiguous.*abcd1234.*abzz9999"):
        store.experiment("ab")
    with pytest.raises(ExperimentNotFound):
        store.experiment("zz")
    with pytest.raises(ExperimentNotFound):
        store.experiment("a%")  # LIKE wildcards are not wildcards here
    assert [e.id for e in store.experiments()] == ["q1111111", "abzz9999", "abcd1234"]


def test_new_ids(store: Store) -> None:
    ids = {store.new_experiment_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 8 and i.isalnum() and i == i.lower() for i in ids)
    store.save_experiment(make_experiment())
    tids = {store.new_trial_id("abcd1234") for _ in range(50)}
    assert all(len(t) == 5 and t.isalnum() and t.isascii() for t in tids)


def test_trial_roundtrip_every_field(store: Store) -> None:
    store.save_experiment(make_experiment())
    rec = make_trial(
        "Ab3xY",
        0,
        parameters={"model": {"_name": "svm", "C": 0.5}, "layers": [1, 2]},
        status=TrialStatus.SUCCEEDED,
        parameter_id=7,
        attempt=2,
        retry_of="Zz9zz",
        host="gpu1",
        gpus=(0, 3),
        pid=4242,
        trial_dir="/home/u/.remotetune/hosts/abcd1234/Ab3xY",
        created_at=1.5,
        started_at=2.5,
        ended_at=3.5,
        exit_code=0,
        final=0.93,
        best_intermediate=0.95,
        latest_intermediate=0.9,
        intermediate_count=12,
        message="ok",
        stdout_tail="epoch 12\n",
        stderr_tail="",
    )
    store.save_trial(rec)
    got = store.trial("abcd1234", "Ab3xY")
    assert got == rec
    assert list(got.parameters) == ["model", "layers"]  # search-space order is kept
    assert list(got.parameters["model"]) == ["_name", "C"]
    with pytest.raises(StoreError, match="no trial 'nope'"):
        store.trial("abcd1234", "nope")


def test_trials_order_filter_and_next_sequence(store: Store) -> None:
    store.save_experiment(make_experiment())
    assert store.next_sequence("abcd1234") == 0
    statuses = [TrialStatus.SUCCEEDED, TrialStatus.RUNNING, TrialStatus.FAILED, TrialStatus.WAITING]
    for seq in (3, 1, 0, 2):
        store.save_trial(make_trial(f"t{seq}", seq, status=statuses[seq]))
    assert [t.sequence for t in store.trials("abcd1234")] == [0, 1, 2, 3]
    running = store.trials("abcd1234", [TrialStatus.RUNNING, TrialStatus.WAITING])
    assert [t.id for t in running] == ["t1", "t3"]
    assert store.trials("abcd1234", []) == []
    assert store.next_sequence("abcd1234") == 4
    assert store.trials("other") == []


def test_metrics_insert_dedupe_and_offset(store: Store) -> None:
    store.save_experiment(make_experiment())
    store.save_trial(make_trial("t0", 0, status=TrialStatus.RUNNING))
    assert store.metrics_offset("abcd1234", "t0") == 0
    first = [point("t0", 0, 0.5), point("t0", 1, 0.6)]
    assert store.add_metrics("abcd1234", "t0", first, new_offset=40) == 2
    assert store.metrics_offset("abcd1234", "t0") == 40
    # re-reading the same bytes after a crash inserts nothing new
    again = [*first, point("t0", 2, 0.7, MetricKind.FINAL)]
    assert store.add_metrics("abcd1234", "t0", again, new_offset=60) == 1
    assert store.metrics_offset("abcd1234", "t0") == 60
    # save_trial does not reset the offset
    store.save_trial(make_trial("t0", 0, status=TrialStatus.SUCCEEDED, final=0.7))
    assert store.metrics_offset("abcd1234", "t0") == 60
    got = store.metrics("abcd1234", "t0")
    assert [(p.seq, p.kind, p.value) for p in got] == [
        (0, MetricKind.INTERMEDIATE, 0.5),
        (1, MetricKind.INTERMEDIATE, 0.6),
        (2, MetricKind.FINAL, 0.7),
    ]


def test_metrics_dict_raw_and_order_across_trials(store: Store) -> None:
    store.save_experiment(make_experiment())
    store.save_trial(make_trial("zz", 0))
    store.save_trial(make_trial("aa", 1))
    raw = {"default": 0.8, "loss": 0.2, "per_class": [0.1, 0.9]}
    store.add_metrics("abcd1234", "aa", [MetricPoint("aa", 0, MetricKind.FINAL, 0.8, raw, 5.0)], 9)
    store.add_metrics("abcd1234", "zz", [point("zz", 1, 0.2), point("zz", 0, 0.1)], 9)
    pts = store.metrics("abcd1234")
    assert [(p.trial_id, p.seq) for p in pts] == [("zz", 0), ("zz", 1), ("aa", 0)]
    assert pts[2].raw == raw and pts[2].time == 5.0


def test_add_metrics_rejects_unknown_trial_and_foreign_points(store: Store) -> None:
    store.save_experiment(make_experiment())
    store.save_trial(make_trial("t0", 0))
    with pytest.raises(StoreError, match="save_trial it first"):
        store.add_metrics("abcd1234", "ghost", [point("ghost", 0, 1.0)], 10)
    assert store.metrics("abcd1234") == []  # rolled back with the offset
    with pytest.raises(StoreError, match="point of trial 'other'"):
        store.add_metrics("abcd1234", "t0", [point("other", 0, 1.0)], 10)
    assert store.metrics_offset("abcd1234", "t0") == 0


def test_events_last_n_oldest_first(store: Store) -> None:
    store.save_experiment(make_experiment())
    for i in range(5):
        store.add_event(
            EventRecord("abcd1234", 100.0 + i, "trial", f"m{i}", trial_id="t0", host="gpu1")
        )
    store.add_event(EventRecord("abcd1234", 200.0, "error", "bad", level="error"))
    store.add_event(EventRecord("other000", 1.0, "trial", "elsewhere"))
    last = store.events("abcd1234", limit=3)
    assert [e.message for e in last] == ["m3", "m4", "bad"]
    assert last[-1].level == "error" and last[0].host == "gpu1" and last[0].trial_id == "t0"
    assert len(store.events("abcd1234", limit=None)) == 6
    assert store.events("abcd1234", limit=0) == []


def test_host_state_upsert(store: Store) -> None:
    store.save_experiment(make_experiment())
    gpus = (GpuInfo(0, "H100", 81559.0, 1024.0, 37.0), GpuInfo(1, "H100"))
    st = HostState("abcd1234", "gpu1", True, gpus, {0: ("t1", "t2")}, 2, 2, None, 10.0)
    store.save_host_state(st)
    store.save_host_state(HostState("abcd1234", "cpu9", False, message="unreachable"))
    assert store.host_states("abcd1234")[1] == st
    newer = HostState("abcd1234", "gpu1", True, gpus, {}, 2, 0, None, 11.0)
    store.save_host_state(newer)
    states = store.host_states("abcd1234")
    assert [s.host for s in states] == ["cpu9", "gpu1"]
    assert states[1] == newer and states[0].reachable is False


@pytest.mark.parametrize(
    ("mode", "expected"), [(OptimizeMode.MAXIMIZE, "hi"), (OptimizeMode.MINIMIZE, "lo")]
)
def test_best_trial_honours_optimize_mode(store: Store, mode: OptimizeMode, expected: str) -> None:
    store.save_experiment(make_experiment(optimize_mode=mode))
    assert store.best_trial("abcd1234") is None
    store.save_trial(make_trial("lo", 0, final=0.1, status=TrialStatus.SUCCEEDED))
    store.save_trial(make_trial("hi", 1, final=0.9, status=TrialStatus.SUCCEEDED))
    store.save_trial(make_trial("none", 2, status=TrialStatus.RUNNING, best_intermediate=5.0))
    best = store.best_trial("abcd")  # a prefix works here too
    assert best is not None and best.id == expected


def test_secrets_never_land_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    secret = "hunter2-very-secret"
    machines = (
        {"name": "gpu1", "host": "h", "passwordEnv": "GPU1_PASSWORD", "password": secret},
        {"name": "gpu2", "host": "h", "passphrase_env": "KEY_PASS"},
    )
    config = {
        "trainingService": {"platform": "remote", "machineList": [{"passwd": secret}]},
        "token": secret,
        "passwordEnv": "GPU1_PASSWORD",
    }
    with Store(path) as s:
        s.save_experiment(make_experiment(config=config, machines=machines))
        got = s.experiment("abcd1234")
    # the env var NAMES are kept, the values are not
    assert got.machines[0] == {"name": "gpu1", "host": "h", "passwordEnv": "GPU1_PASSWORD"}
    assert got.machines[1]["passphrase_env"] == "KEY_PASS"
    assert got.config["passwordEnv"] == "GPU1_PASSWORD"
    assert "token" not in got.config
    assert got.config["trainingService"]["machineList"] == [{}]
    for file in tmp_path.iterdir():  # the db, its WAL and shm
        assert secret.encode() not in file.read_bytes()


def test_secret_free_config_is_stored_as_given(store: Store) -> None:
    rec = make_experiment(
        config={"passwordEnv": "X", "tuner": {"name": "TPE"}},
        machines=({"name": "m", "password_env": "X"},),
    )
    store.save_experiment(rec)
    assert store.experiment("abcd1234") == rec


def test_reader_process_sees_writes_while_writer_holds_connection(tmp_path: Path) -> None:
    """`remotetune view` in another process reads while the controller keeps writing."""
    path = tmp_path / "remotetune.db"
    writer = Store(path)
    writer.save_experiment(make_experiment())
    reader_code = textwrap.dedent(
        f"""
        import json, sys, time
        from remotetune.store import Store
        seen = []
        with Store({str(path)!r}) as s:
            deadline = time.time() + 20
            while time.time() < deadline:
                n = len(s.trials("abcd1234"))
                seen.append(n)
                if n >= 200:
                    break
                time.sleep(0.005)
            print(json.dumps({{"max": max(seen), "reads": len(seen)}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", reader_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        for seq in range(200):
            writer.save_trial(make_trial(f"t{seq:03d}", seq, status=TrialStatus.RUNNING))
            writer.add_metrics("abcd1234", f"t{seq:03d}", [point(f"t{seq:03d}", 0, 0.1)], 10)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        writer.close()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["max"] == 200


def test_threads_share_one_store(store: Store) -> None:
    store.save_experiment(make_experiment())

    def work(prefix: str) -> None:
        for i in range(50):
            store.save_trial(make_trial(f"{prefix}{i:02d}", 0))
            store.add_event(EventRecord("abcd1234", float(i), "trial", prefix))

    threads = [threading.Thread(target=work, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.trials("abcd1234")) == 150
    assert len(store.events("abcd1234", limit=None)) == 150


def test_write_speed(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The controller's peak: many save_trial / add_metrics / add_event calls per second."""
    store.save_experiment(make_experiment())
    t0 = time.perf_counter()
    for i in range(1000):
        store.save_trial(make_trial(f"t{i % 50:02d}", i % 50, status=TrialStatus.RUNNING))
    trial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(100):  # 100 batches of 100 = 10,000 points over 50 trials
        tid = f"t{i % 50:02d}"
        base = (i // 50) * 100
        pts = [point(tid, base + j, 0.5) for j in range(100)]
        assert store.add_metrics("abcd1234", tid, pts, (base + 100) * 20) == 100
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1000):
        store.add_metrics("abcd1234", "t00", [point("t00", 10_000 + i, 0.5)], 10_000 + i)
    single_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1000):
        store.add_event(EventRecord("abcd1234", float(i), "trial", "x"))
    event_s = time.perf_counter() - t0
    with capsys.disabled():
        print(
            f"\n1000 save_trial {trial_s * 1000:.0f} ms; 10000 metrics in 100 batches "
            f"{batch_s * 1000:.0f} ms; 1000 single-point add_metrics {single_s * 1000:.0f} ms; "
            f"1000 add_event {event_s * 1000:.0f} ms"
        )
    assert len(store.metrics("abcd1234")) == 11_000
    # generous bounds for a shared 2-core machine; typical numbers are ~10x lower
    assert trial_s < 5 and batch_s < 5 and single_s < 5 and event_s < 5


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=20, deadline=None)
@given(params=st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4))
def test_parameters_roundtrip_any_json(tmp_path_factory: pytest.TempPathFactory, params) -> None:
    path = tmp_path_factory.mktemp("rt") / "remotetune.db"
    with Store(path) as s:
        s.save_experiment(make_experiment())
        s.save_trial(make_trial("t0", 0, parameters=params))
        s.add_metrics("abcd1234", "t0", [MetricPoint("t0", 0, MetricKind.FINAL, 1.0, params, 0)], 1)
        assert s.trial("abcd1234", "t0").parameters == params
        assert s.metrics("abcd1234")[0].raw == params


# --- read-only opening (the CLI's readers) ----------------------------------------------------


def _fingerprint(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, path.read_bytes()


def test_open_readonly_missing_store_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "home" / "remotetune.db"
    with pytest.raises(StoreError, match="no store at"):
        Store.open_readonly(path)
    assert not path.parent.exists()


def test_open_readonly_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    with Store(path) as s:
        s.save_experiment(make_experiment())
        s.save_trial(make_trial("t1", 0, final=0.5))
        s.add_metrics("abcd1234", "t1", [point("t1", 0, 0.5)], 10)
    before = _fingerprint(path)
    files_before = sorted(p.name for p in tmp_path.iterdir())
    time.sleep(0.02)  # so a write would move the mtime
    with Store.open_readonly(path) as r:
        assert r.readonly
        assert r.experiment("abcd1234").name == "mnist"
        assert [t.id for t in r.trials("abcd1234")] == ["t1"]
        assert r.best_trial("abcd1234") is not None
        assert len(r.metrics("abcd1234", "t1")) == 1
        with pytest.raises(StoreError, match="read-only"):
            r.save_trial(make_trial("t2", 1))
        with pytest.raises(StoreError, match="read-only"):
            r.add_event(EventRecord("abcd1234", 1.0, "trial", "m"))
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r._conn.execute("delete from trials")  # even below the Store API, SQLite refuses
    assert _fingerprint(path) == before
    # SQLite's WAL reader may leave an empty -wal (and its -shm index); never any content
    new = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.name not in files_before}
    assert set(new) <= {"remotetune.db-wal", "remotetune.db-shm"}
    assert new.get("remotetune.db-wal", 0) == 0


def test_open_readonly_refuses_an_older_store_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    from sqlite_utils import Database

    db = Database(str(path))
    migrate(db.conn, str(path), MIGRATIONS[:1])  # what an older remotetune left behind
    db.close()
    before = _fingerprint(path)
    with pytest.raises(StoreError, match="run any writing command once"):
        Store.open_readonly(path)
    assert _fingerprint(path) == before
    with Store(path):  # a writer upgrades it ...
        pass
    with Store.open_readonly(path) as r:  # ... and then readers open it
        assert r.experiments() == []


def test_open_readonly_refuses_a_newer_store(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    extra = Migration("9999_future", lambda db: None)
    from sqlite_utils import Database

    db = Database(str(path))
    migrate(db.conn, str(path), (*MIGRATIONS, extra))
    db.close()
    with pytest.raises(StoreError, match="newer remotetune"):
        Store.open_readonly(path)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REMOTETUNE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "remotetune.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_reading_commands_work_beside_a_writer_and_never_write(tmp_path: Path) -> None:
    """ls/trials/best/show/export/view read the WAL a live writer holds; the file stays as is."""
    home = tmp_path / "home"
    path = home / "remotetune.db"
    writer = Store(path)
    try:
        writer.save_experiment(make_experiment(status=ExperimentStatus.DONE, ended_at=1100.0))
        writer.save_trial(make_trial("t1", 0, status=TrialStatus.SUCCEEDED, final=0.75))
        writer.add_metrics("abcd1234", "t1", [point("t1", 0, 0.75, MetricKind.FINAL)], 10)
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 0  # the rows live in the writer's WAL, not yet in the file
        before = _fingerprint(path)
        wal_before = _fingerprint(wal)
        outputs = {}
        for args in (("ls", "--json"), ("trials", "abcd1234", "--json"),
                     ("best", "abcd1234", "--json"), ("show", "abcd1234", "t1", "--json"),
                     ("export", "abcd1234", "--format", "csv"), ("view", "abcd1234")):
            result = _cli(home, *args)
            assert result.returncode == 0, (args, result.stderr)
            outputs[args[0]] = result.stdout
        assert json.loads(outputs["ls"])[0]["id"] == "abcd1234"
        assert json.loads(outputs["best"])["id"] == "t1"
        assert "t1" in outputs["export"]
        assert _fingerprint(path) == before
        assert _fingerprint(wal) == wal_before
        writer.save_trial(make_trial("t2", 1))  # the writer is never blocked by them
    finally:
        writer.close()


def test_reading_commands_on_a_missing_or_older_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = _cli(home, "ls", "--json")  # nothing has run yet: an empty list
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    result = _cli(home, "trials", "abcd1234")
    assert result.returncode == 2
    assert "no store at" in result.stderr
    assert not home.exists()
    home.mkdir()
    from sqlite_utils import Database

    db = Database(str(home / "remotetune.db"))
    migrate(db.conn, str(home / "remotetune.db"), MIGRATIONS[:1])
    db.close()
    result = _cli(home, "trials", "abc")
    assert result.returncode == 2
    assert "run any writing command once" in result.stderr


def _poll_for_store(path: Path, done: threading.Event, errors: list[Exception]) -> None:
    while not done.is_set():
        if path.exists():
            try:
                Store.open_readonly(path).close()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)


def test_a_reader_never_sees_a_new_store_before_its_migrations(tmp_path: Path) -> None:
    """A new store appears only once migrated: a reader polling for it never gets an error."""
    for attempt in range(3):
        path = tmp_path / str(attempt) / "remotetune.db"
        errors: list[Exception] = []
        done = threading.Event()
        reader = threading.Thread(target=_poll_for_store, args=(path, done, errors))
        reader.start()
        try:
            Store(path).close()
        finally:
            done.set()
            reader.join()
        assert errors == []
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_two_writers_creating_one_store_share_it(tmp_path: Path) -> None:
    path = tmp_path / "remotetune.db"
    first, second = Store(path), Store(path)
    try:
        assert first.experiments() == second.experiments() == []
    finally:
        first.close()
        second.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
