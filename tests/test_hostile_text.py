"""Issue 8 items 3, 5, 6: text is data, exit codes tell the truth, output machines can trust."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remotetune.view._safe import clean, safe
from tests.test_run_local import ROOT, make_experiment, only_experiment, open_store, run_cli

EVIL = "[/]x [link=https://evil]y[/link] \x1b]8;;https://e\x07z"


def test_clean_removes_sequences_and_controls() -> None:
    assert clean(EVIL) == "[/]x [link=https://evil]y[/link] z"
    assert clean("a\x1b[31mred\x1b[0m\x9b2Jb\x1bPdcs\x1b\\c\rd\x00e\x7f") == "aredbcde"
    assert clean("one\ntwo\tthree") == "one two three"
    assert clean("one\r\ntwo\tthree", block=True) == "one\ntwo\tthree"
    assert safe("[bold]x") == "\\[bold]x"


def run_env(tmp_path: Path, *args: str, force_terminal: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["REMOTETUNE_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FORCE_COLOR", None)
    env.pop("NO_COLOR", None)
    if force_terminal:
        env["FORCE_COLOR"] = "1"  # rich draws as on a terminal: styles, links if any
        env["COLUMNS"] = "120"
    return subprocess.run([sys.executable, "-m", "remotetune.cli", *args], env=env,
                          capture_output=True, timeout=timeout, cwd=tmp_path)


def assert_inert(result: subprocess.CompletedProcess[bytes], force_terminal: bool) -> None:
    out = result.stdout + result.stderr
    assert b"Traceback" not in out, out.decode(errors="replace")
    assert b"\x1b]" not in out and b"\x07" not in out  # no OSC: no hyperlink, no title
    assert b"\x9d" not in out
    if not force_terminal:
        assert b"\x1b" not in out
    assert b"https://e\x07" not in out


@pytest.fixture(scope="module")
def evil_experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    tmp_path = tmp_path_factory.mktemp("evil")
    path = make_experiment(
        tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]},
                   "evil": {"_type": "choice", "_value": [EVIL]}},
        experimentName=EVIL, maxTrialNumber=2)
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump({"machines": [
        {"name": EVIL, "local": True, "slots": 2}]}))
    result = run_env(tmp_path, "run", str(path), "--machines", str(machines), "--plain")
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")
    assert_inert(result, False)
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        trial_id = store.trials(exp_id)[0].id
    return tmp_path, exp_id, trial_id


@pytest.mark.parametrize("force_terminal", [False, True])
@pytest.mark.parametrize("command", ["ls", "trials", "best", "show", "view", "check",
                                     "ls --json", "trials --json", "show --json",
                                     "check --json"])
def test_hostile_text_is_printed_as_inert_data(
    evil_experiment: tuple[Path, str, str], command: str, force_terminal: bool
) -> None:
    tmp_path, exp_id, trial_id = evil_experiment
    name, *flags = command.split()
    args = {"ls": [], "trials": [exp_id], "best": [exp_id], "view": [exp_id],
            "show": [exp_id, trial_id],
            "check": ["--machines", str(tmp_path / "machines.yml")]}[name]
    result = run_env(tmp_path, name, *args, *flags, force_terminal=force_terminal)
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")
    assert_inert(result, force_terminal)
    if flags:
        json.loads(result.stdout)  # the data itself is kept, escaped by JSON
    elif name in ("ls", "trials", "show", "check") and not force_terminal:
        assert b"[link=https://evil]y[/link]" in result.stdout  # shown, as text


def test_all_trials_failing_exits_1_and_shows_the_first_failure(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, {"fail": {"_type": "choice", "_value": [1]}},
                           maxTrialNumber=3)
    result = run_cli(tmp_path, "run", str(path), "--plain")
    assert result.returncode == 1, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        first = min(store.trials(exp_id), key=lambda t: t.sequence)
    said = " ".join(result.stderr.split())
    assert "all 3 trials failed" in said and first.id in said, said


def _stored_experiment(tmp_path: Path, **overrides: Any) -> str:
    settings: dict[str, Any] = {"maxTrialNumber": 2, **overrides}
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]},
                                      "tag": {"_type": "choice",
                                              "_value": ["=cmd|' /C calc'!A0"]}},
                           **settings)
    assert run_cli(tmp_path, "run", str(path)).returncode == 0
    with open_store(tmp_path) as store:
        return only_experiment(store)


def test_csv_export_neutralises_formulas_but_not_numbers(tmp_path: Path) -> None:
    exp_id = _stored_experiment(tmp_path, searchSpace={
        "x": {"_type": "choice", "_value": [-0.5]},
        "tag": {"_type": "choice", "_value": ["=cmd|' /C calc'!A0"]},
        "at": {"_type": "choice", "_value": ["@SUM(1)"]}})
    rows = list(csv.DictReader(io.StringIO(run_cli(tmp_path, "export", exp_id).stdout)))
    assert rows[0]["param.tag"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["param.at"] == "'@SUM(1)"
    assert rows[0]["param.x"] == "-0.5"
    raw = list(csv.DictReader(io.StringIO(
        run_cli(tmp_path, "export", exp_id, "--raw-csv").stdout)))
    assert raw[0]["param.tag"] == "=cmd|' /C calc'!A0"


def test_export_to_a_closed_pipe_and_a_missing_directory(tmp_path: Path) -> None:
    exp_id = _stored_experiment(tmp_path)
    with open_store(tmp_path) as store:
        trial_id = store.trials(exp_id)[0].id
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for args in (f"export {exp_id} --format csv", f"export {exp_id} --format json", "ls",
                 f"trials {exp_id}", "ls --json", f"show {exp_id} {trial_id}"):
        # `true` exits without reading: the command writes into a closed pipe
        shell = f"{sys.executable} -m remotetune.cli {args} | true; echo rc=${{PIPESTATUS[0]}}"
        done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert done.stderr == "", (args, done.stderr)
        assert "rc=0" in done.stdout, args
    missing = run_cli(tmp_path, "export", exp_id, "-o", str(tmp_path / "missing" / "x.csv"))
    assert missing.returncode == 2
    assert "cannot write" in missing.stderr and "Traceback" not in missing.stderr


def test_a_run_whose_reader_went_away_still_completes(tmp_path: Path) -> None:
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]}},
                           maxTrialNumber=3)
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    shell = (f"{sys.executable} -m remotetune.cli run {path} --plain | head -1;"
             " echo rc=${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert "rc=0" in done.stdout and "Traceback" not in done.stderr, done.stdout + done.stderr
    with open_store(tmp_path) as store:
        exp = store.experiment(only_experiment(store))
        assert exp.status.value == "DONE" and len(store.trials(exp.id)) == 3


def test_piped_best_trial_line_is_one_line_of_json(tmp_path: Path) -> None:
    space = {f"a_rather_long_parameter_name_{i}": {"_type": "choice", "_value": ["v" * 20]}
             for i in range(6)}
    space["x"] = {"_type": "uniform", "_value": [0.1, 1.0]}
    path = make_experiment(tmp_path, space, maxTrialNumber=1)
    result = run_cli(tmp_path, "run", str(path))
    line = next(x for x in result.stdout.splitlines() if x.startswith("best trial"))
    assert json.loads(line.split(" ", 4)[4])["x"] > 0


def test_json_output_is_strict(tmp_path: Path) -> None:
    from remotetune import jsonsafe

    text, replaced = jsonsafe.dumps({"a": float("nan"), "b": [float("inf"), 1.5]})
    assert json.loads(text) == {"a": None, "b": [None, 1.5]} and replaced == 2
    exp_id = _stored_experiment(tmp_path)
    for args in (["ls"], ["trials", exp_id], ["best", exp_id], ["export", exp_id, "--format",
                                                                  "json"]):
        out = run_cli(tmp_path, *args, *(["--json"] if args[0] != "export" else [])).stdout

        def refuse(name: str) -> None:
            raise AssertionError(f"non-strict JSON constant {name}")

        json.loads(out, parse_constant=refuse)


def test_the_live_view_of_run_prints_hostile_text_as_data(tmp_path: Path) -> None:
    path = make_experiment(
        tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]},
                   "evil": {"_type": "choice", "_value": [EVIL]}},
        experimentName=EVIL, maxTrialNumber=2)
    result = run_env(tmp_path, "run", str(path), force_terminal=True)  # the live view
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")
    assert b"Trials (" in result.stdout  # it was the live view that drew
    assert_inert(result, True)
    assert b"[link=https://evil]y[/link]" in result.stdout
