"""Experiment and machines files: values, defaults, round trips, and every error.

Each error test checks the four things a user needs: the file, the key, the line, the fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import textwrap
from pathlib import Path

import pytest

from remotetune.config import (
    EXPERIMENT_KEYS,
    HOST_KEYS,
    NNI_HOST_KEYS,
    NNI_IGNORED_KEYS,
    ExperimentConfig,
    TunerSpec,
    host_to_public_dict,
    load_experiment,
    load_experiment_then_check,
    load_machines,
    local_machine,
    parse_duration,
    parse_experiment,
    parse_machines,
)
from remotetune.errors import ConfigError, SearchSpaceError
from remotetune.model import HostSpec, OptimizeMode

REPO = Path(__file__).resolve().parent.parent

SPACE = """\
searchSpace:
  lr: {_type: loguniform, _value: [0.0001, 0.1]}
  batch: {_type: choice, _value: [16, 32]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def experiment(tmp_path: Path, body: str, *, space: str = SPACE, name: str = "exp.yml") -> Path:
    """An experiment file: the search space, then ``body`` (line 4 is body's first line)."""
    return write(tmp_path / name, space + textwrap.dedent(body))


def exp_error(tmp_path: Path, body: str, **kwargs: str) -> ConfigError:
    path = experiment(tmp_path, body, **kwargs)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    return info.value


def check(err: ConfigError, *, file: Path | str, key: str, line: int, fix: str) -> None:
    text = str(err)
    assert err.file is not None and Path(err.file).name == Path(file).name, text
    assert err.key == key, text
    assert err.line == line, text
    assert f"{Path(file).name}:{line}: {key}: " in text, text
    assert fix in text, text


# -- experiment file: values and defaults ---------------------------------------------------


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    cfg = load_experiment(experiment(tmp_path, "trialCommand: python3 train.py\n"
                                               "trialConcurrency: 2\n"))
    assert cfg.file == str(tmp_path / "exp.yml")
    assert cfg.name == "exp"
    assert cfg.trial_command == "python3 train.py"
    assert cfg.trial_code_directory == tmp_path
    assert cfg.trial_concurrency == 2
    assert cfg.search_space.names == ("lr", "batch")
    assert (cfg.max_trial_number, cfg.max_experiment_duration, cfg.max_trial_duration) == (
        None, None, None)
    assert cfg.trial_gpu_number is None
    assert cfg.tuner == TunerSpec("TPE", {"optimize_mode": "maximize"})
    assert cfg.optimize_mode is OptimizeMode.MAXIMIZE
    assert cfg.assessor is None
    assert cfg.poll_interval == 0.02
    assert cfg.host_grace_period == 300.0
    assert cfg.max_trial_retries == 2
    assert cfg.retry_failed_trials == 0
    assert cfg.kill_grace_period == 10.0
    assert cfg.seed is None
    assert cfg.machines is None


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "tuners").mkdir()
    cfg = load_experiment(experiment(tmp_path, """\
        experimentName: mnist-lr
        trialCommand: python3 mnist.py --epochs 3
        trialCodeDirectory: code
        trialConcurrency: 3
        maxTrialNumber: 20
        maxExperimentDuration: 2h
        maxTrialDuration: 90
        trialGpuNumber: 0
        tuner:
          className: my_tuner.MyTuner
          codeDirectory: tuners
          classArgs: {optimize_mode: minimize, seed: 3}
        assessor:
          name: Medianstop
          classArgs: {optimize_mode: minimize, start_step: 2}
        pollInterval: 0.5
        hostGracePeriod: 5m
        maxTrialRetries: 0
        retryFailedTrials: 1
        killGracePeriod: 3s
        seed: 42
        """))
    assert cfg.name == "mnist-lr"
    assert cfg.trial_code_directory == tmp_path / "code"
    assert (cfg.max_trial_number, cfg.max_experiment_duration, cfg.max_trial_duration) == (
        20, 7200.0, 90.0)
    assert cfg.trial_gpu_number == 0
    assert cfg.tuner == TunerSpec("my_tuner.MyTuner", {"optimize_mode": "minimize", "seed": 3},
                                  str(tmp_path / "tuners"))
    assert cfg.optimize_mode is OptimizeMode.MINIMIZE
    assert cfg.assessor == TunerSpec("Medianstop", {"optimize_mode": "minimize",
                                                    "start_step": 2})
    assert (cfg.poll_interval, cfg.host_grace_period, cfg.kill_grace_period) == (0.5, 300.0, 3.0)
    assert (cfg.max_trial_retries, cfg.retry_failed_trials, cfg.seed) == (0, 1, 42)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("1.5h", 5400.0), ("2d", 172800.0), (" 2 H ", 7200.0),
    ("90", 90.0), (45, 45.0), (0.5, 0.5), ("0s", 0.0),
])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "-5s", "1.5x", "inf", "", True, -1])
def test_bad_durations_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(bad, file="e.yml", key="maxTrialDuration", line=7)  # type: ignore[arg-type]
    assert str(info.value).startswith("e.yml:7: maxTrialDuration: ")
    assert '"10m"' in str(info.value)


