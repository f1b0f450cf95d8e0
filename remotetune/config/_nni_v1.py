"""NNI v1 experiment files, converted in memory to the v2 form the loader reads.

NNI 3.0's ``nnictl`` still accepts v1 files (it converts them to v2 before it starts), so
remotetune does the same: :func:`convert_v1` renames the v1 keys (``searchSpacePath``,
``trial.command``, ``machineList[].ip``...) to their v2 names, keeps the line each was
written on, and records how to name a v2 key the way the user wrote it, so that every later
error still says ``config.yml:12: trial.command: ...``. Keys that mean nothing here are
warned about once and dropped; keys of other platforms are errors. The problems found are
added to the source's ``problems`` so that the loader reports them with its own in one pass.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from remotetune.config._fields import Section, Source, describe, did_you_mean
from remotetune.config._machines import secret_env_name
from remotetune.config._yaml import KeyPath

logger = logging.getLogger(__name__)

#: Top-level keys only NNI v1 has: one of them makes a file a v1 file.
V1_KEYS: tuple[str, ...] = (
    "authorName", "description", "trainingServicePlatform", "searchSpacePath",
    "maxExecDuration", "maxTrialNum", "logDir", "trial", "localConfig", "remoteConfig",
    "machineList", "multiPhase", "multiThread", "versionCheck", "logCollection",
)
#: v1 top-level key -> its v2 name (same value).
MOVED: Mapping[str, str] = {
    "searchSpacePath": "searchSpaceFile", "maxExecDuration": "maxExperimentDuration",
    "maxTrialNum": "maxTrialNumber", "logDir": "experimentWorkingDirectory",
}
#: v1 keys that mean nothing to remotetune: warned about once, then dropped.
DROPPED: Mapping[str, str] = {
    "authorName": "NNI 2 dropped it too", "description": "NNI 2 dropped it too",
    "multiThread": "the tuner runs in the controller", "versionCheck": "no NNI runs",
    "logCollection": "trial logs are always collected",
}
TRIAL_KEYS: Mapping[str, str] = {
    "command": "trialCommand", "codeDir": "trialCodeDirectory", "gpuNum": "trialGpuNumber",
}
LOCAL_KEYS: Mapping[str, str] = {
    "gpuIndices": "gpuIndices", "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
    "useActiveGpu": "useActiveGpu",
}
#: machineList entry: v1 name -> v2 name (the others keep their name).
MACHINE_RENAMED: Mapping[str, str] = {
    "ip": "host", "username": "user", "sshKeyPath": "sshKeyFile",
    "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
}
_SECRET_ENV = {"passwd": "passwordEnv", "password": "passwordEnv",
               "passphrase": "passphraseEnv", "sshPassphrase": "passphraseEnv"}
_ALGOS = ("tuner", "assessor", "advisor")
_ALGO_KEYS = ("className", "classFileName", "codeDir", "classArgs",
              "includeIntermediateResults", "gpuIndices", "name", "codeDirectory")
_OTHER_PLATFORMS = ("paiConfig", "paiYarnConfig", "kubeflowConfig", "frameworkcontrollerConfig",
                    "amlConfig", "dltsConfig", "adlConfig", "hybridConfig", "sharedStorage")


def is_v1(data: Any) -> bool:
    """Whether ``data`` (a loaded experiment file) is written in NNI's v1 format."""
    return isinstance(data, Mapping) and any(key in data for key in V1_KEYS)


def convert_v1(data: Mapping[str, Any], src: Source, *,
               secrets_to_env: bool = False) -> tuple[dict[str, Any], Source]:
    """``data`` in v2 form, and a source whose lines and key names are those of the v1 file.

    With ``secrets_to_env`` (``remotetune convert``), a ``passwd`` or ``passphrase`` becomes
    the ``passwordEnv`` / ``passphraseEnv`` name to export; otherwise it is left for the
    loader, which refuses it and prints the line to paste.
    """
    conv = _Converter(data, src, secrets_to_env)
    conv.run()
    lines: dict[KeyPath, int] = {(): src.lines.get((), 1)} if src.lines else {}
    for path, line in src.lines.items():
        new = conv.forward(path)
        if new is not None:
            lines.setdefault(new, line)
    if "trial" in data and src.lines:  # a missing trial.command is reported at trial:
        lines.setdefault(("trialCommand",), src.lines.get(("trial",), 1))
    if conv.service_line is not None:
        lines[("trainingService",)] = conv.service_line
    renamed = tuple(sorted(conv.renamed.items(), key=lambda item: -len(item[0])))
    return conv.out, replace(src, lines=lines, renamed=renamed, problems=src.problems)


