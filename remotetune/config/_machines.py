"""``machines.yml`` (remotetune's host list) and NNI's ``trainingService.machineList``.

Both become :class:`remotetune.model.HostSpec` records. Each file has one spelling per
setting: ``machines.yml`` uses remotetune's keys, an NNI ``machineList`` uses NNI's keys
(``sshKeyFile``, ``maxTrialNumberPerGpu``, ``pythonPath``) plus remotetune's keys for the
settings NNI has no key for. The other file's spelling is an error that names the right one.
Secrets (``password``, ``passphrase``) are refused everywhere: name an environment variable.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remotetune.config._fields import Section, Source, describe
from remotetune.config._slurm import parse_slurm, slurm_to_public_dict
from remotetune.config._yaml import KeyPath, Loaded, load_yaml
from remotetune.errors import ConfigError
from remotetune.model import HostSpec, SlurmSpec

logger = logging.getLogger(__name__)

#: machines.yml key -> HostSpec field.
HOST_KEYS: Mapping[str, str] = {
    "name": "name",
    "host": "host",
    "port": "port",
    "user": "user",
    "local": "local",
    "identityFile": "identity_file",
    "passphraseEnv": "passphrase_env",
    "passwordEnv": "password_env",
    "useAgent": "use_agent",
    "acceptUnknownHostKey": "accept_unknown_host_key",
    "knownHostsFile": "known_hosts_file",
    "sshConfigFile": "ssh_config_file",
    "gpuIndices": "gpu_indices",
    "maxTrialsPerGpu": "max_trials_per_gpu",
    "useActiveGpu": "use_active_gpu",
    "activeGpuMemoryPercent": "active_gpu_memory_pct",
    "activeGpuUtilPercent": "active_gpu_util_pct",
    "slots": "slots",
    "python": "python",
    "setup": "setup",
    "env": "env",
    "workdir": "workdir",
    "connectTimeout": "connect_timeout",
    "slurm": "slurm",
}
#: Our key -> NNI's spelling in a machineList (``pythonPath`` is a directory, see below).
NNI_SPELLING: Mapping[str, str] = {
    "identityFile": "sshKeyFile",
    "maxTrialsPerGpu": "maxTrialNumberPerGpu",
    "python": "pythonPath",
}
#: Keys of an NNI machineList entry.
NNI_HOST_KEYS: tuple[str, ...] = tuple(
    NNI_SPELLING.get(key, key) for key in HOST_KEYS if key not in ("local", "slurm")
)
_SECRETS = {"password": "passwordEnv", "passwd": "passwordEnv",
            "passphrase": "passphraseEnv", "sshPassphrase": "passphraseEnv"}
_OURS_RENAMED = {"ip": "host", "username": "user", "sshKeyFile": "identityFile",
                 "sshKeyPath": "identityFile", "maxTrialNumPerGpu": "maxTrialsPerGpu",
                 "maxTrialNumberPerGpu": "maxTrialsPerGpu", "pythonPath": "python"}
_NNI_RENAMED = {"ip": "host", "username": "user", "sshKeyPath": "sshKeyFile",
                "identityFile": "sshKeyFile", "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
                "maxTrialsPerGpu": "maxTrialNumberPerGpu", "python": "pythonPath"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_SHARED_TMP = ("/tmp", "/var/tmp")
REDACTED = "<redacted>"


def local_machine(slots: int | None) -> HostSpec:
    """The embedded default host: this machine, no SSH, ``slots`` trials at once
    (``None``: as many as ``trialConcurrency``, following ``remotetune update``)."""
    if slots is None:
        return HostSpec(name="local", host="localhost", local=True)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"expected an integer >= 1, got {slots!r}", key="slots",
                          hint="the local machine needs at least one trial slot")
    return HostSpec(name="local", host="localhost", local=True, slots=slots)


def host_to_public_dict(spec: HostSpec) -> dict[str, Any]:
    """``spec`` as a machines.yml entry for the store: unset keys left out, no secrets.

    HostSpec never holds a password or passphrase (only the names of the variables that
    do); ``env`` values whose names look secret (``*TOKEN*``, ``*KEY*``...) are redacted,
    and parsing a redacted value back is an error that asks for the machines file again.
    """
    out: dict[str, Any] = {}
    for key, attr in HOST_KEYS.items():
        value = getattr(spec, attr)
        if value is None:
            continue
        if isinstance(value, SlurmSpec):
            value = slurm_to_public_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = {k: (REDACTED if _SECRET_NAME.search(k) else v) for k, v in value.items()}
        out[key] = value
    return out


def load_machines(path: str | os.PathLike[str]) -> tuple[HostSpec, ...]:
    """Read a machines.yml file (``machines:`` list, optional ``defaults:``, or a bare list)."""
    file = os.fspath(path)
    loaded = load_yaml(read_text(file), file=file)
    src = Source(file, Path(os.path.abspath(file)).parent, loaded.lines)
    return _parse_machines(loaded, src)


def parse_machines(
    data: Any, *, file: str | None = None, base_dir: Path | None = None
) -> tuple[HostSpec, ...]:
    """Like :func:`load_machines` for data already loaded (errors carry no line)."""
    src = Source(file, base_dir or Path.cwd())
    return _parse_machines(Loaded(data), src)


def read_text(file: str) -> str:
    try:
        with open(file, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"file {os.path.abspath(file)} does not exist", file=file,
                          hint="check the path you passed") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=file,
                          hint="it must be a readable UTF-8 text file") from None


def _parse_machines(loaded: Loaded, src: Source) -> tuple[HostSpec, ...]:
    data = loaded.data
    entries: Any = data
    list_path: KeyPath = ()
    defaults: Section | None = None
    if data is None:
        raise src.error((), "the file is empty", hint="add a `machines:` list of hosts")
    if isinstance(data, Mapping):
        top = Section(src, (), data)
        for key in top.data:
            if key not in ("machines", "defaults"):
                raise top.unknown(key, ("machines", "defaults"),
                                  hint="the top level has only `machines:` and `defaults:`")
        defaults = top.section("defaults")
        if defaults is not None:
            _check_keys(defaults, nni=False)
            src.raise_problems()  # before the hosts, which would repeat each one
            if defaults.has("name"):
                raise defaults.fail("name", "a name in defaults would repeat on every host",
                                    hint="names must be unique: give each host its own name")
        entries = top.get("machines")
        list_path = ("machines",)
        if entries is None:
            raise src.error((), "no `machines:` list", hint="add `machines:` with one entry "
                            "per host (see machines.example.yml)")
    if not isinstance(entries, list) or not entries:
        raise src.error(list_path, f"expected a non-empty list of hosts, got {describe(entries)}",
                        hint="write one `- host: ...` entry per machine")
    specs = parse_host_list(src, list_path, entries, defaults=defaults, nni=False)
    src.raise_problems()
    return specs


def parse_host_list(
    src: Source, list_path: KeyPath, entries: list[Any], *, defaults: Section | None, nni: bool
) -> tuple[HostSpec, ...]:
    """Every entry of a host list as a HostSpec; names must be unique. The problems of all
    entries are collected in ``src.problems`` (the caller raises them, see
    :meth:`Source.raise_problems`); a bad entry is left out of the result."""
    specs: list[HostSpec] = []
    first_at: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path = (*list_path, index)
        merged: dict[str, Any] = {}
        origins: dict[str, KeyPath] = {}
        if defaults is not None and isinstance(entry, Mapping):
            merged.update(defaults.data)
            origins = {key: defaults.path_of(key) for key in defaults.data if key not in entry}
            if isinstance(defaults.get("env"), Mapping) and isinstance(entry.get("env"), Mapping):
                entry = {**entry, "env": {**defaults.get("env"), **entry["env"]}}
        before = len(src.problems)
        try:
            sec = Section(src, path, entry if not merged else {**merged, **entry},
                          origins=origins, what="a mapping of host keys (host:, user:, ...)")
            spec = _parse_host(sec, index=index, nni=nni)
        except ConfigError as exc:
            src.problems.append(exc)
            continue
        if len(src.problems) > before:
            continue
        if spec.name in first_at:
            other = first_at[spec.name]
            src.problems.append(sec.fail("name" if sec.has("name") else "host",
                                         f"name {spec.name!r} is already used by host {other}",
                                         hint="give each host a unique `name:`"))
            continue
        first_at[spec.name] = index
        specs.append(spec)
    return tuple(specs)


def secret_env_name(env_key: str, label: str) -> str:
    """The variable to hold a host's secret: ``RT_PASSWORD_GPU1`` for host gpu1."""
    kind = "PASSWORD" if env_key == "passwordEnv" else "PASSPHRASE"
    tail = re.sub(r"[^A-Z0-9]+", "_", label.upper()).strip("_") or "HOST"
    return f"RT_{kind}_{tail}"


