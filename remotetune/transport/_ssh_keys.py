"""Trust and credentials for one SSH hop: host key checking and the keys and password to
offer. No I/O beyond reading key and known_hosts files and the environment."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import paramiko

from remotetune.errors import AuthenticationFailed, HostKeyError
from remotetune.model import HostSpec
from remotetune.transport.base import NewHostKey

log = logging.getLogger(__name__)

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")

# paramiko annotates the password of ``PKey.from_path`` as ``str``, but hands it to
# cryptography, which needs bytes ("password must be bytes"): load through this signature.
_from_path = cast(Callable[[str, "bytes | None"], paramiko.PKey], paramiko.PKey.from_path)


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Target:
    """Where a HostSpec really leads once the ssh config file is applied (by fabric)."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts_files: tuple[str, ...]
    proxy_jump: str | None
    proxy_command: str | None

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


# --------------------------------------------------------------------------- host keys


def load_known_hosts(name: str, target: Target, into: paramiko.HostKeys) -> None:
    """Read every existing known_hosts file of ``target`` into ``into`` (never written)."""
    for path in target.known_hosts_files:
        if not os.path.exists(path):
            continue
        try:
            into.load(path)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            log.warning("%s: cannot read known_hosts file %s: %s", name, path, exc)


def _files(target: Target) -> str:
    return ", ".join(p for p in target.known_hosts_files if os.path.exists(p)) or (
        target.known_hosts_files[0])


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """An unknown host key is an error naming the file to add it to, unless the host says
    ``acceptUnknownHostKey: true`` (then it is logged, never saved), or ``accept_new`` (what
    OpenSSH's ``StrictHostKeyChecking=accept-new`` does: the key is appended to the first
    known_hosts file and listed in ``recorded``). A changed key never reaches this policy:
    paramiko refuses it first (:func:`mismatch_error`); a host known by a key of another type
    is refused here, as a changed key would be."""

    def __init__(self, spec: HostSpec, target: Target, *, accept_new: bool = False,
                 recorded: list[NewHostKey] | None = None) -> None:
        self.spec = spec
        self.target = target
        self.accept_new = accept_new
        self.recorded = recorded if recorded is not None else []

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        target = self.target
        name = target.known_hosts_name
        if self.accept_new:
            self._record(client, hostname or name, key)
            return
        if self.spec.accept_unknown_host_key:
            log.warning(
                "%s: accepting unknown host key %s %s for %s (acceptUnknownHostKey: true; "
                "not saved to known_hosts)", self.spec.name, key.get_name(), fingerprint(key),
                name,
            )
            return
        add_to = self.spec.known_hosts_file or "~/.ssh/known_hosts"
        err = HostKeyError(
            self.spec.name,
            f"unknown host key for {name} ({key.get_name()} {fingerprint(key)}): "
            f"not in {_files(target)}",
            hint="verify it and record it with `remotetune check --machines FILE "
            f"--accept-new`, or `ssh-keyscan -p {target.port} {target.hostname} >> {add_to}`, "
            "or set acceptUnknownHostKey: true",
        )
        err.reason = "unknown host key"
        raise err

    def _record(self, client: Any, name: str, key: paramiko.PKey) -> None:
        known = client.get_host_keys().lookup(name)
        if known:  # known by another key type: a changed key, not a new host
            other = next(iter(known.values()))
            raise mismatch_error(self.spec, self.target, key, other)
        path = self.target.known_hosts_files[0]
        try:
            append_host_key(path, name, key)
        except OSError as exc:
            raise HostKeyError(
                self.spec.name, f"cannot record the host key of {name} "
                f"({key.get_name()} {fingerprint(key)}) in {path}: {exc.strerror or exc}",
                hint="make the file writable, or set knownHostsFile to one that is") from None
        client.get_host_keys().add(name, key.get_name(), key)
        self.recorded.append(NewHostKey(name, key.get_name(), fingerprint(key), path))
        log.info("%s: recorded new host key %s %s for %s in %s", self.spec.name,
                 key.get_name(), fingerprint(key), name, path)


_APPEND_LOCK = threading.Lock()  # hosts are checked in parallel: one line at a time


def append_host_key(path: str, name: str, key: paramiko.PKey) -> None:
    """Append ``name type base64`` to a known_hosts file, creating it (0600, and its
    directory 0700) when missing, as ssh does."""
    line = f"{name} {key.get_name()} {key.get_base64()}\n".encode()
    directory = os.path.dirname(path)
    with _APPEND_LOCK:
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the last line had no newline
            os.write(fd, line)
        finally:
            os.close(fd)


