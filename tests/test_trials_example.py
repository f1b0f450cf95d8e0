"""The example trials under trials/: each runs as a real process, by hand and under the protocol.

The MNIST trial trains for real with a tiny budget (one or two epochs of a small network), so
each of its runs costs some seconds of CPU, most of it importing torch. The ``mnist_runs``
fixture starts them all at once when the first MNIST test asks; each test then waits for and
checks its own run, so the file takes about as long as the slowest run, not their sum.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remotetune.config import load_experiment
from remotetune.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
TRIALS = ROOT / "trials"
MNIST = TRIALS / "mnist" / "mnist.py"
FINAL_LINE = re.compile(r"^final validation accuracy ([0-9.]+)$", re.MULTILINE)
SMALL = ["--channels", "8", "--conv-size", "3", "--hidden-size", "64", "--batch-size", "64"]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a trial run by hand: no REMOTETUNE_* variables, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTETUNE_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _protocol_env(trial_dir: Path, params: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment remotetune gives a trial, with its parameters file written."""
    (trial_dir / "parameters.json").write_text(
        json.dumps({"parameter_id": 0, "parameters": params}), encoding="utf-8"
    )
    return _clean_env(
        REMOTETUNE_EXPERIMENT_ID="exp1",
        REMOTETUNE_TRIAL_ID="trialA",
        REMOTETUNE_SEQUENCE_ID="3",
        REMOTETUNE_TRIAL_DIR=str(trial_dir),
        **extra,
    )


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def _metrics(trial_dir: Path) -> list[dict[str, Any]]:
    lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_search_space_parses_and_samples_valid_hyperparameters() -> None:
    path = TRIALS / "mnist" / "search_space.json"
    space = SearchSpace.parse(json.loads(path.read_text()), file=str(path))
    assert set(space.names) == {
        "lr", "momentum", "dropout_rate", "conv_size", "channels", "hidden_size", "batch_size",
    }
    assert space["lr"].type.value == "loguniform"


@pytest.mark.parametrize("name", ["config_digits.yml", "config_mnist.yml"])
def test_experiment_files_load(name: str) -> None:
    config = load_experiment(TRIALS / "mnist" / name)
    assert config.trial_code_directory == TRIALS / "mnist"
    assert config.trial_command.startswith("python3 mnist.py --dataset ")
    assert config.optimize_mode.value == "maximize"
    if name == "config_digits.yml":
        assert config.trial_concurrency == 2
        assert config.max_trial_number is not None and config.max_trial_number >= 12


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Started:
    """One trial process writing its output to files (pipes could fill while nobody reads)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, logs: Path) -> None:
        self.cwd = cwd
        logs.mkdir(parents=True, exist_ok=True)
        self._out, self._err = logs / "stdout", logs / "stderr"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, *args], env=env, cwd=cwd, stdout=out, stderr=err
            )

    def wait(self, timeout: float = 180) -> Finished:
        returncode = self._proc.wait(timeout)
        return Finished(returncode, self._out.read_text(), self._err.read_text())

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def _fake_mnist(data_dir: Path, n: int = 240) -> None:
    """A stand-in for the downloaded data, in torchvision's raw layout: ``n`` 28x28 images,
    each a horizontal bar whose row is its label, so one epoch learns something."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = bytes(i % 10 for i in range(n))
    images = bytearray(n * 28 * 28)
    for i, label in enumerate(labels):
        start = i * 784 + (3 + 2 * label) * 28
        images[start + 4 : start + 24] = b"\xff" * 20
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", 0x803, (n, 28, 28), bytes(images))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", 0x801, (n,), labels)