def _secret_error(sec: Section, key: str) -> ConfigError:
    """The refusal of a secret, with the line to paste instead and the export to run."""
    env_key = _SECRETS[key]
    label = sec.get("name") or sec.get("host") or sec.get("ip") or sec.path[-1]
    var = secret_env_name(env_key, str(label))
    what = "password" if env_key == "passwordEnv" else "key passphrase"
    return sec.fail(key, "secrets never go in this file",
                    hint=f"replace this line with `{env_key}: {var}` and, before running "
                    f"remotetune, `export {var}=...` with your {what} (`read -rs {var}; "
                    f"export {var}` keeps it out of the shell history); any variable name "
                    f"works: `{env_key}: VAR`")


def _check_keys(sec: Section, *, nni: bool) -> None:
    """Every key of one host, each problem recorded (secrets, spellings, unknown keys)."""
    known = NNI_HOST_KEYS if nni else tuple(HOST_KEYS)
    renamed = _NNI_RENAMED if nni else _OURS_RENAMED
    for key in sec.data:
        if key in _SECRETS:
            sec.src.problems.append(_secret_error(sec, key))
        elif key in known:
            continue
        elif key in renamed:
            dialect = "an NNI machineList" if nni else "machines.yml"
            sec.src.problems.append(sec.fail(key, f"{key} is not the spelling {dialect} uses",
                                             hint=f"did you mean {renamed[key]}?"))
        else:
            sec.src.problems.append(sec.unknown(key, known))


