"""Issue 8, items 1-2: no metric line a trial writes can hang, crash or fool remotetune."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from remotetune import trial as trial_api
from remotetune.backends.hostpool._host import reads
from remotetune.metrics import MetricLineError, decode_metric_line
from remotetune.model import MetricKind, TrialStatus
from tests.test_run_local import only_experiment, open_store, run_cli

DATA = Path(__file__).parent / "data"

HOSTILE = [
    '{"type": "FINAL", "value": 1' + "0" * 400 + "}",
    '{"type": "FINAL", "value": 1' + "0" * 5000 + "}",
    '{"type": "PERIODICAL", "value": ' + "[" * 100000 + "]" * 100000 + "}",
    '{"type": "PERIODICAL", "value": ' + "{\"a\":" * 100000 + "1" + "}" * 100000 + "}",
    "[" * 100000,
    '{"type": "FINAL", "value": Infinity}',
    '{"type": "FINAL", "value": -Infinity}',
    '{"type": "FINAL", "value": 1e999}',
    '{"type": "FINAL", "value": -1e999}',
    '{"type": "FINAL", "value": NaN}',
    '{"type": "FINAL", "value": {"default": Infinity}}',
    '{"type": "FINAL", "value": {"default": 0.5, "x": NaN}}',
    '{"type": "FINAL", "value": {"default": 1e400}}',
    '{"type": "FINAL", "value": true}',
    '{"type": "FINAL", "value": {"default": false}}',
    '{"type": "FINAL", "value": "0.5"}',
    '{"type": "FINAL", "value": null}',
    '{"type": "FINAL", "value": [0.5]}',
    '{"type": "FINAL", "value": {"nodefault": 1}}',
    '{"type": "FINAL"}',
    '{"value": 0.5}',
    '{"type": ["FINAL"], "value": 0.5}',
    '{"type": "BEST", "value": 0.5}',
    '{"type": "FINAL", "value": 0.5, "seq": "x"}',
    '{"type": "FINAL", "value": 0.5, "seq": 1e999}',
    '{"type": "FINAL", "value": 0.5, "seq": -1}',
    "[1, 2]", "1", '"x"', "null", "", "not json", "\x00\x1b]8;;x\x07", "{" * 10, "\ud800",
]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_lines_are_metric_line_errors(line: str) -> None:
    with pytest.raises(MetricLineError):
        decode_metric_line(line, "t", default_seq=0, now=1.0)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
        max_leaves=20)


def _check(line: str) -> None:
    try:
        point = decode_metric_line(line, "t", default_seq=3, now=1.0)
    except MetricLineError:
        return
    assert math.isfinite(point.value)
    assert math.isfinite(point.time)
    json.dumps(point.raw, allow_nan=False)  # the store keeps strict JSON


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_decodes_or_is_a_metric_line_error(line: str) -> None:
    _check(line)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"type": st.sampled_from(["FINAL", "PERIODICAL", "x"])},
                             optional={"value": _json_values(), "seq": _json_values(),
                                       "time": _json_values(),
                                       "default": _json_values()}))
def test_any_json_decodes_or_is_a_metric_line_error(data: dict[str, Any]) -> None:
    _check(json.dumps(data))  # allow_nan: NaN and Infinity reach the decoder too


def test_good_lines_still_decode() -> None:
    point = decode_metric_line('{"type": "FINAL", "value": {"default": 7, "l": [1]}, "seq": 2}',
                               "t", default_seq=0, now=1.0)
    assert (point.kind, point.value, point.seq) == (MetricKind.FINAL, 7.0, 2)
    assert decode_metric_line('{"type": "PERIODICAL", "value": -0.5}', "t", default_seq=4,
                              now=2.0).value == -0.5


@pytest.mark.parametrize("value", [math.inf, -math.inf, 10**400, {"default": math.inf},
                                   {"default": 10**400}, {"default": 1.0, "x": math.nan},
                                   math.nan, True, "1"])
def test_the_trial_api_refuses_what_is_not_a_finite_number(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        trial_api._check(value)
    assert "metric" in str(info.value)


# ---------------------------------------------------------------------------- agent reads


def _read_all(path: Path, final: bool, limit: int = 1 << 16,
              max_bytes: int = 1 << 12) -> tuple[list[str], list[int], int]:
    lines: list[str] = []
    skipped: list[int] = []
    offset, polls = 0, 0
    while True:
        got, offset, more, skip = reads.read_from(str(path), offset, max_bytes, final, limit)
        lines += got
        skipped += skip
        polls += 1
        assert polls < 1000
        if not more:
            return lines, skipped, offset


def test_the_agent_reads_long_lines_whole_and_skips_longer_ones(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    long_ok, too_long = "a" * 50000, "b" * 70000
    path.write_text(f"x\n{long_ok}\ny\n{too_long}\nz\n" + "c" * 80000)
    lines, skipped, offset = _read_all(path, final=False)
    assert lines == ["x", long_ok, "y", "z"]
    assert skipped[0] == 70000 and len(skipped) == 2  # the growing last line too
    assert offset == path.stat().st_size  # parked inside the unfinished over-long line
    with path.open("a") as f:
        f.write("c" * 10 + "\nlast\n")
    more, skip = [], []
    while True:
        got, offset, again, s = reads.read_from(str(path), offset, 1 << 12, False, 1 << 16)
        more += got
        skip += s
        if not again:
            break
    assert more == ["last"] and skip == []


def test_an_ended_trials_torn_long_line_is_read_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("x\n" + "a" * 30000)
    assert _read_all(path, final=True)[:2] == (["x", "a" * 30000], [])
    path.write_text("x\n" + "a" * 90000)
    lines, skipped, offset = _read_all(path, final=True)
    assert (lines, skipped, offset) == (["x"], [90000], 90002)


def test_no_data_is_no_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("a\n")
    for final in (False, True):
        assert reads.read_from(str(path), 2, 1 << 12, final) == ([], 2, False, [])
    path.write_text("")
    assert reads.read_from(str(path), 0, 1 << 12, True) == ([], 0, False, [])


def test_only_newlines_split_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'a\rb\x1cc\xe2\x80\xa8d\r\ne\n')
    assert _read_all(path, final=False)[0] == ["a\rb\x1cc\u2028d", "e"]


# ---------------------------------------------------------------------------- end to end


def hostile_experiment(tmp_path: Path, mode: str, **overrides: Any) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(DATA / "trial_hostile.py", code / "trial.py")
    config: dict[str, Any] = {
        "experimentName": f"hostile-{mode}",
        "searchSpace": {"mode": {"_type": "choice", "_value": [mode]}},
        "trialCommand": f"{sys.executable} trial.py",
        "trialCodeDirectory": "code",
        "trialConcurrency": 1,
        "maxTrialNumber": 1,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "pollInterval": 0.05,
    }
    config.update(overrides)
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def check_long_lines(tmp_path: Path, result: Any) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        (t,) = store.trials(exp_id)
        assert t.status is TrialStatus.SUCCEEDED, t
        assert t.final == 0.75
        assert t.intermediate_count == 2  # the 1.2 MB and the 15 MiB line, read whole
        metrics = store.metrics(exp_id, t.id)
    assert len(metrics[0].raw["l"]) == 100000
    assert len(metrics[1].raw["pad"]) == 15 << 20
    skipped = (17 << 20) + len('{"type": "PERIODICAL", "value": {"default": 0.7, "pad": ""}}')
    assert f"trial {t.id} wrote a metric line" in result.stdout
    assert f"a line of {skipped} bytes is longer than the 16 MiB limit" in result.stdout


def test_long_metric_lines_locally(tmp_path: Path) -> None:
    exp = hostile_experiment(tmp_path, "long")
    check_long_lines(tmp_path, run_cli(tmp_path, "run", str(exp), "--plain", timeout=180))


def test_garbage_metric_lines_locally_and_resume(tmp_path: Path) -> None:
    exp = hostile_experiment(tmp_path, "garbage")
    result = run_cli(tmp_path, "run", str(exp), "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        (t,) = store.trials(exp_id)
        assert t.status is TrialStatus.SUCCEEDED and t.final == 0.25
    assert result.stdout.count("wrote a metric line remotetune cannot read") == 9
    assert "): ''" not in result.stdout  # no empty line made up by the reader
    best = run_cli(tmp_path, "best", exp_id, "--json")
    assert json.loads(best.stdout)["final"] == 0.25


def test_the_trial_api_refuses_infinite_and_huge_metrics_in_a_real_trial(tmp_path: Path) -> None:
    exp = hostile_experiment(tmp_path, "api")
    result = run_cli(tmp_path, "run", str(exp), "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        (t,) = store.trials(only_experiment(store))
    assert t.status is TrialStatus.SUCCEEDED and t.final == 0.5
    out = (Path(t.trial_dir) / "stdout.log").read_text()
    assert out.count("refused: a metric must be finite") == 2
    assert out.count("refused: a metric must fit in a float") == 2
    assert "cannot read" not in result.stdout  # nothing hostile reached the file


def test_a_fifo_or_garbage_in_the_trial_directory_blocks_nothing(tmp_path: Path) -> None:
    exp = hostile_experiment(tmp_path, "fifo")
    result = run_cli(tmp_path, "run", str(exp), "--plain", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr  # ended, seen, not hung
    with open_store(tmp_path) as store:
        (t,) = store.trials(only_experiment(store))
    assert t.status is TrialStatus.SUCCEEDED and t.final is None


def test_garbage_pid_and_exit_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "pid.json")
    assert reads.read_json(str(tmp_path / "fifo" / "pid.json")) is None
    assert reads.read_from(str(tmp_path / "fifo" / "pid.json"), 0, 10, True) == ([], 0, False, [])
    assert reads.tail(str(tmp_path / "fifo" / "pid.json"), 10) == ""
    assert reads.valid_pid({"pid": 0, "pgid": 0, "started": 1.0}) is None
    assert reads.valid_pid({"pid": "x", "pgid": 5, "started": 1.0}) is None
    assert reads.valid_pid({"pid": 5, "pgid": 5, "started": 1.0, "ticks": "x"}) is None
    assert reads.valid_pid({"pid": 5, "pgid": 5, "started": 1.0}) is not None
    assert reads.valid_exit({"code": "x", "ended": 1e999, "reason": 5}) == {
        "code": None, "signal": None, "ended": None, "reason": None}


def _over_ssh(ssh_host: Any, tmp_path: Path, mode: str) -> Any:
    from tests.test_run_ssh import host_entry, run_experiment

    exp = hostile_experiment(tmp_path, mode, trialCommand="python3 trial.py")
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump({"machines": [host_entry(ssh_host, "h")]}))
    return run_experiment(tmp_path, exp, machines)


def test_long_metric_lines_over_ssh(ssh_host: Any, tmp_path: Path) -> None:
    check_long_lines(tmp_path, _over_ssh(ssh_host, tmp_path, "long"))


def test_garbage_metric_lines_over_ssh(ssh_host: Any, tmp_path: Path) -> None:
    result = _over_ssh(ssh_host, tmp_path, "garbage")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("wrote a metric line remotetune cannot read") == 9
    with open_store(tmp_path) as store:
        (t,) = store.trials(only_experiment(store))
    assert t.status is TrialStatus.SUCCEEDED and t.final == 0.25