def test_search_space_file_json_and_yaml(tmp_path: Path) -> None:
    write(tmp_path / "spaces" / "space.json", '{"lr": {"_type": "uniform", "_value": [0, 1]}}')
    write(tmp_path / "space.yaml", "units: {_type: choice, _value: [64, 128]}\n")
    cfg = load_experiment(experiment(tmp_path, """\
        searchSpaceFile: spaces/space.json
        trialCommand: 'true'
        trialConcurrency: 1
        """, space=""))
    assert cfg.search_space.names == ("lr",)
    cfg = load_experiment(experiment(tmp_path, """\
        searchSpaceFile: space.yaml
        trialCommand: 'true'
        trialConcurrency: 1
        """, space=""))
    assert cfg.search_space.names == ("units",)
    assert cfg.raw["searchSpace"] == {"units": {"_type": "choice", "_value": [64, 128]}}
    assert "searchSpaceFile" not in cfg.raw


def test_raw_is_json_and_parses_back_to_the_same_config(tmp_path: Path) -> None:
    write(tmp_path / "space.json", '{"lr": {"_type": "uniform", "_value": [0, 1]}}')
    cfg = load_experiment(experiment(tmp_path, """\
        experimentName: 2024-01-01
        searchSpaceFile: space.json
        trialCommand: python3 t.py
        trialConcurrency: 2
        maxTrialDuration: 10m
        tuner: {name: Random, classArgs: {optimize_mode: minimize}}
        """, space=""))
    assert cfg.name == "2024-01-01"  # dates stay strings
    raw = json.loads(json.dumps(cfg.raw))
    assert raw["trialCodeDirectory"] == str(tmp_path)
    again = parse_experiment(raw, base_dir=Path("/"))
    assert again == dataclasses.replace(cfg, file=None)


def test_parse_experiment_errors_have_no_line(tmp_path: Path) -> None:
    data = {"searchSpace": {"x": {"_type": "choice", "_value": [1]}}, "trialCommand": "t",
            "trialConcurrency": "four"}
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, file="api.yml", base_dir=tmp_path)
    assert info.value.line is None
    assert str(info.value).startswith("api.yml: trialConcurrency: ")


# -- experiment file: errors ----------------------------------------------------------------


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurency: 2\n")
    check(err, file="exp.yml", key="trialConcurency", line=5,
          fix="did you mean trialConcurrency?")


def test_wrong_type_names_key_and_line(tmp_path: Path) -> None:
    err = exp_error(tmp_path, 'trialCommand: t\ntrialConcurrency: "four"\n')
    check(err, file="exp.yml", key="trialConcurrency", line=5, fix="trialConcurrency: 4")
    assert "'four' (a string)" in str(err)


