"""The experiment file: NNI v2 keys plus remotetune's own, read into :class:`ExperimentConfig`."""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remotetune.config._algorithms import check_assessor, check_custom, check_tuner
from remotetune.config._fields import Section, Source, describe
from remotetune.config._machines import (
    local_machine,
    parse_host_list,
    read_gpu_indices,
    read_text,
)
from remotetune.config._nni_v1 import convert_v1, is_v1
from remotetune.config._yaml import KeyPath, dotted, line_of, load_json, load_yaml
from remotetune.errors import ConfigError, SearchSpaceError
from remotetune.model import HostSpec, OptimizeMode
from remotetune.space import SearchSpace

logger = logging.getLogger(__name__)

#: Keys an experiment file may have (NNI v2 names, then remotetune's own).
EXPERIMENT_KEYS: tuple[str, ...] = (
    "experimentName", "searchSpace", "searchSpaceFile", "trialCommand", "trialCodeDirectory",
    "trialConcurrency", "maxTrialNumber", "maxExperimentDuration", "maxTrialDuration",
    "trialGpuNumber", "tuner", "advisor", "assessor", "trainingService",
    "experimentWorkingDirectory", "pollInterval", "hostGracePeriod", "maxTrialRetries",
    "retryFailedTrials", "killGracePeriod", "seed", "followSymlinks", "localSnapshot",
)
#: NNI keys that are accepted and ignored, with a warning.
NNI_IGNORED_KEYS: tuple[str, ...] = (
    "useAnnotation", "debug", "logLevel", "nniManagerIp", "tunerGpuIndices",
)
TUNER_KEYS: tuple[str, ...] = ("name", "className", "codeDirectory", "classArgs")
_LOCAL_SERVICE_KEYS = ("platform", "gpuIndices", "maxTrialNumberPerGpu", "useActiveGpu",
                       "reuseMode")
_REMOTE_SERVICE_KEYS = ("platform", "machineList", "reuseMode")
_SPACE_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class TunerSpec:
    """A tuner or assessor: a built-in ``name``, or a ``module.Class`` from ``code_directory``.

    For a custom class (NNI's ``className``) ``name`` is the class path and
    ``code_directory`` the absolute directory to import it from (None: already importable).
    """

    name: str
    class_args: Mapping[str, Any] = field(default_factory=dict)
    code_directory: str | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment file. Durations are seconds; paths are absolute."""

    file: str | None
    name: str
    search_space: SearchSpace
    trial_command: str
    trial_code_directory: Path
    trial_concurrency: int = 1
    max_trial_number: int | None = None
    max_experiment_duration: float | None = None
    max_trial_duration: float | None = None
    trial_gpu_number: int | None = None
    tuner: TunerSpec = field(
        default_factory=lambda: TunerSpec("TPE", {"optimize_mode": "maximize"})
    )
    assessor: TunerSpec | None = None
    poll_interval: float = 0.02
    host_grace_period: float = 300.0
    max_trial_retries: int = 2
    retry_failed_trials: int = 0
    kill_grace_period: float = 10.0
    seed: int | None = None
    follow_symlinks: bool = False  # upload files that symlinks point to outside the code dir
    # False (NNI's local mode): local trials run in trialCodeDirectory itself; True: in the
    # experiment's immutable snapshot of it, as on remote hosts
    local_snapshot: bool = False
    machines: tuple[HostSpec, ...] | None = None  # from trainingService, if given
    working_directory: Path | None = None  # experimentWorkingDirectory (NNI v1: logDir)
    raw: Mapping[str, Any] = field(default_factory=dict)  # search space inlined, for the store

    @property
    def optimize_mode(self) -> OptimizeMode:
        """From the tuner's ``classArgs.optimize_mode``; maximize when unset."""
        return OptimizeMode(str(self.tuner.class_args.get("optimize_mode", "maximize")))

    @property
    def home(self) -> Path | None:
        """The remotetune home (store, logs) this experiment asks for, or None (the default).

        ``experimentWorkingDirectory`` itself, unless it holds the trial code directory (NNI
        v1's ``logDir: .`` next to ``codeDir: .``): then its ``.remotetune`` subdirectory, so
        that the store is never part of the code sent to the hosts.
        """
        work = self.working_directory
        if work is None:
            return None
        code = self.trial_code_directory
        return work / ".remotetune" if work == code or work in code.parents else work


