"""The `slurm:` mapping of a machines.yml entry: values, round trip and every error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remotetune.config import (
    HOST_KEYS,
    NNI_HOST_KEYS,
    host_to_public_dict,
    load_machines,
    parse_machines,
)
from remotetune.errors import ConfigError
from remotetune.model import SlurmSpec

REPO = Path(__file__).resolve().parent.parent


def machines(tmp_path: Path, slurm: str) -> Path:
    path = tmp_path / "machines.yml"
    path.write_text("machines:\n  - name: hpc\n    host: login.hpc\n    slurm:\n"
                    + textwrap.indent(textwrap.dedent(slurm), "      "))
    return path


def error(tmp_path: Path, slurm: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_machines(machines(tmp_path, slurm))
    return info.value


def test_every_key(tmp_path: Path) -> None:
    (spec,) = load_machines(machines(tmp_path, """\
        partition: gpu
        account: proj42
        qos: normal
        timeLimit: 2h
        maxJobs: 32
        sbatchArgs: ["--mem=16G", "--qos=high"]
        setup:
          - module load cuda/12.1
    """))
    assert spec.slurm == SlurmSpec(partition="gpu", account="proj42", qos="normal",
                                   time_limit=7200.0, max_jobs=32,
                                   sbatch_args=("--mem=16G", "--qos=high"),
                                   setup=("module load cuda/12.1",))
    again = parse_machines([host_to_public_dict(spec)])
    assert again == (spec,)


def test_plain_hosts_have_none_and_empty_mapping_takes_defaults(tmp_path: Path) -> None:
    (plain,) = parse_machines([{"host": "gpu1"}])
    assert plain.slurm is None
    (bare,) = parse_machines([{"host": "login", "slurm": {}}])
    assert bare.slurm == SlurmSpec()
    assert host_to_public_dict(bare)["slurm"] == {}
    assert parse_machines([host_to_public_dict(bare)]) == (bare,)


def test_example_file_has_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("id_ed25519", "id_gpu", "id_bitahub", "config"):  # the keys it names
        (tmp_path / ".ssh").mkdir(exist_ok=True)
        (tmp_path / ".ssh" / name).write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path))
    specs = {s.name: s for s in load_machines(REPO / "machines.example.yml")}
    assert specs["hpc"].slurm == SlurmSpec(partition="gpu", account="proj42", max_jobs=32,
                                           sbatch_args=("--qos=normal",))
    assert specs["hpc"].workdir == "/scratch/alice/remotetune"


@pytest.mark.parametrize(("slurm", "key", "line", "fix"), [
    ("partiton: gpu\n", "machines[0].slurm.partiton", 5, "did you mean partition?"),
    ("time: 1h\n", "machines[0].slurm.time", 5, "did you mean timeLimit?"),
    ("timeLimit: soon\n", "machines[0].slurm.timeLimit", 5, '"30s"'),
    ("timeLimit: 0\n", "machines[0].slurm.timeLimit", 5, "timeLimit"),
    ("maxJobs: 0\n", "machines[0].slurm.maxJobs", 5, "maxJobs: 32"),
    ("sbatchArgs: --mem=1G\n", "machines[0].slurm.sbatchArgs", 5, "one per item"),
    ("sbatchArgs: [mem=1G]\n", "machines[0].slurm.sbatchArgs", 5, "joined by `=`"),
    ("sbatchArgs: [--gres=gpu:2]\n", "machines[0].slurm.sbatchArgs", 5, "trialGpuNumber"),
    ("sbatchArgs: [-o, x.out]\n", "machines[0].slurm.sbatchArgs", 5, "trial directory"),
    ("setup: {a: 1}\n", "machines[0].slurm.setup", 5, "shell lines"),
    ("partition: [a]\n", "machines[0].slurm.partition", 5, "partition: gpu"),
])
def test_errors_name_file_key_line_and_fix(
    tmp_path: Path, slurm: str, key: str, line: int, fix: str
) -> None:
    err = error(tmp_path, slurm)
    text = str(err)
    assert err.key == key, text
    assert err.line == line, text
    assert f"machines.yml:{line}: {key}: host 0 'hpc': " in text, text
    assert fix in text, text


def test_slurm_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "machines.yml"
    path.write_text("machines:\n  - host: login\n    slurm: gpu\n")
    with pytest.raises(ConfigError) as info:
        load_machines(path)
    assert info.value.key == "machines[0].slurm" and info.value.line == 3
    assert "expected a mapping of Slurm keys" in str(info.value)


def test_nni_machine_list_has_no_slurm_key() -> None:
    assert "slurm" in HOST_KEYS and "slurm" not in NNI_HOST_KEYS