@pytest.mark.parametrize(("body", "key", "line", "fix"), [
    ("trialCommand: t\ntrialConcurrency: 0\n", "trialConcurrency", 5, "trialConcurrency: 4"),
    ("trialCommand: t\n", "trialConcurrency", 1, "add `trialConcurrency: 4`"),
    ("trialConcurrency: 1\n", "trialCommand", 1, "add `trialCommand: python3 train.py`"),
    ("trialCommand: t\ntrialConcurrency: 1\nmaxTrialNumber: -3\n", "maxTrialNumber", 6,
     "maxTrialNumber: 100"),
    ("trialCommand: t\ntrialConcurrency: 1\nmaxTrialDuration: 0\n", "maxTrialDuration", 6,
     '"30m"'),
    ("trialCommand: t\ntrialConcurrency: 1\nmaxExperimentDuration: soon\n",
     "maxExperimentDuration", 6, '"10m"'),
    ("trialCommand: t\ntrialConcurrency: 1\ntrialGpuNumber: -1\n", "trialGpuNumber", 6,
     "trialGpuNumber: 1"),
    ("trialCommand: t\ntrialConcurrency: 1\npollInterval: 0\n", "pollInterval", 6,
     "pollInterval: 0.5"),
    ("trialCommand: t\ntrialConcurrency: 1\nseed: -1\n", "seed", 6, "seed: 42"),
    ("trialCommand: t\ntrialConcurrency: 1\nmaxTrialRetries: lots\n", "maxTrialRetries", 6,
     "maxTrialRetries: 1"),
    ("trialCommand: [a, b]\ntrialConcurrency: 1\n", "trialCommand", 4, "trialCommand:"),
    ("trialCommand: t\ntrialConcurrency: 1\ntuner: TPE\n", "tuner", 6, "key: value"),
    ("trialCommand: t\ntrialConcurrency: 1\nsearchSpaceFile: s.json\n", "searchSpaceFile", 6,
     "keep exactly one"),
    ("trialCommand: t\ntrialConcurrency: 1\nsearchSpacePath: s.json\n", "searchSpacePath", 6,
     "use searchSpaceFile"),
    ("trialCommand: t\ntrialConcurrency: 1\nuseAnnotation: true\n", "useAnnotation", 6,
     "useAnnotation: false"),
    ("trialCommand: t\ntrialConcurrency: 1\ntuner: {name: TPE}\nadvisor: {name: BOHB}\n",
     "advisor", 7, "keep one of the two keys"),
])
def test_experiment_errors(tmp_path: Path, body: str, key: str, line: int, fix: str) -> None:
    check(exp_error(tmp_path, body), file="exp.yml", key=key, line=line, fix=fix)


def test_missing_search_space(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: 1\n", space="")
    check(err, file="exp.yml", key="searchSpaceFile", line=1, fix="searchSpaceFile:")


def test_missing_search_space_file_names_the_resolved_path(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "searchSpaceFile: nope/space.json\ntrialCommand: t\n"
                              "trialConcurrency: 1\n", space="")
    check(err, file="exp.yml", key="searchSpaceFile", line=1, fix="fix the path")
    assert str(tmp_path / "nope" / "space.json") in str(err)


def test_missing_code_directory(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: 1\ntrialCodeDirectory: src\n")
    check(err, file="exp.yml", key="trialCodeDirectory", line=6, fix="create the directory")
    assert str(tmp_path / "src") in str(err)


def test_inline_search_space_error_points_at_the_parameter(tmp_path: Path) -> None:
    space = """\
    searchSpace:
      lr: {_type: uniform, _value: [0, 1]}
      model:
        _type: choice
        _value:
          - _name: conv
            kernel: {_type: gaussian, _value: [3, 5]}
    """
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: 1\n",
                    space=textwrap.dedent(space))
    assert isinstance(err, SearchSpaceError)
    assert err.key is not None and err.key.startswith("searchSpace.model")
    assert err.key.endswith("kernel")
    assert err.line == 7
    assert f"exp.yml:7: {err.key}: " in str(err)
    assert err.hint


def test_search_space_file_error_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "space.json", """\
    {
      "lr": {"_type": "uniform", "_value": [0, 1]},
      "wd": {"_type": "loguniform", "_value": [0, 0.1]}
    }
    """)
    err = exp_error(tmp_path, "searchSpaceFile: space.json\ntrialCommand: t\n"
                              "trialConcurrency: 1\n", space="")
    assert isinstance(err, SearchSpaceError)
    check(err, file="space.json", key="wd", line=3, fix="positive low bound")