def load_experiment(path: str | os.PathLike[str], *,
                    import_custom: bool = False) -> ExperimentConfig:
    """Read an experiment YAML file (NNI v2, or v1 converted in memory); relative paths in it
    start at its directory. Every problem of the file is reported in one ConfigError.

    ``import_custom`` (``remotetune run``): also import and build a custom tuner and
    assessor (user code), so that one that fails does so here, at its line."""
    data, src = _read(path)
    return _parse(data, src, import_custom=import_custom)


def _read(path: str | os.PathLike[str]) -> tuple[Any, Source]:
    """The file's data, and its source (lines for errors, the base of relative paths)."""
    file = os.fspath(path)
    loaded = load_yaml(read_text(file), file=file)
    return loaded.data, Source(file, Path(os.path.abspath(file)).parent, loaded.lines)


def load_experiment_then_check(path: str | os.PathLike[str]
                               ) -> tuple[ExperimentConfig, Callable[[], None]]:
    """For ``remotetune run``: the experiment checked but for its tuner and assessor, and
    the call that checks those (a built-in one is built, a custom one imported).

    Building a tuner can import optuna (a third of a second) and a custom one runs user
    code, so ``run`` makes the call after its hosts have started connecting. A file with
    other problems raises them together with the tuner's and assessor's at once, as
    :func:`load_experiment` does, and the call then has nothing left to do."""
    data, src = _read(path)
    later: list[Callable[[], None]] = []
    config = _parse(data, src, import_custom=True, later=later)
    return config, (later[0] if later else lambda: None)


def parse_experiment(
    data: Mapping[str, Any], *, file: str | None = None, base_dir: Path | None = None
) -> ExperimentConfig:
    """Like :func:`load_experiment` for data already loaded (errors carry no line)."""
    return _parse(data, Source(file, Path(base_dir or Path.cwd()).absolute()))


def to_v2(data: Any, src: Source, *, secrets_to_env: bool = False) -> tuple[Any, Source]:
    """The file's data in v2 form (an NNI v1 file converted), and the source to read it."""
    if not is_v1(data):
        return data, src
    return convert_v1(data, src, secrets_to_env=secrets_to_env)


def _parse(data: Any, src: Source, *, import_custom: bool = False,
           later: list[Callable[[], None]] | None = None) -> ExperimentConfig:
    if data is None:
        raise src.error((), "the file is empty", hint="add at least trialCommand, "
                        "trialConcurrency and searchSpace (see docs/config.md)")
    data, src = to_v2(data, src)
    top = Section(src, (), data, what="a mapping of experiment keys")
    get = src.collect
    _check_top_keys(top)
    space, space_raw = get(lambda: _search_space(top), (None, {}))
    code_dir = get(lambda: top.local_path("trialCodeDirectory", kind="directory",
                                          default="."), None)
    concurrency = get(lambda: top.integer("trialConcurrency", required=True, minimum=1,
                                          example="4"), None)
    tuner_key = get(lambda: _tuner_key(top), "tuner")
    before = len(src.problems)
    tuner = get(lambda: _tuner(top, tuner_key), None)
    assessor = get(lambda: _tuner(top, "assessor"), None)
    seed = get(lambda: top.integer("seed", minimum=0, maximum=2**32 - 1, example="42"), None)
    check_algorithms = None
    if space is not None and len(src.problems) == before:
        check_algorithms = _algorithm_checks(top, tuner_key, space, seed, import_custom)
        if later is None:
            check_algorithms()
    machines = get(lambda: _training_service(top, concurrency or 1), None)
    settings = _settings(top, Path(src.file).stem if src.file else "experiment")
    if check_algorithms is not None and later is not None:
        _check_later(check_algorithms, src, later)
    src.raise_problems()
    assert space is not None and code_dir is not None and concurrency is not None
    tuner = tuner or TunerSpec("TPE", {"optimize_mode": "maximize"})
    raw = _raw(top, space_raw, code_dir, tuner_key, tuner, machines,
               settings["working_directory"])
    return ExperimentConfig(
        file=None if src.file is None else os.path.abspath(src.file),
        search_space=space,
        trial_code_directory=code_dir,
        trial_concurrency=concurrency,
        tuner=tuner,
        assessor=assessor,
        seed=seed,
        machines=machines,
        raw=raw,
        **settings,
    )