def _write_idx(path: Path, magic: int, shape: tuple[int, ...], data: bytes) -> None:
    """A file in MNIST's IDX format (big-endian magic and sizes, then unsigned bytes)."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in shape)
    path.write_bytes(header + data)


PROTOCOL_PARAMS = {"lr": 0.1, "momentum": 0.8, "dropout_rate": 0.2, "conv_size": 3,
                   "channels": 8, "hidden_size": 64, "batch_size": 64, "epochs": 2}
#: An unroutable proxy makes any download fail fast, as on a host without internet.
OFFLINE = {name: "http://127.0.0.1:9" for name in
           ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Started]]:
    """Every MNIST run of this file, started together: name -> the running process."""
    base = tmp_path_factory.mktemp("mnist")
    dirs = {name: base / name for name in
            ("standalone", "protocol", "unknown", "torchvision", "offline")}
    for d in dirs.values():
        d.mkdir()
    _fake_mnist(base / "torchvision-data")
    specs: dict[str, tuple[list[str], dict[str, str]]] = {
        "standalone": (["--dataset", "digits", "--epochs", "1", *SMALL], _clean_env()),
        "protocol": (["--dataset", "digits"], _protocol_env(dirs["protocol"], PROTOCOL_PARAMS)),
        "unknown": ([], _protocol_env(dirs["unknown"], {"learning_rate": 0.1})),
        "torchvision": (["--dataset", "mnist", "--epochs", "1", *SMALL],
                        _clean_env(REMOTETUNE_DATA_DIR=str(base / "torchvision-data"))),
        "offline": (["--dataset", "mnist", "--epochs", "1"],
                    _clean_env(REMOTETUNE_DATA_DIR=str(base / "offline-data"), **OFFLINE)),
    }
    runs: dict[str, Started] = {}
    try:
        for name, (args, env) in specs.items():
            runs[name] = Started([str(MNIST), *args], env, dirs[name], base / "logs" / name)
        yield runs
    finally:
        for run in runs.values():
            run.kill()


def test_mnist_standalone_on_digits_prints_accuracy(mnist_runs: dict[str, Started]) -> None:
    run = mnist_runs["standalone"]
    proc = run.wait()
    assert proc.returncode == 0, proc.stderr
    match = FINAL_LINE.search(proc.stdout)
    assert match is not None, proc.stdout
    assert 0.3 < float(match.group(1)) <= 1.0  # chance is 0.1; one epoch gets well past it
    assert "1437 train / 360 validation images of 8x8" in proc.stdout
    assert "device cpu, 1 thread(s)" in proc.stdout
    assert not list(run.cwd.iterdir())  # by hand it writes nothing


def test_mnist_reports_through_the_trial_api(mnist_runs: dict[str, Started]) -> None:
    run = mnist_runs["protocol"]
    proc = run.wait()
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stdout and "conv_size=3" in proc.stdout
    reports = _metrics(run.cwd)
    assert [r["type"] for r in reports] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert [r["seq"] for r in reports] == [0, 1, 2]
    final = reports[-1]["value"]
    assert set(final) == {"default", "loss"}
    assert 0.5 < final["default"] <= 1.0 and final["loss"] > 0
    assert final["default"] == reports[1]["value"]  # the final is the last epoch's accuracy


def test_mnist_rejects_an_unknown_hyperparameter(mnist_runs: dict[str, Started]) -> None:
    run = mnist_runs["unknown"]
    proc = run.wait()
    assert proc.returncode == 2
    assert "unknown hyperparameter(s) learning_rate" in proc.stderr
    assert "lr" in proc.stderr
    assert not (run.cwd / "metrics.jsonl").exists()


def test_mnist_trains_on_torchvision_mnist_files(mnist_runs: dict[str, Started]) -> None:
    proc = mnist_runs["torchvision"].wait()
    assert proc.returncode == 0, proc.stderr
    assert "dataset mnist: 200 train / 40 validation images of 28x28" in proc.stdout
    match = FINAL_LINE.search(proc.stdout)
    assert match is not None and 0.0 <= float(match.group(1)) <= 1.0, proc.stdout


def test_mnist_explains_missing_data_when_offline(mnist_runs: dict[str, Started]) -> None:
    run = mnist_runs["offline"]
    proc = run.wait()
    assert proc.returncode == 2
    assert f"MNIST is not in {run.cwd.parent / 'offline-data'}" in proc.stderr
    assert "--dataset digits" in proc.stderr


def test_sleep_trial_reports_the_sum_of_its_parameters(tmp_path: Path) -> None:
    params = {"x": 1.5, "model": {"_name": "b", "z": 2}, "flag": "on",
              "seconds": 0.05, "steps": 2}
    proc = _run([str(TRIALS / "sleep" / "sleep.py")], _protocol_env(tmp_path, params),
                cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert [(r["type"], r["value"]) for r in _metrics(tmp_path)] == [
        ("PERIODICAL", 1.75), ("PERIODICAL", 3.5), ("FINAL", 3.5),
    ]


def test_sleep_trial_exit_code_and_no_final(tmp_path: Path) -> None:
    proc = _run([str(TRIALS / "sleep" / "sleep.py"), "--seconds", "0", "--steps", "1",
                 "--no-final"], _protocol_env(tmp_path, {"exit_code": 3}), cwd=tmp_path,
                timeout=30)
    assert proc.returncode == 3
    assert [r["type"] for r in _metrics(tmp_path)] == ["PERIODICAL"]


def test_sleep_trial_by_hand(tmp_path: Path) -> None:
    proc = _run([str(TRIALS / "sleep" / "sleep.py"), "--seconds", "0.01"], _clean_env(),
                cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "final 0; exit 0" in proc.stdout


def test_gpu_probe_records_its_gpus_and_ids(tmp_path: Path) -> None:
    env = _protocol_env(tmp_path, {"seconds": 0.01}, CUDA_VISIBLE_DEVICES="2,GPU-abc")
    proc = _run([str(TRIALS / "gpu_probe" / "gpu_probe.py")], env, cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "gpu_probe.json").read_text())
    assert record["cuda_visible_devices"] == "2,GPU-abc"
    assert record["gpus"] == [2, "GPU-abc"]
    assert record["default"] == 2
    assert (record["trial_id"], record["experiment_id"], record["sequence_id"]) == (
        "trialA", "exp1", 3,
    )
    assert record["started_at"] <= record["ended_at"]
    final = _metrics(tmp_path)[-1]
    assert final["type"] == "FINAL" and final["value"] == record


def test_gpu_probe_without_gpus(tmp_path: Path) -> None:
    proc = _run([str(TRIALS / "gpu_probe" / "gpu_probe.py"), "--seconds", "0"],
                _protocol_env(tmp_path, {}), cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "gpu_probe.json").read_text())
    assert (record["cuda_visible_devices"], record["gpus"], record["default"]) == (None, [], 0)