def _parse_host(sec: Section, *, index: int, nni: bool) -> HostSpec:
    """One host; each key's problem is recorded in ``sec.src.problems`` (all in one pass)."""
    label = sec.get("name") or sec.get("host")
    sec.where = f"host {index}" + (f" {str(label)!r}" if isinstance(label, (str, int)) else "")
    _check_keys(sec, nni=nni)
    get = sec.src.collect

    def k(key: str) -> str:
        return NNI_SPELLING.get(key, key) if nni else key

    local = False if nni else get(lambda: sec.flag("local", default=False), False)
    host = get(lambda: _host(sec, local), "localhost")
    port = get(lambda: sec.integer("port", minimum=1, maximum=65535, example="22"), None)
    name = get(lambda: sec.text("name", default=_default_name(host, port, local,
                                                              sec.has("host")),
                                example="gpu1"), host) or host
    identity = get(lambda: sec.local_path(k("identityFile"), kind="file",
                                          example="~/.ssh/id_ed25519"), None)
    ssh_config = get(lambda: sec.local_path("sshConfigFile", kind="file",
                                            example="~/.ssh/config"), None)
    known_hosts = get(lambda: sec.text("knownHostsFile", example="~/.ssh/known_hosts"), None)
    python, setup = get(lambda: _python_and_setup(sec, nni=nni), ("python3", ()))
    spec = HostSpec(
        name=name,
        host=host,
        port=port,
        user=get(lambda: sec.text("user", example="alice"), None),
        local=local,
        identity_file=None if identity is None else str(identity),
        passphrase_env=get(lambda: _env_name(sec, "passphraseEnv"), None),
        password_env=get(lambda: _env_name(sec, "passwordEnv"), None),
        use_agent=get(lambda: sec.flag("useAgent", default=True), True),
        accept_unknown_host_key=get(lambda: sec.flag("acceptUnknownHostKey", default=False),
                                    False),
        known_hosts_file=None if known_hosts is None else str(sec.src.resolve(known_hosts)),
        ssh_config_file=None if ssh_config is None else str(ssh_config),
        gpu_indices=get(lambda: read_gpu_indices(sec, "gpuIndices"), None),
        max_trials_per_gpu=get(lambda: sec.integer(k("maxTrialsPerGpu"), default=1,
                                                   minimum=1), 1) or 1,
        use_active_gpu=get(lambda: sec.flag("useActiveGpu", default=False), False),
        active_gpu_memory_pct=get(lambda: _percent(sec, "activeGpuMemoryPercent"), 10.0),
        active_gpu_util_pct=get(lambda: _percent(sec, "activeGpuUtilPercent"), 10.0),
        slots=get(lambda: sec.integer("slots", minimum=1, example="4"), None),
        python=python,
        setup=setup,
        env=get(lambda: _env(sec), {}),
        workdir=get(lambda: _workdir(sec), None),
        connect_timeout=get(lambda: sec.seconds("connectTimeout", default=10.0, positive=True,
                                                example="20"), 10.0) or 10.0,
        slurm=None if nni else get(lambda: parse_slurm(sec), None),
    )
    if spec.accept_unknown_host_key:
        logger.warning("%s: host %r: acceptUnknownHostKey is on: its host key is not checked",
                       sec.src.file or "<config>", name)
    return spec


def _host(sec: Section, local: bool) -> str:
    host = sec.text("host", required=not local, default="localhost", example="gpu1.example.org")
    assert host is not None
    _check_host(sec, host)
    return host