def test_broken_json_search_space_file(tmp_path: Path) -> None:
    write(tmp_path / "space.json", '{\n  "lr": {"_type": "uniform", "_value": [0, 1]},\n}\n')
    err = exp_error(tmp_path, "searchSpaceFile: space.json\ntrialCommand: t\n"
                              "trialConcurrency: 1\n", space="")
    assert err.file == str(tmp_path / "space.json") and err.line == 3
    assert "trailing comma" in str(err)


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: [1\n")
    assert err.file == str(tmp_path / "exp.yml") and err.line is not None and err.line >= 5
    assert "not valid YAML" in str(err) and "indentation" in str(err)


def test_duplicate_key(tmp_path: Path) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: 1\ntrialConcurrency: 2\n")
    check(err, file="exp.yml", key="trialConcurrency", line=6, fix="delete one")
    assert "line 5" in str(err)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the file is empty"):
        load_experiment(write(tmp_path / "empty.yml", "# nothing\n"))
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_experiment(tmp_path / "nope.yml")
    assert info.value.file == str(tmp_path / "nope.yml")


def test_ignored_nni_keys_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = "trialCommand: t\ntrialConcurrency: 1\n" + "".join(
        f"{key}: {'false' if key in ('useAnnotation', 'debug') else 'x'}\n"
        for key in NNI_IGNORED_KEYS)
    with caplog.at_level(logging.WARNING, logger="remotetune.config"):
        load_experiment(experiment(tmp_path, body))
    for key in NNI_IGNORED_KEYS:
        assert any(key in rec.getMessage() and "exp.yml:" in rec.getMessage()
                   for rec in caplog.records), key


@pytest.mark.parametrize(("tuner", "key", "line", "fix"), [
    ("tuner:\n  name: TPE\n  classArgs: {optimize_mode: biggest}\n",
     "tuner.classArgs.optimize_mode", 8, "optimize_mode: maximize"),
    ("tuner:\n  name: TPE\n  className: a.B\n", "tuner.name", 7, "exactly one"),
    ("tuner:\n  nmae: TPE\n", "tuner.nmae", 7, "did you mean name?"),
    ("tuner:\n  name: TPE\n  codeDirectory: .\n", "tuner.codeDirectory", 8, "className"),
    ("tuner:\n  className: a.B\n  codeDirectory: nowhere\n", "tuner.codeDirectory", 8,
     "create the directory"),
    ("assessor:\n  name: Medianstop\n  classArgs: [1]\n", "assessor.classArgs", 8,
     "key: value"),
])
def test_tuner_errors(tmp_path: Path, tuner: str, key: str, line: int, fix: str) -> None:
    err = exp_error(tmp_path, "trialCommand: t\ntrialConcurrency: 1\n" + tuner)
    check(err, file="exp.yml", key=key, line=line, fix=fix)


# -- NNI trainingService --------------------------------------------------------------------


def test_local_training_service(tmp_path: Path) -> None:
    cfg = load_experiment(experiment(tmp_path, """\
        trialCommand: t
        trialConcurrency: 3
        trainingService:
          platform: local
          gpuIndices: 0,2
          maxTrialNumberPerGpu: 2
          useActiveGpu: true
        """))
    assert cfg.machines == (HostSpec(name="local", local=True, slots=3, gpu_indices=(0, 2),
                                     max_trials_per_gpu=2, use_active_gpu=True),)


def test_remote_training_service_converts_nni_machine_list(tmp_path: Path) -> None:
    key = write(tmp_path / "keys" / "id_gpu", "KEY")
    cfg = load_experiment(experiment(tmp_path, """\
        trialCommand: t
        trialConcurrency: 4
        trialGpuNumber: 1
        trainingService:
          platform: remote
          reuseMode: true
          machineList:
            - host: 10.0.0.5
              port: 2222
              user: alice
              sshKeyFile: keys/id_gpu
              gpuIndices: [0, 1]
              maxTrialNumberPerGpu: 2
              useActiveGpu: true
              pythonPath: /opt/conda/bin
            - host: gpu2
              user: bob
              passwordEnv: GPU2_PASSWORD
        """))
    assert cfg.machines is not None
    first, second = cfg.machines
    assert first == HostSpec(
        name="10.0.0.5:2222", host="10.0.0.5", port=2222, user="alice",
        identity_file=str(key), gpu_indices=(0, 1), max_trials_per_gpu=2, use_active_gpu=True,
        python="/opt/conda/bin/python3", setup=('export PATH=/opt/conda/bin:"$PATH"',))
    assert second == HostSpec(name="gpu2", host="gpu2", user="bob", password_env="GPU2_PASSWORD")
    assert cfg.raw["trainingService"]["machineList"][0]["sshKeyFile"] == str(key)


@pytest.mark.parametrize(("entry", "key", "fix"), [
    ("password: hunter2", "password", "passwordEnv: VAR"),
    ("sshPassphrase: hunter2", "sshPassphrase", "passphraseEnv: VAR"),
    ("sshKeyFile: missing_key", "sshKeyFile", "fix the path"),
    ("identityFile: k", "identityFile", "did you mean sshKeyFile?"),
    ("maxTrialsPerGpu: 2", "maxTrialsPerGpu", "did you mean maxTrialNumberPerGpu?"),
    ("username: alice", "username", "did you mean user?"),
    ("maxTrialNumberPerGpu: 0", "maxTrialNumberPerGpu", "maxTrialNumberPerGpu: 1"),
    ("gpuIndice: 1", "gpuIndice", "did you mean gpuIndices?"),
])
def test_machine_list_errors(tmp_path: Path, entry: str, key: str, fix: str) -> None:
    err = exp_error(tmp_path, f"""\
        trialCommand: t
        trialConcurrency: 1
        trainingService:
          platform: remote
          machineList:
            - host: gpu1
              {entry}
        """)
    check(err, file="exp.yml", key=f"trainingService.machineList[0].{key}", line=10, fix=fix)
    assert "host 0 'gpu1'" in str(err)
    assert "hunter2" not in str(err)


@pytest.mark.parametrize(("service", "key", "line", "fix"), [
    ("trainingService: {platform: pai}", "trainingService.platform", 6, "`local` or `remote`"),
    ("trainingService: {platform: remote}", "trainingService.machineList", 6, "machineList:"),
    ("trainingService: {platform: local, machineList: []}", "trainingService.machineList", 6,
     "keys of platform: local"),
    ("trainingService: [{platform: local}]", "trainingService", 6, "one `platform: remote`"),
    ("trainingService: {gpuIndices: 1}", "trainingService.platform", 6, "platform: remote"),
])
def test_training_service_errors(tmp_path: Path, service: str, key: str, line: int,
                                 fix: str) -> None:
    err = exp_error(tmp_path, f"trialCommand: t\ntrialConcurrency: 1\n{service}\n")
    check(err, file="exp.yml", key=key, line=line, fix=fix)


# -- machines.yml ---------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home directory with ~/.ssh keys and config, so ~ expansion is testable."""
    home = tmp_path / "home"
    for name in ("id_ed25519", "id_gpu", "id_bitahub", "config"):
        write(home / ".ssh" / name, "x")
    monkeypatch.setenv("HOME", str(home))
    return home


def machines_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path / "machines.yml", text)
    with pytest.raises(ConfigError) as info:
        load_machines(path)
    return info.value


