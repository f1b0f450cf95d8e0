"""NNI v1 experiment files, written as NNI documents them, run unchanged.

The files below follow NNI 1.x's documented format (its MNIST example, its remote-mode
example, a custom tuner, and the lab report's own config.yml, seed 002). Each is loaded,
compared with its v2 equivalent, checked against NNI 3.0's own converter
(``nni.experiment.config.convert.to_v2``, run in a separate virtualenv), and the remote one
runs for real against a loopback sshd.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from remotetune.config import ExperimentConfig, convert_file, load_experiment, parse_experiment
from remotetune.config._fields import Source
from remotetune.config._nni_v1 import convert_v1
from remotetune.config._yaml import load_yaml
from remotetune.errors import ConfigError, ConfigErrors
from remotetune.store import Store

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent

MNIST_SPACE = {
    "batch_size": {"_type": "choice", "_value": [16, 32, 64, 128]},
    "hidden_size": {"_type": "choice", "_value": [128, 256, 512, 1024]},
    "lr": {"_type": "choice", "_value": [0.0001, 0.001, 0.01, 0.1]},
    "momentum": {"_type": "uniform", "_value": [0, 1]},
}
LAB_SPACE = {  # the lab's third run (seed 002)
    "initial_lr": {"_type": "loguniform", "_value": [0.001, 0.1]},
    "weight_decay": {"_type": "loguniform", "_value": [1e-6, 5e-5]},
    "cutout": {"_type": "choice", "_value": [0, 4, 8]},
    "grad_clip": {"_type": "choice", "_value": [1.0, 2.0, 3.0]},
    "epochs": {"_type": "choice", "_value": [300, 600]},
    "momentum": {"_type": "uniform", "_value": [0.7, 1.0]},
    "model": {"_type": "choice", "_value": ["resnet50", "densenet121", "resnext50_32x4d"]},
}

V1_LOCAL = """\
authorName: default
experimentName: example_mnist
trialConcurrency: 1
maxExecDuration: 1h
maxTrialNum: 10
#choice: local, remote, pai
trainingServicePlatform: local
searchSpacePath: search_space.json
#choice: true, false
useAnnotation: false
tuner:
  #choice: TPE, Random, Anneal, Evolution, BatchTuner, MetisTuner, GPTuner
  builtinTunerName: TPE
  classArgs:
    #choice: maximize, minimize
    optimize_mode: maximize
trial:
  command: python3 mnist.py
  codeDir: .
  gpuNum: 0
"""

LAB = """\
authorName: lab8
experimentName: cifar10-hpo
trialConcurrency: 1
maxExecDuration: 10h
maxTrialNum: 20
trainingServicePlatform: local
searchSpacePath: search_space.json
useAnnotation: false
logDir: {log_dir}
tuner:
  builtinTunerName: TPE
  classArgs:
    optimize_mode: maximize
trial:
  command: python main.py
  codeDir: .
  gpuNum: 1
localConfig:
  useActiveGpu: true
  maxTrialNumPerGpu: 1
  gpuIndices: "0,1"
"""

V1_REMOTE = """\
authorName: default
experimentName: example_mnist_remote
trialConcurrency: 2
maxExecDuration: 1h
maxTrialNum: 4
trainingServicePlatform: remote
searchSpacePath: search_space.json
useAnnotation: false
tuner:
  builtinTunerName: Random
  classArgs:
    optimize_mode: maximize
assessor:
  builtinAssessorName: Medianstop
  classArgs:
    optimize_mode: maximize
    start_step: 2
trial:
  command: python3 trial.py
  codeDir: .
  gpuNum: 0
remoteConfig:
  reuse: false
machineList:
  - ip: 127.0.0.1
    port: {port}
    username: {user}
    sshKeyPath: {key}
  - ip: 10.1.1.2
    port: 2222
    username: bob
    sshKeyPath: {key}
    gpuIndices: "0,1"
    maxTrialNumPerGpu: 2
    useActiveGpu: true
    pythonPath: /opt/conda/bin