def _default_name(host: str, port: int | None, local: bool, has_host: bool) -> str:
    if local and not has_host:
        return "local"
    return host if port is None else f"{host}:{port}"


def _check_host(sec: Section, host: str) -> None:
    if any(ch.isspace() for ch in host):
        raise sec.fail("host", f"{host!r} contains spaces", hint="write one host name or IP")
    if "@" in host:
        user, _, name = host.rpartition("@")
        raise sec.fail("host", f"{host!r} includes a user name",
                       hint=f"write `host: {name}` and `user: {user}`")
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        raise sec.fail("host", f"{host!r} includes a port",
                       hint=f"write `host: {name}` and `port: {port}`")


def _env_name(sec: Section, key: str) -> str | None:
    name = sec.text(key, example="GPU1_PASSWORD")
    if name is None:
        return None
    if not _ENV_NAME.match(name):
        raise sec.fail(key, f"{key} takes the NAME of an environment variable, not its value",
                       hint=f"export the secret, e.g. `export GPU1_SECRET=...`, and write "
                       f"`{key}: GPU1_SECRET`")
    if name not in os.environ:
        logger.warning("%s: %s names %s, which is not set in this shell",
                       sec.src.file or "<config>", key, name)
    return name


def read_gpu_indices(sec: Section, key: str) -> tuple[int, ...] | None:
    value = sec.get(key)
    if value is None:
        return None
    hint = f'write a list like `{key}: [0, 1]`, a string like `{key}: "0,1"` or one index'
    items: list[Any]
    if isinstance(value, bool):
        items = [value]
    elif isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if not all(part.isdigit() for part in parts):
            raise sec.fail(key, f"expected GPU indices, got {describe(value)}", hint=hint)
        items = [int(part) for part in parts]
    elif isinstance(value, list):
        items = value
    else:
        raise sec.fail(key, f"expected GPU indices, got {describe(value)}", hint=hint)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise sec.fail(key, f"expected GPU indices (integers >= 0), got {describe(item)}",
                           hint=hint)
    if len(set(items)) != len(items):
        raise sec.fail(key, f"repeats a GPU index: {items}", hint="list each GPU once")
    return tuple(items)


def _percent(sec: Section, key: str) -> float:
    return sec.number(key, default=10.0, minimum=0.0, maximum=100.0, example="10") or 0.0


def _python_and_setup(sec: Section, *, nni: bool) -> tuple[str, tuple[str, ...]]:
    setup = _setup(sec)
    if not nni:
        return sec.text("python", default="python3", example="python3") or "python3", setup
    path_dir = sec.text("pythonPath", example="/opt/conda/bin")
    if path_dir is None:
        return "python3", setup
    # NNI puts pythonPath in front of PATH for every command; so do we, before `setup`.
    export = f'export PATH={shlex.quote(path_dir)}:"$PATH"'
    return posixpath.join(path_dir, "python3"), (export, *setup)


def _setup(sec: Section) -> tuple[str, ...]:
    value = sec.get("setup")
    if value is None:
        return ()
    hint = "write a list of shell lines, or one multi-line string after `setup: |`"
    if isinstance(value, str):
        return tuple(line for line in value.splitlines() if line.strip())
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise sec.fail("setup", f"expected shell lines, got {describe(value)}", hint=hint)
    return tuple(line for line in value if line.strip())


def _env(sec: Section) -> dict[str, str]:
    value = sec.get("env")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise sec.fail("env", f"expected a mapping of variable names to values, got "
                       f"{describe(value)}", hint="write `env:` then `  NAME: value` lines")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise sec.fail("env", f"{name!r} is not a valid environment variable name",
                           hint="use letters, digits and _, not starting with a digit")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise sec.fail("env", f"{name}: expected a string, got {describe(item)}",
                           hint=f'quote the value: `{name}: "..."`')
        if item == REDACTED:
            raise sec.fail("env", f"the value of {name} was redacted when the experiment was "
                           "stored", hint="pass the machines file again: --machines machines.yml")
        out[name] = str(item)
    return out


def _workdir(sec: Section) -> str | None:
    workdir = sec.text("workdir", example="~/.remotetune/hosts")
    if workdir is None:
        return None
    normal = posixpath.normpath(workdir)
    if any(normal == tmp or normal.startswith(tmp + "/") for tmp in _SHARED_TMP):
        raise sec.fail("workdir", f"{workdir} is in a shared temporary directory",
                       hint="shared /tmp is unsafe (other users can read or replace trial "
                       "files, and it is wiped on reboot): use a directory you own, e.g. "
                       "~/.remotetune/hosts, or leave workdir out")
    return workdir