def test_machines_with_defaults(tmp_path: Path, home: Path) -> None:
    specs = load_machines(write(tmp_path / "machines.yml", """\
        defaults:
          user: alice
          identityFile: ~/.ssh/id_ed25519
          env: {OMP_NUM_THREADS: 4, DATA: /data}
          setup: source ~/venv/bin/activate
        machines:
          - host: gpu1.lab
            gpuIndices: "0,1"
            maxTrialsPerGpu: 2
            env: {DATA: /scratch}
          - name: box
            host: gpu2.lab
            port: 2200
            user: bob
            useAgent: false
            acceptUnknownHostKey: true
            knownHostsFile: ~/.ssh/known_hosts_lab
            sshConfigFile: ~/.ssh/config
            useActiveGpu: true
            activeGpuMemoryPercent: 25
            activeGpuUtilPercent: 5.5
            python: /opt/py/bin/python
            setup: |
              module load cuda
              source ~/env/bin/activate
            workdir: ~/rt
            connectTimeout: 30s
            passwordEnv: BOX_PASSWORD
            passphraseEnv: BOX_PASSPHRASE
          - host: cpu.lab
            port: 2222
            slots: 8
            gpuIndices: []
          - local: true
            slots: 2
        """))
    gpu1, box, cpu, local = specs
    key = str(home / ".ssh" / "id_ed25519")
    assert gpu1 == HostSpec(name="gpu1.lab", host="gpu1.lab", user="alice", identity_file=key,
                            gpu_indices=(0, 1), max_trials_per_gpu=2,
                            env={"OMP_NUM_THREADS": "4", "DATA": "/scratch"},
                            setup=("source ~/venv/bin/activate",))
    assert box == HostSpec(
        name="box", host="gpu2.lab", port=2200, user="bob", identity_file=key,
        password_env="BOX_PASSWORD", passphrase_env="BOX_PASSPHRASE", use_agent=False,
        accept_unknown_host_key=True, known_hosts_file=str(home / ".ssh" / "known_hosts_lab"),
        ssh_config_file=str(home / ".ssh" / "config"), use_active_gpu=True,
        active_gpu_memory_pct=25.0, active_gpu_util_pct=5.5, python="/opt/py/bin/python",
        setup=("module load cuda", "source ~/env/bin/activate"),
        env={"OMP_NUM_THREADS": "4", "DATA": "/data"}, workdir="~/rt", connect_timeout=30.0)
    assert cpu.name == "cpu.lab:2222" and cpu.slots == 8 and cpu.gpu_indices == ()
    assert local.name == "local" and local.local and local.slots == 2
    assert local.user == "alice"  # defaults apply to every entry