"""

V1_CUSTOM = """\
authorName: default
experimentName: custom_tuner
trialConcurrency: 2
maxExecDuration: 30m
maxTrialNum: 8
trainingServicePlatform: local
searchSpacePath: search_space.json
useAnnotation: false
nniManagerIp: 10.0.0.1
multiThread: false
versionCheck: false
debug: false
logLevel: info
logCollection: none
tuner:
  codeDir: tuners
  classFileName: my_tuner.py
  className: MyTuner
  classArgs:
    optimize_mode: minimize
  gpuIndices: 0
trial:
  command: python3 mnist.py
  codeDir: .
"""

V1_ADVISOR = """\
authorName: default
experimentName: hyperband
trialConcurrency: 2
maxTrialNum: 10
trainingServicePlatform: local
searchSpacePath: search_space.json
useAnnotation: false
advisor:
  builtinAdvisorName: Hyperband
  classArgs:
    optimize_mode: maximize
    R: 60
    eta: 3
trial:
  command: python3 mnist.py
  codeDir: .
  gpuNum: 0
"""

V2_REMOTE = """\
experimentName: example_mnist_remote
searchSpaceFile: search_space.json
trialCommand: python3 trial.py
trialCodeDirectory: .
trialConcurrency: 2
trialGpuNumber: 0
maxTrialNumber: 4
maxExperimentDuration: 1h
tuner:
  name: Random
  classArgs:
    optimize_mode: maximize
assessor:
  name: Medianstop
  classArgs:
    optimize_mode: maximize
    start_step: 2
trainingService:
  platform: remote
  reuseMode: false
  machineList:
    - host: 127.0.0.1
      port: {port}
      user: {user}
      sshKeyFile: {key}
    - host: 10.1.1.2
      port: 2222
      user: bob
      sshKeyFile: {key}
      gpuIndices: [0, 1]
      maxTrialNumberPerGpu: 2
      useActiveGpu: true
      pythonPath: /opt/conda/bin
