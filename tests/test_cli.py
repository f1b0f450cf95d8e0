"""The command line: every command documented, and the result commands end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from test_nni_import import build_v2

from remotetune.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[union-attr]


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in commands() if f"remotetune {c}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "remotetune.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_nni_then_query_and_export(tmp_path: Path) -> None:
    db = build_v2(tmp_path / "nni.sqlite")
    result = run(tmp_path, "import-nni", str(db))
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    exps = json.loads(run(tmp_path, "ls", "--json").stdout)
    assert len(exps) == 1 and exps[0]["source"] == "nni"
    exp_id = exps[0]["id"]
    trials = json.loads(run(tmp_path, "trials", exp_id, "--json").stdout)
    assert trials and all({"id", "status", "parameters", "final"} <= set(t) for t in trials)
    out = run(tmp_path, "export", exp_id, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(trials)
    assert any(k.startswith("param.") for k in rows[0])
    as_json = json.loads(run(tmp_path, "export", exp_id, "--format", "json").stdout)
    assert len(as_json) == len(trials)
    # importing twice does not duplicate
    assert run(tmp_path, "import-nni", str(db)).returncode == 0
    assert len(json.loads(run(tmp_path, "ls", "--json").stdout)) == 1
    # the plain views render
    shown = run(tmp_path, "show", exp_id, trials[0]["id"])
    assert shown.returncode == 0 and trials[0]["id"] in shown.stdout


def test_import_of_a_file_that_is_not_nni_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "not-nni.sqlite"
    bogus.write_bytes(b"")
    result = run(tmp_path, "import-nni", str(bogus))
    assert result.returncode == 2
    assert "not-nni.sqlite" in result.stderr


def test_check_reports_the_local_machine(tmp_path: Path) -> None:
    result = run(tmp_path, "check", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    checks = json.loads(result.stdout)
    assert len(checks) == 1 and checks[0]["ok"]