def test_bare_list_and_gpu_index_forms(tmp_path: Path) -> None:
    specs = load_machines(write(tmp_path / "m.yml", """\
        - {host: a, gpuIndices: [0, 1]}
        - {host: b, gpuIndices: "2, 3"}
        - {host: c, gpuIndices: 1}
        - {host: d}
        """))
    assert [s.gpu_indices for s in specs] == [(0, 1), (2, 3), (1,), None]


@pytest.mark.parametrize(("entry", "key", "fix"), [
    ("password: hunter2", "password", "passwordEnv: VAR"),
    ("passwd: hunter2", "passwd", "passwordEnv: VAR"),
    ("passphrase: hunter2", "passphrase", "passphraseEnv: VAR"),
    ("passwordEnv: hunter2!", "passwordEnv", "NAME of an environment variable"),
    ("identityFile: ~/.ssh/missing", "identityFile", "fix the path"),
    ("sshConfigFile: nope", "sshConfigFile", "fix the path"),
    ("sshKeyFile: ~/.ssh/id_gpu", "sshKeyFile", "did you mean identityFile?"),
    ("username: alice", "username", "did you mean user?"),
    ("ip: 10.0.0.1", "ip", "did you mean host?"),
    ("pythonPath: /opt/conda/bin", "pythonPath", "did you mean python?"),
    ("maxTrialNumPerGpu: 2", "maxTrialNumPerGpu", "did you mean maxTrialsPerGpu?"),
    ("maxTrialNumberPerGpu: 2", "maxTrialNumberPerGpu", "did you mean maxTrialsPerGpu?"),
    ("identtyFile: x", "identtyFile", "did you mean identityFile?"),
    ("workdir: /tmp/rt", "workdir", "shared /tmp is unsafe"),
    ("workdir: /tmp", "workdir", "shared /tmp is unsafe"),
    ("gpuIndices: a,b", "gpuIndices", "[0, 1]"),
    ("gpuIndices: [0, 0]", "gpuIndices", "list each GPU once"),
    ("gpuIndices: [-1]", "gpuIndices", "[0, 1]"),
    ("maxTrialsPerGpu: 0", "maxTrialsPerGpu", "maxTrialsPerGpu: 1"),
    ("slots: 0", "slots", "slots: 4"),
    ("port: 70000", "port", "port: 22"),
    ("useAgent: yes please", "useAgent", "useAgent: true"),
    ("activeGpuUtilPercent: 150", "activeGpuUtilPercent", "activeGpuUtilPercent: 10"),
    ("connectTimeout: 0", "connectTimeout", "connectTimeout: 20"),
    ("env: {A: [1]}", "env", 'A: "..."'),
    ("env: {1A: x}", "env", "letters, digits and _"),
    ("setup: {a: b}", "setup", "multi-line string"),
])
def test_machine_errors(tmp_path: Path, home: Path, entry: str, key: str, fix: str) -> None:
    err = machines_error(tmp_path, f"""\
        machines:
          - host: gpu0
          - name: gpu1
            host: gpu1.lab
            {entry}
        """)
    check(err, file="machines.yml", key=f"machines[1].{key}", line=5, fix=fix)
    assert "host 1 'gpu1'" in str(err)
    assert "hunter2" not in str(err)