def mismatch_error(
    spec: HostSpec, target: Target, key: paramiko.PKey, expected: paramiko.PKey
) -> HostKeyError:
    name = target.known_hosts_name
    err = HostKeyError(
        spec.name,
        f"HOST KEY MISMATCH for {name}: it offered {key.get_name()} {fingerprint(key)}, "
        f"known_hosts ({_files(target)}) has {fingerprint(expected)}. Someone may be "
        "intercepting the connection (man in the middle), or the host was reinstalled",
        hint=f"if the change is expected, remove the stale line with "
        f"`ssh-keygen -R '{name}' -f {target.known_hosts_files[0]}` and reconnect",
    )
    err.reason = "host key mismatch"
    return err


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """What to offer the server, and how to say what was tried if it refuses all of it."""

    keys: dict[str, paramiko.PKey]  # path -> loaded key, in the order to offer them
    passphrase: str | None
    password: str | None
    tried: tuple[str, ...]  # labels for the error message, in paramiko's order

    def connect_kwargs(self, spec: HostSpec) -> dict[str, Any]:
        """paramiko ``SSHClient.connect`` keywords (fabric's ``connect_kwargs``)."""
        paths = list(self.keys)
        return {  # the first key as loaded (no second decryption), the others by path
            "pkey": self.keys[paths[0]] if paths else None,
            "key_filename": paths[1:] or None,
            "passphrase": self.passphrase,
            "password": self.password,
            "allow_agent": spec.use_agent,
            "look_for_keys": False,  # the default keys are already in key_filename
        }

    def method(self, transport: paramiko.Transport) -> str:
        """How ``transport`` authenticated, as `remotetune check` shows it."""
        handler = transport.auth_handler
        kind = getattr(handler, "auth_method", "") or ""
        if kind != "publickey":
            return "keyboard-interactive" if kind == "keyboard-interactive" else "password"
        used = getattr(handler, "private_key", None)
        blob = used.asbytes() if used is not None else None
        for path, key in self.keys.items():
            if key.asbytes() == blob:
                return f"publickey ({path})"
        return "ssh-agent"


def _secret(spec: HostSpec, env_name: str | None, key: str) -> str | None:
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        log.warning("%s: %s names $%s, which is not set", spec.name, key, env_name)
    return value


def credentials(spec: HostSpec, target: Target, *, with_password: bool = True) -> Credentials:
    """Load the keys to offer (a configured key that cannot be used is an error now)."""
    passphrase = _secret(spec, spec.passphrase_env, "passphraseEnv")
    keys: dict[str, paramiko.PKey] = {}
    for path in target.identity_files:
        if not os.path.exists(path):
            if spec.identity_file:
                raise AuthenticationFailed(spec.name, f"identity file {path} does not exist",
                                           hint="fix identityFile in machines.yml")
            continue
        key = load_key(spec.name, path, passphrase, required=bool(spec.identity_file))
        if key is not None:
            keys[path] = key
    if not target.identity_files:
        for name in DEFAULT_KEYS:
            path = os.path.expanduser(f"~/.ssh/{name}")
            key = load_key(spec.name, path, passphrase, required=False) if os.path.exists(
                path) else None
            if key is not None:
                keys[path] = key
    tried = [f"publickey ({p})" for p in keys] + (["ssh-agent"] if spec.use_agent else [])
    password = _secret(spec, spec.password_env, "passwordEnv") if with_password else None
    if with_password and spec.password_env:
        tried.append(f"password (${spec.password_env} is not set)" if password is None
                     else f"password (from ${spec.password_env})")
    return Credentials(keys, passphrase, password, tuple(tried))


def _encrypted(path: str) -> bool:
    try:
        _from_path(path, None)
    except (paramiko.PasswordRequiredException, TypeError):
        return True
    except Exception:  # noqa: BLE001 - unreadable for another reason
        return False
    return False


def load_key(name: str, path: str, passphrase: str | None, *, required: bool) -> Any:
    """The private key at ``path``, or None when it is optional and cannot be used."""
    try:
        secret = None if passphrase is None else passphrase.encode()
        return _from_path(path, secret)
    except (paramiko.PasswordRequiredException, TypeError, ValueError, paramiko.SSHException,
            OSError) as exc:
        # paramiko 5 lets cryptography's TypeError through for an encrypted key without a
        # passphrase, and a ValueError (a PEM message) for a wrong one.
        if passphrase is None and isinstance(exc, (paramiko.PasswordRequiredException,
                                                   TypeError)):
            problem = "is encrypted and no passphrase was given"
            hint = "set passphraseEnv to the name of a variable holding its passphrase"
        elif passphrase is not None and _encrypted(path):
            problem, hint = "", "check the passphrase in the variable named by passphraseEnv"
        else:
            problem = f"cannot be read ({exc})"
            hint = "check the file and the passphrase in the variable named by passphraseEnv"
    if not required:
        log.debug("%s: skipping key %s: %s", name, path, problem or "wrong passphrase")
        return None
    message = f"wrong passphrase for {path}" if not problem else f"identity file {path} {problem}"
    raise AuthenticationFailed(name, message, hint=hint)
