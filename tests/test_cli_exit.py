"""The CLI ends with os._exit (cli_support.exit_now): its output and the store are complete."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_run_local import make_experiment, run_cli

SPACE = {"x": {"_type": "uniform", "_value": [0, 1]}, "y": {"_type": "choice", "_value": [1, 2]}}


def test_a_run_ends_with_its_output_flushed_and_its_store_closed(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, SPACE, maxTrialNumber=2)
    result = run_cli(tmp_path, "run", str(experiment), "--plain")
    assert result.returncode == 0, result.stderr
    assert "experiment" in result.stdout and "best trial" in result.stdout  # the last lines
    home = tmp_path / "home"
    # The store was closed before the exit: SQLite checkpointed and removed its WAL.
    assert not (home / "remotetune.db-wal").exists()
    with sqlite3.connect(f"file:{home / 'remotetune.db'}?mode=ro", uri=True) as db:
        (done,) = db.execute("select count(*) from trials where status = 'SUCCEEDED'").fetchone()
    assert done == 2
    listed = run_cli(tmp_path, "ls")  # a reader after it
    assert listed.returncode == 0 and "local-test" in listed.stdout, listed.stderr


def test_a_failing_command_still_says_why(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", str(tmp_path / "missing.yml"))
    assert result.returncode == 2
    assert "experiment file not found" in result.stderr
