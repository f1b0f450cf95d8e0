"""Issue 8 items 7-8: secrets stay out of local trials, symlinks out of the code sync,
duplicate keys out of search-space JSON files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from remotetune.model import TrialStatus
from tests.test_hostile_metrics import hostile_experiment
from tests.test_run_local import (
    ROOT,
    make_experiment,
    only_experiment,
    open_store,
    run_cli,
)

SECRET_PW, SECRET_PP = "hunter2-pw-7f3a", "hunter2-pp-91c4"


def test_local_trials_do_not_inherit_password_variables(tmp_path: Path) -> None:
    exp = hostile_experiment(tmp_path, "env")
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump({"machines": [
        {"name": "here", "local": True, "passwordEnv": "RT_TEST_PW",
         "passphraseEnv": "RT_TEST_PP", "env": {"VISIBLE_TO_TRIAL": "yes"}}]}))
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"), RT_TEST_PW=SECRET_PW,
               RT_TEST_PP=SECRET_PP, OTHER_VAR="kept",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "remotetune.cli", "run", str(exp), "--machines", str(machines),
         "--plain"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with open_store(tmp_path) as store:
        exp_id = only_experiment(store)
        (t,) = store.trials(exp_id)
    assert t.status is TrialStatus.SUCCEEDED
    stdout_log = (Path(t.trial_dir) / "stdout.log").read_text()
    assert "OTHER_VAR=kept" in stdout_log and "VISIBLE_TO_TRIAL=yes" in stdout_log
    for secret in (SECRET_PW, SECRET_PP):
        assert secret not in stdout_log
        assert secret not in (t.stdout_tail or "")
        assert secret not in result.stdout + result.stderr
    db = (tmp_path / "home" / "remotetune.db").read_bytes()
    assert SECRET_PW.encode() not in db and SECRET_PP.encode() not in db


def test_a_symlink_out_of_the_code_directory_is_refused_unless_followed(tmp_path: Path) -> None:
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY\n")
    path = make_experiment(tmp_path, {"x": {"_type": "uniform", "_value": [0.1, 1.0]}},
                           maxTrialNumber=1)
    code = tmp_path / "code"
    (code / "inside.txt").write_text("fine\n")
    (code / "inside_link.txt").symlink_to(code / "inside.txt")  # inside: fine
    (code / "key").symlink_to(secret)
    refused = run_cli(tmp_path, "run", str(path), "--plain")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = " ".join(refused.stderr.split())
    assert f"key -> {secret}" in said and "followSymlinks: true" in said, said
    assert "inside_link" not in said
    assert not (tmp_path / "home" / "remotetune.db").exists() or \
        run_cli(tmp_path, "ls", "--json").stdout.strip() == "[]"
    config = yaml.safe_load(path.read_text())
    config["followSymlinks"] = True
    path.write_text(yaml.safe_dump(config))
    followed = run_cli(tmp_path, "run", str(path), "--plain")
    assert followed.returncode == 0, followed.stdout + followed.stderr


def test_a_duplicate_key_in_a_search_space_json_file_is_an_error(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{\n  "lr": {"_type": "choice", "_value": [1]},\n'
                     '  "lr": {"_type": "choice", "_value": [2]}\n}\n')
    path = make_experiment(tmp_path, {}, maxTrialNumber=1)
    config = yaml.safe_load(path.read_text())
    del config["searchSpace"]
    config["searchSpaceFile"] = "space.json"
    path.write_text(yaml.safe_dump(config))
    result = run_cli(tmp_path, "run", str(path), "--plain")
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert f"{space}:3" in said and "duplicate key 'lr'" in said, said


def test_the_controller_itself_refuses_symlinks_out_of_the_code_directory(tmp_path: Path) -> None:
    """Code that drives Controller directly (not through the CLI) cannot skip the check:
    create() refuses before anything is written, and a resumed experiment whose store has
    no manifest yet refuses before its code is frozen."""
    import pytest

    from remotetune.errors import ConfigError
    from tests.test_controller import Rig

    rig = Rig(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("PRIVATE\n")
    (tmp_path / "code" / "leak").symlink_to(secret)
    with pytest.raises(ConfigError, match="followSymlinks"):
        rig.controller().create()
    assert rig.store.experiments() == []
    (tmp_path / "code" / "leak").unlink()
    exp = rig.controller().create()
    (tmp_path / "code" / "leak").symlink_to(secret)
    with pytest.raises(ConfigError, match="leak ->"):
        rig.controller(experiment=exp).run()
    assert rig.store.manifest(exp.id) is None  # nothing of the secret frozen


def test_check_hides_password_variables_from_local_setup_lines(tmp_path: Path) -> None:
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump({"machines": [
        {"name": "here", "local": True, "passwordEnv": "RT_TEST_PW",
         "setup": ['test -z "$RT_TEST_PW" || { echo "leaked $RT_TEST_PW"; exit 1; }']}]}))
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"), RT_TEST_PW=SECRET_PW,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "remotetune.cli", "check", "--machines", str(machines), "--json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET_PW not in result.stdout + result.stderr