def _algorithm_checks(top: Section, tuner_key: str, space: SearchSpace, seed: int | None,
                      import_custom: bool) -> Callable[[], None]:
    """The tuner's and assessor's checks (a built-in one built, a custom one imported when
    ``import_custom``). Their problems go where a one-pass check lists them: at the place
    in the file's problems they had when this was made."""
    src, at = top.src, len(top.src.problems)

    def check() -> None:
        start = len(src.problems)
        src.collect(lambda: check_assessor(top, tuner_key, check_tuner(top, tuner_key, space,
                                                                        seed)), None)
        if import_custom and len(src.problems) == start:
            src.collect(lambda: check_custom(top, tuner_key, space, seed), None)
        found = src.problems[start:]
        del src.problems[start:]
        src.problems[at:at] = found

    return check


def _check_later(check: Callable[[], None], src: Source,
                 later: list[Callable[[], None]]) -> None:
    """Hand ``check`` to the caller, unless the file fails anyway: then everything is
    reported now, in one error."""
    if src.problems:
        check()
        return

    def check_and_raise() -> None:
        check()
        src.raise_problems()

    later.append(check_and_raise)


def _settings(top: Section, stem: str) -> dict[str, Any]:
    """The plain settings, each problem recorded (read in one pass with the others)."""
    get = top.src.collect
    return {
        "name": get(lambda: top.text("experimentName", default=stem, example="mnist-lr"),
                    stem) or stem,
        "trial_command": get(lambda: top.text("trialCommand", required=True,
                                              example="python3 train.py"), "") or "",
        "max_trial_number": get(lambda: top.integer("maxTrialNumber", minimum=1,
                                                    example="100"), None),
        "max_experiment_duration": get(lambda: top.seconds(
            "maxExperimentDuration", positive=True, example='"2h"'), None),
        "max_trial_duration": get(lambda: top.seconds("maxTrialDuration", positive=True,
                                                      example='"30m"'), None),
        "trial_gpu_number": get(lambda: top.integer("trialGpuNumber", minimum=0,
                                                    example="1"), None),
        "poll_interval": get(lambda: _seconds(top, "pollInterval", 0.02, positive=True,
                                              example="0.5"), 0.02),
        "host_grace_period": get(lambda: _seconds(top, "hostGracePeriod", 300.0,
                                                  example='"5m"'), 300.0),
        "max_trial_retries": get(lambda: top.integer("maxTrialRetries", default=2,
                                                     minimum=0), 2) or 0,
        "retry_failed_trials": get(lambda: top.integer("retryFailedTrials", default=0,
                                                       minimum=0), 0) or 0,
        "kill_grace_period": get(lambda: _seconds(top, "killGracePeriod", 10.0,
                                                  example='"10s"'), 10.0),
        "follow_symlinks": get(lambda: top.flag("followSymlinks", default=False), False),
        "local_snapshot": get(lambda: top.flag("localSnapshot", default=False), False),
        "working_directory": get(lambda: _working_directory(top), None),
    }


def _working_directory(top: Section) -> Path | None:
    value = top.text("experimentWorkingDirectory", example="/output/nni")
    return None if value is None else top.src.resolve(value)


def _seconds(top: Section, key: str, default: float, *, positive: bool = False,
             example: str) -> float:
    value = top.seconds(key, default=default, positive=positive, example=example)
    return default if value is None else value


def _check_top_keys(top: Section) -> None:
    for key in top.data:
        if key in EXPERIMENT_KEYS:
            continue
        if key == "useAnnotation" and top.get(key) is True:
            top.src.problems.append(top.fail(
                key, "NNI annotations are not supported",
                hint="write the search space in searchSpace or searchSpaceFile, call "
                "nni.get_next_parameter() (or remotetune.trial) in the trial, and set "
                "useAnnotation: false"))
        elif key in NNI_IGNORED_KEYS:
            logger.warning("%s: %s is an NNI setting remotetune ignores",
                           _where(top, key), dotted(top.src.written((key,))))
        else:
            top.src.problems.append(top.unknown(key, EXPERIMENT_KEYS))


def _where(sec: Section, key: str) -> str:
    line = sec.src.line(sec.path_of(key))
    return f"{sec.src.file or '<config>'}" + (f":{line}" if line else "")