"""


def exp_dir(tmp_path: Path, space: dict[str, Any] = MNIST_SPACE) -> Path:
    d = tmp_path / "exp"
    (d / "tuners").mkdir(parents=True, exist_ok=True)
    (d / "search_space.json").write_text(json.dumps(space))
    (d / "tuners" / "my_tuner.py").write_text("class MyTuner:\n    pass\n")
    return d


def write(d: Path, name: str, text: str, **fmt: Any) -> Path:
    path = d / name
    path.write_text(textwrap.dedent(text).format(**fmt) if fmt else text)
    return path


def remote_fmt(d: Path, port: int = 22, user: str = "alice") -> dict[str, Any]:
    key = d / "id_test"
    if not key.exists():
        key.write_text("KEY")
    return {"port": port, "user": user, "key": str(key)}


def same_settings(a: ExperimentConfig, b: ExperimentConfig) -> None:
    for f in dataclasses.fields(ExperimentConfig):
        if f.name not in ("file", "raw"):
            assert getattr(a, f.name) == getattr(b, f.name), f.name


# -- loading --------------------------------------------------------------------------------


def test_v1_local_file_reads_as_nni_means_it(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    cfg = load_experiment(write(d, "config.yml", V1_LOCAL))
    assert (cfg.name, cfg.trial_command, cfg.trial_code_directory) == \
        ("example_mnist", "python3 mnist.py", d)
    assert (cfg.trial_concurrency, cfg.max_trial_number, cfg.max_experiment_duration) == \
        (1, 10, 3600.0)
    assert cfg.trial_gpu_number == 0
    assert cfg.tuner.name == "TPE" and cfg.tuner.class_args == {"optimize_mode": "maximize"}
    assert cfg.machines is not None and cfg.machines[0].local and cfg.machines[0].slots == 1
    assert cfg.raw["searchSpace"] == MNIST_SPACE and "trialCommand" in cfg.raw  # v2 in store


def test_the_lab_config_from_the_report(tmp_path: Path) -> None:
    d = exp_dir(tmp_path, LAB_SPACE)
    cfg = load_experiment(write(d, "config.yml", LAB, log_dir="/output/nni"))
    assert cfg.trial_gpu_number == 1 and cfg.max_experiment_duration == 36000.0
    assert cfg.machines is not None
    (local,) = cfg.machines
    assert (local.use_active_gpu, local.max_trials_per_gpu, local.gpu_indices) == \
        (True, 1, (0, 1))
    assert cfg.working_directory == Path("/output/nni") and cfg.home == Path("/output/nni")
    # The lab's local run had `logDir: .` next to `codeDir: .`: the store goes one level down
    cfg = load_experiment(write(d, "config.yml", LAB, log_dir="."))
    assert cfg.working_directory == d and cfg.home == d / ".remotetune"


def test_v1_remote_and_v2_remote_give_the_same_settings(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    fmt = remote_fmt(d)
    v1 = load_experiment(write(d, "v1.yml", V1_REMOTE, **fmt))
    v2 = load_experiment(write(d, "v2.yml", V2_REMOTE, **fmt))
    same_settings(v1, v2)
    assert v1.machines is not None
    second = v1.machines[1]
    assert (second.host, second.port, second.user, second.identity_file) == \
        ("10.1.1.2", 2222, "bob", fmt["key"])
    assert second.python == "/opt/conda/bin/python3" and second.max_trials_per_gpu == 2
    assert v1.assessor is not None and v1.assessor.name == "Medianstop"


def test_custom_tuner_and_advisor(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    cfg = load_experiment(write(d, "custom.yml", V1_CUSTOM))
    assert cfg.tuner.name == "my_tuner.MyTuner"
    assert cfg.tuner.code_directory == str(d / "tuners")
    assert cfg.optimize_mode.value == "minimize"
    cfg = load_experiment(write(d, "hb.yml", V1_ADVISOR))
    assert cfg.tuner.name == "Hyperband" and cfg.tuner.class_args["R"] == 60


def test_keys_that_mean_nothing_here_are_warned_about_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = exp_dir(tmp_path)
    path = write(d, "custom.yml", V1_CUSTOM)
    with caplog.at_level(logging.WARNING, logger="remotetune.config"):
        load_experiment(path)
    text = [r.getMessage() for r in caplog.records]
    lines = path.read_text().splitlines()
    assert not [m for m in text if "useAnnotation" in m]  # false: required in v1, no noise
    for key in ("authorName", "nniManagerIp", "multiThread", "versionCheck", "debug",
                "logLevel", "logCollection", "tuner.gpuIndices"):
        found = [m for m in text if f" {key} " in m]
        assert len(found) == 1, (key, text)
        leaf = key.split(".")[-1]
        line = next(i for i, s in enumerate(lines, 1) if s.strip().startswith(leaf + ":"))
        assert found[0].startswith(f"{path}:{line}: "), found[0]
    fmt = remote_fmt(d)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remotetune.config"):
        load_experiment(write(d, "v1.yml", V1_REMOTE, **fmt))
    assert [m for m in (r.getMessage() for r in caplog.records)
            if "remoteConfig.reuse" in m and "ignores" in m]


@pytest.mark.parametrize(("change", "key", "fix"), [
    ("trainingServicePlatform: local", "trainingServicePlatform: pai",
     "`local` or `remote`"),
    ("useAnnotation: false", "useAnnotation: true", "useAnnotation: false"),
    ("trialConcurrency: 1", "trialConcurrency: 1\nmultiPhase: true", "multiPhase: false"),
    ("trialConcurrency: 1", "trialConcurrency: 1\nmaxTrialNumber: 3", "keep one of them"),
    ("  gpuNum: 0", "  gpuNum: 0\n  image: msranni/nni", "keys of trial: command"),
    ("  builtinTunerName: TPE", "  builtinTunerNam: TPE", "did you mean builtinTunerName?"),
])
def test_v1_errors_name_the_key_as_written(tmp_path: Path, change: str, key: str,
                                           fix: str) -> None:
    d = exp_dir(tmp_path)
    path = write(d, "config.yml", V1_LOCAL.replace(change, key))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert fix in str(info.value), str(info.value)
    assert f"{path}:" in str(info.value)


def test_every_problem_of_a_file_in_one_pass(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    fmt = remote_fmt(d)
    text = (V1_REMOTE.format(**fmt)
            .replace("trialConcurrency: 2", "trialConcurrency: two")
            .replace("maxExecDuration: 1h", "maxExecDuration: 1 hour")
            .replace("  command: python3 trial.py", "  comand: python3 trial.py")
            .replace("    port: 2222", "    port: 99999")
            .replace("    username: bob", "    username: bob\n    passwd: hunter2"))
    path = d / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_experiment(path)
    lines = text.splitlines()

    def line(start: str) -> int:
        return next(i for i, s in enumerate(lines, 1) if s.startswith(start))

    got = {(e.key, e.line) for e in info.value.errors}
    assert got == {
        ("trialConcurrency", line("trialConcurrency")),
        ("maxExecDuration", line("maxExecDuration")),
        ("trial.comand", line("  comand")),
        ("trial.command", line("trial:")),
        ("machineList[1].port", line("    port: 99999")),
        ("machineList[1].passwd", line("    passwd")),
    }, str(info.value)
    assert "hunter2" not in str(info.value)
    assert str(info.value).count(f"\n  {path}:") == 6


def test_passwords_print_the_line_to_paste_and_the_export(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    fmt = remote_fmt(d)
    text = V1_REMOTE.format(**fmt).replace(
        "    username: bob\n", "    username: bob\n    passwd: s3cret-pw\n    passphrase: pp-42\n")
    path = d / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_experiment(path)
    message = str(info.value)
    assert "s3cret-pw" not in message and "pp-42" not in message
    assert "`passwordEnv: RT_PASSWORD_10_1_1_2`" in message
    assert "export RT_PASSWORD_10_1_1_2=" in message
    assert "`passphraseEnv: RT_PASSPHRASE_10_1_1_2`" in message
    # v2 (password:) and machines.yml (named host) alike
    v2 = V2_REMOTE.format(**fmt).replace("      user: bob\n",
                                         "      user: bob\n      password: s3cret-pw\n")
    with pytest.raises(ConfigError, match="passwordEnv: RT_PASSWORD_10_1_1_2"):
        load_experiment(write(d, "v2.yml", v2))
    from remotetune.config import load_machines

    machines = write(d, "m.yml", "machines:\n  - {name: gpu1, host: a.b, passwd: s3cret-pw}\n"
                     "  - {host: gpu2.lab, password: s3cret-pw}\n")
    with pytest.raises(ConfigErrors) as info:
        load_machines(machines)
    message = str(info.value)
    assert "export RT_PASSWORD_GPU1=" in message and "export RT_PASSWORD_GPU2_LAB=" in message
    assert "s3cret-pw" not in message


# -- remotetune convert ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["local", "lab", "remote", "custom", "advisor"])
def test_convert_output_loads_to_the_same_settings(tmp_path: Path, name: str) -> None:
    d = exp_dir(tmp_path, LAB_SPACE if name == "lab" else MNIST_SPACE)
    text = {"local": V1_LOCAL, "lab": LAB.format(log_dir="nni-out"),
            "remote": V1_REMOTE.format(**remote_fmt(d)), "custom": V1_CUSTOM,
            "advisor": V1_ADVISOR}[name]
    path = write(d, "config.yml", text)
    result = subprocess.run([sys.executable, "-m", "remotetune.cli", "convert", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    converted = yaml.safe_load(result.stdout)
    assert converted["searchSpaceFile"] == "search_space.json"  # still a file reference
    assert not {"authorName", "trial", "searchSpacePath", "useAnnotation"} & set(converted)
    v2 = write(d, "v2.yml", result.stdout)
    same_settings(load_experiment(path), load_experiment(v2))


def test_convert_turns_secrets_into_env_names(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    text = V1_REMOTE.format(**remote_fmt(d)).replace(
        "    username: bob\n", "    username: bob\n    passwd: s3cret-pw\n")
    result = convert_file(write(d, "config.yml", text))
    assert "s3cret-pw" not in result.text
    entry = result.data["trainingService"]["machineList"][1]
    assert entry["passwordEnv"] == "RT_PASSWORD_10_1_1_2" and "passwd" not in entry
    assert result.secret_variables == ("RT_PASSWORD_10_1_1_2",)


# -- NNI's own converter agrees -------------------------------------------------------------


def _nni_python() -> Path | None:
    for candidate in (os.environ.get("REMOTETUNE_NNI_PYTHON"), ROOT / ".nni-venv/bin/python",
                      "/tmp/nni-venv/bin/python"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_nni_converter_and_remotetune_agree_on_every_key(tmp_path: Path) -> None:
    """NNI 3.0's ``to_v2`` on each v1 file: the same v2 keys and values as remotetune's
    conversion, and loaded by remotetune's v2 reader, the same settings as the v1 file."""
    python = _nni_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("NNI 3.0's virtualenv is missing: scripts/test.sh installs .nni-venv")
        pytest.skip("no NNI 3.0 virtualenv (.nni-venv, /tmp/nni-venv or REMOTETUNE_NNI_PYTHON)")
    d = exp_dir(tmp_path)
    files = {
        "local": write(d, "local.yml", V1_LOCAL),
        "lab": write(d, "lab.yml", LAB, log_dir=str(tmp_path / "out")),
        "remote": write(d, "remote.yml", V1_REMOTE, **remote_fmt(d)),
        "custom": write(d, "custom.yml", V1_CUSTOM),
        "advisor": write(d, "advisor.yml", V1_ADVISOR),
    }
    result = subprocess.run([str(python), str(Path(__file__).parent / "nni_to_v2.py"),
                             *map(str, files.values())], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    nni = json.loads(result.stdout.strip().splitlines()[-1])  # NNI logs to stdout too
    for name, path in files.items():
        theirs = nni[str(path)]
        loaded = load_yaml(path.read_text(), file=str(path))
        ours, _ = convert_v1(loaded.data, Source(str(path), d, loaded.lines))
        # The one difference: v1 requires useAnnotation, and `false` is what remotetune
        # does anyway, so it is dropped without the warning the other ignored keys get.
        assert theirs.pop("useAnnotation") is False
        assert ours == theirs, (name, ours, theirs)
        same_settings(load_experiment(path), parse_experiment(theirs, file=str(path),
                                                              base_dir=d))


# -- running them ---------------------------------------------------------------------------


def _trial_code(d: Path) -> None:
    shutil.copy(DATA / "trial_basic.py", d / "trial.py")
    (d / "search_space.json").write_text(json.dumps({"x": {"_type": "uniform",
                                                           "_value": [0.1, 1.0]}}))


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REMOTETUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "remotetune.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_log_dir_holds_the_store_and_the_cli_finds_it(tmp_path: Path) -> None:
    """The lab's Bitahub set-up: `logDir: /output/nni` (here under tmp_path), v1 file run
    unchanged, exit 0; ls/best/show/resume find the experiment from the default home."""
    d = exp_dir(tmp_path)
    _trial_code(d)
    out = tmp_path / "output" / "nni"
    config = write(d, "config.yml", LAB.format(log_dir=str(out))
                   .replace("python main.py", f"{sys.executable} trial.py")
                   .replace("  gpuNum: 1\n", "").replace("maxTrialNum: 20", "maxTrialNum: 3")
                   .replace("builtinTunerName: TPE", "builtinTunerName: Random"))
    result = _cli(tmp_path, "run", str(config), "--plain")
    assert result.returncode == 0, result.stderr
    assert f"store {out / 'remotetune.db'}" in result.stdout
    assert f"REMOTETUNE_HOME={out} remotetune ls" in result.stdout
    with Store(out / "remotetune.db") as store:
        (exp,) = store.experiments()
        assert len(store.trials(exp.id)) == 3
    assert not (tmp_path / "home" / "remotetune.db").exists()  # only the pointer is there
    listed = json.loads(_cli(tmp_path, "ls", "--json").stdout)
    assert [(e["id"], e["home"]) for e in listed] == [(exp.id, str(out))]
    best = _cli(tmp_path, "best", exp.id, "--json")
    assert best.returncode == 0 and json.loads(best.stdout)["final"] is not None
    resumed = _cli(tmp_path, "resume", exp.id, "--plain", "--max-trials", "4")
    assert resumed.returncode == 0, resumed.stderr
    with Store(out / "remotetune.db") as store:
        assert len(store.trials(exp.id)) == 4


def test_log_dir_dot_keeps_the_store_out_of_the_code(tmp_path: Path) -> None:
    d = exp_dir(tmp_path)
    _trial_code(d)
    config = write(d, "config.yml", V1_LOCAL.replace("python3 mnist.py",
                                                     f"{sys.executable} trial.py")
                   .replace("maxTrialNum: 10", "maxTrialNum: 2")
                   .replace("useAnnotation: false", "useAnnotation: false\nlogDir: ."))
    result = _cli(tmp_path, "run", str(config), "--plain")
    assert result.returncode == 0, result.stderr
    with Store(d / ".remotetune" / "remotetune.db") as store:
        (exp,) = store.experiments()
        assert len(store.trials(exp.id)) == 2
        manifest = json.loads(store.manifest(exp.id) or "{}")
    paths = [entry[0] for entry in manifest["entries"]]
    assert "trial.py" in paths and not [p for p in paths if ".remotetune" in p], paths


@pytest.mark.ssh
@pytest.mark.timeout(180)
def test_v1_remote_file_runs_over_ssh(tmp_path: Path, ssh_host: Any) -> None:
    """NNI's remote-mode v1 file, machineList and all, run against a real sshd. Settings NNI
    has no key for (known_hosts file, workdir) use remotetune's keys in the same entry."""
    import pwd

    from sshd import TEST_USER

    d = exp_dir(tmp_path)
    _trial_code(d)
    workdir = f"~/.remotetune-test/{ssh_host.server_id}"
    text = V1_REMOTE.format(port=ssh_host.port, user=TEST_USER, key=ssh_host.client_key)
    text = text[:text.index("  - ip: 10.1.1.2")]  # one machine: the loopback sshd
    text = text.replace("    sshKeyPath:", f"    knownHostsFile: {ssh_host.known_hosts}\n"
                        f"    useAgent: false\n    workdir: {workdir}\n    sshKeyPath:")
    config = write(d, "config.yml", text)
    try:
        result = _cli(tmp_path, "run", str(config), "--plain", timeout=150)
        assert result.returncode == 0, result.stdout + result.stderr
        with Store(tmp_path / "home" / "remotetune.db") as store:
            (exp,) = store.experiments()
            trials = store.trials(exp.id)
        assert len(trials) == 4  # Medianstop may stop a poor one: finished either way
        assert {t.status.value for t in trials} <= {"SUCCEEDED", "EARLY_STOPPED"}, trials
        assert {t.host for t in trials} == {f"127.0.0.1:{ssh_host.port}"}
    finally:
        shutil.rmtree(Path(pwd.getpwnam(TEST_USER).pw_dir) / ".remotetune-test" /
                      ssh_host.server_id, ignore_errors=True)


def test_docs_list_every_v1_key() -> None:
    from remotetune.config import _nni_v1 as v1

    docs = (ROOT / "docs" / "config.md").read_text()
    section = docs[docs.index("## NNI v1 files"):docs.index("## Machines file")]
    keys = (*v1.V1_KEYS, *v1.TRIAL_KEYS, *v1.LOCAL_KEYS, *v1.MACHINE_RENAMED,
            "builtinTunerName", "builtinAssessorName", "builtinAdvisorName", "classFileName",
            "includeIntermediateResults", "passwd", "passphrase", "pythonPath", "reuse")
    for key in keys:
        assert f"{key}`" in section or f"`{key}." in section, key  # `a.key`, `key.b`