@pytest.mark.parametrize(("text", "key", "line", "fix"), [
    ("machines:\n  - user: a\n", "machines[0].host", 2, "add `host: gpu1.example.org`"),
    ("machines:\n  - host: alice@gpu1\n", "machines[0].host", 2, "user: alice"),
    ("machines:\n  - host: gpu1:2222\n", "machines[0].host", 2, "port: 2222"),
    ("machines:\n  - host: a\n  - host: a\n", "machines[1].host", 3, "unique `name:`"),
    ("machines:\n  - {name: x, host: a}\n  - {name: x, host: b}\n", "machines[1].name", 3,
     "unique `name:`"),
    ("machines: []\n", "machines", 1, "one `- host: ...` entry"),
    ("machines:\n  - gpu1\n", "machines[0]", 2, "host:"),
    ("machine:\n  - host: a\n", "machine", 1, "did you mean machines?"),
    ("hosts:\n  - host: a\n", "hosts", 1, "only `machines:` and `defaults:`"),
    ("defaults: {user: a}\n", None, 1, "add `machines:`"),
    ("defaults:\n  name: x\nmachines:\n  - host: a\n", "defaults.name", 2, "unique"),
    ("defaults:\n  password: x\nmachines:\n  - host: a\n", "defaults.password", 2,
     "passwordEnv"),
    ("defaults:\n  slots: 0\nmachines:\n  - host: a\n", "defaults.slots", 2, "set in defaults"),
])
def test_machines_file_errors(tmp_path: Path, text: str, key: str | None, line: int,
                              fix: str) -> None:
    err = machines_error(tmp_path, text)
    assert err.key == key and err.line == line, str(err)
    assert str(err).startswith(f"{tmp_path / 'machines.yml'}:{line}: ")
    assert fix in str(err)


def test_empty_machines_file(tmp_path: Path) -> None:
    err = machines_error(tmp_path, "")
    assert "empty" in str(err) and "machines:" in str(err)


def test_unset_password_env_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RT_TEST_UNSET_VAR", raising=False)
    with caplog.at_level(logging.WARNING, logger="remotetune.config"):
        load_machines(write(tmp_path / "m.yml", "- {host: a, passwordEnv: RT_TEST_UNSET_VAR}\n"))
    assert any("RT_TEST_UNSET_VAR" in r.getMessage() for r in caplog.records)


def test_local_machine() -> None:
    assert local_machine(3) == HostSpec(name="local", host="localhost", local=True, slots=3)
    with pytest.raises(ConfigError, match="slots"):
        local_machine(0)