def _search_space(top: Section) -> tuple[SearchSpace, dict[str, Any]]:
    inline, named = top.has("searchSpace"), top.has("searchSpaceFile")
    if inline and named:
        written = dotted(top.src.written(("searchSpaceFile",)))
        v1 = "" if written == "searchSpaceFile" else \
            f"; {written} is NNI v1's name for it: use searchSpaceFile in a v2 file"
        raise top.fail("searchSpaceFile", f"searchSpace and {written} are both given",
                       hint=f"keep exactly one of them{v1}")
    if not inline and not named:
        raise top.src.error(("searchSpaceFile",), "a search space is required (missing at "
                            "the top level)", hint="add `searchSpaceFile: search_space.json` "
                            "or an inline `searchSpace:` mapping")
    if inline:
        data = top.get("searchSpace")
        if not isinstance(data, Mapping):
            raise top.fail("searchSpace", f"expected a mapping of parameters, got "
                           f"{describe(data)}", hint="write one `name: {_type: ..., _value: "
                           "[...]}` line per parameter")
        return _parse_space(data, top.src.file, top.src.lines, ("searchSpace",)), dict(data)
    path = top.local_path("searchSpaceFile", kind="file", example="search_space.json")
    assert path is not None
    text = read_text(str(path))
    loaded = load_json(text, file=str(path)) if path.suffix.lower() == ".json" \
        else load_yaml(text, file=str(path))
    if not isinstance(loaded.data, Mapping):
        raise ConfigError(f"expected a mapping of parameters, got {describe(loaded.data)}",
                          file=str(path), line=1,
                          hint='write e.g. {"lr": {"_type": "loguniform", "_value": [1e-5, 0.1]}}')
    return _parse_space(loaded.data, str(path), loaded.lines, ()), dict(loaded.data)


def _parse_space(data: Mapping[str, Any], file: str | None, lines: Mapping[KeyPath, int],
                 base: KeyPath) -> SearchSpace:
    try:
        return SearchSpace.parse(data, file=file)
    except SearchSpaceError as exc:
        inner = _space_path(data, exc.key or "")
        key = dotted(base) + ("." if base and exc.key else "") + (exc.key or "")
        line = line_of(lines, (*base, *inner)) if lines else None
        raise SearchSpaceError(exc.message, file=file, key=key or None, line=line,
                               hint=exc.hint) from None


def _space_path(data: Any, key: str) -> KeyPath:
    """The YAML path of a search-space key like ``model[conv].kernel`` or ``opt[1]``."""
    tokens = [(m.group(1), m.group(2)) for m in _SPACE_TOKEN.finditer(key)]
    path: list[str | int] = []
    node, i = data, 0
    while i < len(tokens):
        bracket, plain = tokens[i]
        if isinstance(node, Mapping) and plain is not None:
            for j in range(len(tokens), i, -1):  # longest run of names that is a key (dots)
                words = [t[1] for t in tokens[i:j]]
                if None not in words and ".".join(words) in node:  # type: ignore[arg-type]
                    name = ".".join(words)  # type: ignore[arg-type]
                    path.append(name)
                    node, i = node[name], j
                    break
            else:
                break
            continue
        options = node.get("_value") if isinstance(node, Mapping) else node
        if not isinstance(options, list):
            break
        wanted = bracket if bracket is not None else plain
        index = next((n for n, o in enumerate(options)
                      if isinstance(o, Mapping) and o.get("_name") == wanted), None)
        if index is None and wanted is not None and wanted.isdigit():
            index = int(wanted)
        if index is None or index >= len(options):
            break
        if isinstance(node, Mapping):
            path.append("_value")
        path.append(index)
        node, i = options[index], i + 1
    return tuple(path)


def _tuner_key(top: Section) -> str:
    """``advisor`` (NNI 2's key for Hyperband and BOHB) when given, else ``tuner``."""
    if not top.has("advisor"):
        return "tuner"
    if top.has("tuner"):
        raise top.fail("advisor", "give a tuner or an advisor, not both",
                       hint="an advisor (Hyperband, BOHB) is a tuner: NNI 3 writes it under "
                       "tuner:, so keep one of the two keys")
    return "advisor"