class _Converter:
    def __init__(self, data: Mapping[str, Any], src: Source, secrets_to_env: bool) -> None:
        self.v1 = data
        self.src = src
        self.top = Section(src, (), data, what="a mapping of experiment keys")
        self.secrets_to_env = secrets_to_env
        self.out: dict[str, Any] = {}
        self.renamed: dict[KeyPath, KeyPath] = {}  # v2 path -> v1 path
        self.rules: list[tuple[KeyPath, KeyPath | None]] = []  # v1 path -> v2 path (None: gone)
        self.service_line: int | None = None

    # -- paths --------------------------------------------------------------------------
    def rename(self, v1: KeyPath, v2: KeyPath | None) -> None:
        self.rules.append((v1, v2))
        if v2 is not None and v2 != v1:
            self.renamed[v2] = v1

    def forward(self, path: KeyPath) -> KeyPath | None:
        best: tuple[KeyPath, KeyPath | None] | None = None
        for v1, v2 in self.rules:
            if path[:len(v1)] == v1 and (best is None or len(v1) > len(best[0])):
                best = (v1, v2)
        if best is None:
            return path
        return None if best[1] is None else (*best[1], *path[len(best[0]):])

    def warn(self, path: KeyPath, text: str) -> None:
        line = self.src.line(path)
        where = (self.src.file or "<config>") + (f":{line}" if line else "")
        logger.warning("%s: %s", where, text)
        self.rename(path, None)

    def put(self, v1: KeyPath, v2_key: str, value: Any) -> None:
        """Top-level v2 key from v1 path ``v1``; both spellings at once is an error."""
        if v2_key in self.v1 and (v2_key,) != v1:
            self.src.problems.append(self.src.error(
                v1, f"{'.'.join(map(str, v1))} (NNI v1) and {v2_key} (its v2 name) are both "
                "given", hint=f"keep one of them: {v2_key} is the same setting"))
            self.rename(v1, None)
            return
        self.out[v2_key] = value
        self.rename(v1, (v2_key,))

    # -- the conversion -----------------------------------------------------------------
    def run(self) -> None:
        for key, value in self.top.data.items():
            if key in MOVED:
                self.put((key,), MOVED[key], value)
            elif key in DROPPED:
                self.warn((key,), f"{key} is an NNI v1 key remotetune ignores "
                          f"({DROPPED[key]})")
            elif key == "useAnnotation" and value is False:
                self.rename((key,), None)  # required in v1, and what remotetune does: no noise
            elif key == "multiPhase":
                self._multi_phase(value)
            elif key in _OTHER_PLATFORMS:
                self.src.problems.append(self.top.fail(
                    key, f"{key} belongs to an NNI platform remotetune does not run",
                    hint="remotetune runs local or remote (SSH) trials: use "
                    "trainingServicePlatform: remote with a machineList"))
                self.rename((key,), None)
            elif key == "trial":
                self.src.collect(self._trial, None)
            elif key in _ALGOS:
                self.src.collect(lambda key=key: self._algo(key), None)  # type: ignore[misc]
            elif key not in ("trainingServicePlatform", "localConfig", "remoteConfig",
                             "machineList"):
                self.out[key] = copy.deepcopy(value)  # a v2 (or remotetune) key
        self.src.collect(self._service, None)

    def _multi_phase(self, value: Any) -> None:
        if value is True:
            self.src.problems.append(self.top.fail(
                "multiPhase", "multi-phase trials are not supported (NNI 2 dropped them too)",
                hint="each trial gets one set of parameters: set multiPhase: false"))
        self.warn(("multiPhase",), "multiPhase is an NNI v1 key remotetune ignores")

    def _trial(self) -> None:
        sec = self.top.section("trial", what="a mapping with command, codeDir and gpuNum")
        assert sec is not None
        self.renamed[("trialCommand",)] = ("trial", "command")  # named so when missing
        for key, value in sec.data.items():
            if key in TRIAL_KEYS:
                self.put(("trial", key), TRIAL_KEYS[key], value)
            elif key == "nasMode":
                self.warn(("trial", key), "trial.nasMode is an NNI v1 key remotetune ignores")
            else:
                self.src.problems.append(_unknown(sec, key, TRIAL_KEYS, "keys of trial"))
        self.rename(("trial",), None)

    def _algo(self, key: str) -> None:
        sec = self.top.section(key, what=f"a mapping with builtin{key.title()}Name "
                               "and classArgs")
        assert sec is not None
        builtin = f"builtin{key.title()}Name"
        algo: dict[str, Any] = {}
        self.rename((key,), (key,))
        for item, value in sec.data.items():
            path = (key, item)
            if item == builtin:
                algo["name"] = value
                self.rename(path, (key, "name"))
            elif item == "codeDir":
                algo["codeDirectory"] = value
                self.rename(path, (key, "codeDirectory"))
            elif item == "gpuIndices":  # NNI 2's tunerGpuIndices: warned about, ignored
                self.put(path, "tunerGpuIndices", copy.deepcopy(value))
            elif item == "includeIntermediateResults":
                self.warn(path, f"{key}.{item} is an NNI v1 key remotetune ignores")
            elif item == "classFileName":
                self.rename(path, (key, "className"))
            elif item in _ALGO_KEYS:
                algo[item] = copy.deepcopy(value)
            else:
                self.src.problems.append(_unknown(sec, item, (builtin, *_ALGO_KEYS[:4]),
                                                  f"keys of {key}"))
        file_name = sec.get("classFileName")
        if isinstance(file_name, str) and isinstance(algo.get("className"), str):
            stem = file_name[:-3] if file_name.endswith(".py") else file_name
            algo["className"] = f"{stem}.{algo['className']}"
        self.out[key] = algo

    def _service(self) -> None:
        platform = self.v1.get("trainingServicePlatform")
        given = [key for key in ("trainingServicePlatform", "localConfig", "machineList")
                 if key in self.v1]
        if not given:
            return
        if "trainingService" in self.v1:
            self.src.problems.append(self.top.fail(
                given[0], f"{given[0]} (NNI v1) and trainingService (v2) are both given",
                hint="keep one of them: trainingService is the v2 form"))
            return
        if platform is None:
            platform = "remote" if "machineList" in self.v1 else "local"
        elif platform not in ("local", "remote"):
            raise self.top.fail("trainingServicePlatform", f"platform {describe(platform)} "
                                "is not supported", hint="remotetune runs `local` or `remote` "
                                "(SSH) trials")
        service: dict[str, Any] = {"platform": platform}
        self.out["trainingService"] = service
        self.service_line = self.src.line((given[0],))
        self.rename(("trainingServicePlatform",), ("trainingService", "platform"))
        self._local(service, platform == "local")
        self._remote(service, platform == "remote")
        if platform == "remote":
            self._machines(service)
        elif "machineList" in self.v1:
            self.warn(("machineList",), "machineList is ignored with "
                      "trainingServicePlatform: local")

    def _local(self, service: dict[str, Any], used: bool) -> None:
        sec = self.top.section("localConfig", what="a mapping with gpuIndices, "
                               "maxTrialNumPerGpu and useActiveGpu")
        if sec is None:
            return
        if not used:
            self.warn(("localConfig",), "localConfig is ignored with "
                      "trainingServicePlatform: remote")
            return
        self.rename(("localConfig",), ("trainingService",))
        for key, value in sec.data.items():
            if key in LOCAL_KEYS:
                service[LOCAL_KEYS[key]] = copy.deepcopy(value)
                self.rename(("localConfig", key), ("trainingService", LOCAL_KEYS[key]))
            else:
                self.src.problems.append(_unknown(sec, key, LOCAL_KEYS, "keys of localConfig"))

    def _remote(self, service: dict[str, Any], used: bool) -> None:
        sec = self.top.section("remoteConfig", what="a mapping with reuse")
        if sec is None:
            return
        for key in sec.data:
            if key != "reuse":
                self.src.problems.append(_unknown(sec, key, ("reuse",), "keys of remoteConfig"))
        if not used:
            self.warn(("remoteConfig",), "remoteConfig is ignored with "
                      "trainingServicePlatform: local")
        elif sec.has("reuse"):  # NNI 2's reuseMode: the loader warns that it is ignored
            service["reuseMode"] = sec.get("reuse")
            self.rename(("remoteConfig", "reuse"), ("trainingService", "reuseMode"))

    def _machines(self, service: dict[str, Any]) -> None:
        entries = self.v1.get("machineList")
        self.rename(("machineList",), ("trainingService", "machineList"))
        if not isinstance(entries, list):
            service["machineList"] = entries  # the loader says what is wrong with it
            return
        machines: list[Any] = []
        for index, entry in enumerate(entries):
            machines.append(self._machine(index, entry))
        service["machineList"] = machines

    def _machine(self, index: int, entry: Any) -> Any:
        if not isinstance(entry, Mapping):
            return entry
        out: dict[str, Any] = {}
        v1 = ("machineList", index)
        v2 = ("trainingService", "machineList", index)
        for key, value in entry.items():
            new = MACHINE_RENAMED.get(key, key)
            if self.secrets_to_env and key in _SECRET_ENV:
                new = _SECRET_ENV[key]
                label = entry.get("name") or entry.get("ip") or entry.get("host") or index
                value = secret_env_name(new, str(label))
            if new in out:
                self.src.problems.append(self.src.error(
                    (*v1, key), f"{key} and {new} are both given",
                    hint=f"keep one: {key} is NNI v1's name for {new}"))
                continue
            out[new] = copy.deepcopy(value)
            self.rename((*v1, key), (*v2, new))
        return out


def _unknown(sec: Section, key: str, known: Mapping[str, Any] | tuple[str, ...],
             what: str) -> Any:
    guess = did_you_mean(key, known)
    text = f"did you mean {guess}? " if guess else ""
    return sec.fail(key, "unknown key", hint=f"{text}{what}: {', '.join(known)}")