def test_public_dict_round_trips_and_hides_secret_env(tmp_path: Path, home: Path) -> None:
    specs = load_machines(write(tmp_path / "machines.yml", """\
        machines:
          - host: gpu1
            port: 2222
            identityFile: ~/.ssh/id_gpu
            passwordEnv: GPU1_PW
            gpuIndices: [0, 1]
            setup: [a, b]
            env: {DATA: /d}
            workdir: ~/w
          - local: true
            env: {WANDB_API_KEY: abc123, HF_TOKEN: xyz}
        """))
    first = host_to_public_dict(specs[0])
    assert first["passwordEnv"] == "GPU1_PW" and first["gpuIndices"] == [0, 1]
    assert "port" in first and "slots" not in first  # unset keys are left out
    json.dumps(first)
    assert parse_machines([first]) == (specs[0],)
    second = host_to_public_dict(specs[1])
    assert "abc123" not in json.dumps(second) and "xyz" not in json.dumps(second)
    with pytest.raises(ConfigError, match="redacted") as info:
        parse_machines({"machines": [second]}, file="(stored)")
    assert info.value.key == "machines[0].env" and "--machines" in str(info.value)


def test_host_keys_cover_every_host_spec_field() -> None:
    # fields marked machines_key=False are set by remotetune itself (hidden_env), not files
    assert sorted(HOST_KEYS.values()) == sorted(
        f.name for f in dataclasses.fields(HostSpec) if f.metadata.get("machines_key", True))


def test_example_machines_file_loads(home: Path) -> None:
    specs = load_machines(REPO / "machines.example.yml")
    assert len(specs) >= 4
    assert any(s.slots and s.gpu_indices == () for s in specs)  # the CPU-only box
    text = (REPO / "machines.example.yml").read_text()
    for key in HOST_KEYS:
        assert f"{key}:" in text, key


def test_docs_list_every_key() -> None:
    docs = (REPO / "docs" / "config.md").read_text()
    keys = (*EXPERIMENT_KEYS, *NNI_IGNORED_KEYS, *HOST_KEYS, *NNI_HOST_KEYS)
    for key in keys:
        assert f"`{key}`" in docs, key


def test_experiment_config_defaults_for_programmatic_use(tmp_path: Path) -> None:
    cfg = load_experiment(experiment(tmp_path, "trialCommand: t\ntrialConcurrency: 1\n"))
    built = ExperimentConfig(file=cfg.file, name="exp", search_space=cfg.search_space,
                             trial_command="t", trial_code_directory=tmp_path)
    assert dataclasses.replace(built, raw=cfg.raw) == cfg


# ---------------------------------------------------------------- the tuner, checked later

_BAD_TUNER = """\
trialCommand: python3 train.py
trialConcurrency: 2
tuner:
  name: TPE
  classArgs: {optimize_mode: maximize, n_startup_trialz: 5}
"""


def test_then_check_defers_only_the_tuner_and_reports_it_as_load_does(tmp_path: Path) -> None:
    path = experiment(tmp_path, _BAD_TUNER)
    with pytest.raises(ConfigError) as at_once:
        load_experiment(path, import_custom=True)
    config, check_later = load_experiment_then_check(path)  # everything else is fine
    assert config.trial_concurrency == 2 and config.tuner.name == "TPE"
    with pytest.raises(ConfigError) as later:
        check_later()
    assert str(later.value) == str(at_once.value)
    assert later.value.line == 8 and "n_startup_trialz" in str(later.value)


def test_then_check_reports_every_problem_at_once_when_others_fail_too(
        tmp_path: Path) -> None:
    path = experiment(tmp_path, _BAD_TUNER + "maxTrialNumbr: 3\n")
    with pytest.raises(ConfigError) as at_once:
        load_experiment(path, import_custom=True)
    with pytest.raises(ConfigError) as deferred:
        load_experiment_then_check(path)
    assert str(deferred.value) == str(at_once.value)  # same problems, same order
    assert "n_startup_trialz" in str(deferred.value) and "maxTrialNumbr" in str(deferred.value)


def test_then_check_builds_no_tuner_until_asked(tmp_path: Path) -> None:
    """`run` starts its hosts' connects before the tuner is built: TPE imports optuna."""
    import subprocess
    import sys

    path = experiment(tmp_path, "trialCommand: x\ntrialConcurrency: 1\ntuner: {name: TPE}\n")
    probe = (
        "import sys\n"
        "from remotetune.config import load_experiment_then_check\n"
        f"config, check = load_experiment_then_check({str(path)!r})\n"
        "print('optuna' in sys.modules)\n"
        "check()\n"
        "print('optuna' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "True"]