def _tuner(top: Section, key: str) -> TunerSpec | None:
    sec = top.section(key, what="a mapping with name (or className) and classArgs")
    if sec is None:
        return None
    for item in sec.data:
        if item not in TUNER_KEYS:
            sec.src.problems.append(sec.unknown(item, TUNER_KEYS))
    if sec.has("name") == sec.has("className"):
        raise sec.fail("name", f"give {key} exactly one of name (a built-in) or className",
                       hint=f"e.g. `{key}: {{name: TPE, classArgs: {{optimize_mode: maximize}}}}`")
    code_dir: str | None = None
    if sec.has("className"):
        code = sec.local_path("codeDirectory", kind="directory", example=".")
        code_dir = None if code is None else str(code)
    elif sec.has("codeDirectory"):
        raise sec.fail("codeDirectory", "codeDirectory goes with className",
                       hint="remove it, or name your class with `className: module.Class`")
    name = sec.text("name", example="TPE") or sec.text("className", example="mod.MyTuner")
    args_sec = sec.section("classArgs", what="a mapping of argument names to values")
    args = dict(args_sec.data) if args_sec is not None else {}
    mode = args.get("optimize_mode")
    if mode is not None and mode not in ("maximize", "minimize"):
        assert args_sec is not None
        raise args_sec.fail("optimize_mode", f"expected maximize or minimize, got "
                            f"{describe(mode)}", hint="write `optimize_mode: maximize`")
    return TunerSpec(name=name or "", class_args=args, code_directory=code_dir)


def _training_service(top: Section, concurrency: int) -> tuple[HostSpec, ...] | None:
    if isinstance(top.get("trainingService"), list):
        raise top.fail("trainingService", "several training services (NNI hybrid mode) are "
                       "not supported", hint="use one `platform: remote` with every machine "
                       "in its machineList")
    sec = top.section("trainingService", what="a mapping with platform: local or remote")
    if sec is None:
        return None
    platform = sec.text("platform", required=True, example="remote")
    if platform not in ("local", "remote"):
        raise sec.fail("platform", f"platform {platform!r} is not supported",
                       hint="remotetune runs `local` or `remote` (SSH) trials")
    known = _LOCAL_SERVICE_KEYS if platform == "local" else _REMOTE_SERVICE_KEYS
    for key in sec.data:
        if key not in known:
            sec.src.problems.append(sec.unknown(key, known, hint=f"keys of platform: {platform}"))
    if sec.has("reuseMode"):
        logger.warning("%s: %s is an NNI setting remotetune ignores", _where(sec, "reuseMode"),
                       dotted(sec.src.written((*sec.path, "reuseMode"))))
    if platform == "local":
        spec = local_machine(concurrency)
        return (HostSpec(
            name=spec.name, host=spec.host, local=True, slots=spec.slots,
            gpu_indices=read_gpu_indices(sec, "gpuIndices"),
            max_trials_per_gpu=sec.integer("maxTrialNumberPerGpu", default=1, minimum=1) or 1,
            use_active_gpu=sec.flag("useActiveGpu", default=False),
        ),)
    entries = sec.get("machineList")
    if not isinstance(entries, list) or not entries:
        raise sec.fail("machineList", f"expected a non-empty list of machines, got "
                       f"{describe(entries)}", hint="add `machineList:` with one `- host: ...` "
                       "entry per machine, or use a machines.yml file")
    return parse_host_list(sec.src, (*sec.path, "machineList"), entries, defaults=None, nni=True)


def _raw(top: Section, space: dict[str, Any], code_dir: Path, tuner_key: str,
         tuner: TunerSpec, machines: tuple[HostSpec, ...] | None,
         working_directory: Path | None) -> dict[str, Any]:
    """The file as loaded (in v2 form), re-parseable anywhere: search space inlined, paths
    absolute."""
    raw = copy.deepcopy(dict(top.data))
    raw.pop("searchSpaceFile", None)
    raw["searchSpace"] = copy.deepcopy(space)
    raw["trialCodeDirectory"] = str(code_dir)
    if working_directory is not None:
        raw["experimentWorkingDirectory"] = str(working_directory)
    if tuner.code_directory is not None:
        raw[tuner_key]["codeDirectory"] = tuner.code_directory
    service = raw.get("trainingService")
    if machines and isinstance(service, dict) and isinstance(service.get("machineList"), list):
        for entry, spec in zip(service["machineList"], machines, strict=True):
            if isinstance(entry, dict) and spec.identity_file is not None:
                entry["sshKeyFile"] = spec.identity_file
    return raw
