"""`remotetune check`: connect to every host in parallel and report what a run would need.

Per host: how it authenticated, the configured Python's version, the GPUs nvidia-smi
reports (busy by the host's thresholds), free disk in the workdir (created when missing;
not writable is a failure), and the host's ``setup`` lines run as a trial would run them (a
failing line is a failure). One SSH exec per host. The Python/workdir verdict is the host
probe a run uses too (:mod:`remotetune.backends.hostpool._probe`). A host failing never hides
the others: every host gets a :class:`HostCheck`, in the order given. With ``accept_new``
the host keys not known yet are recorded in known_hosts and listed with their fingerprints.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from remotetune import commands
from remotetune.backends.hostpool._probe import (
    HostFacts,
    ProbeFailure,
    last_line,
    parse_probe,
    probe_problem,
)
from remotetune.backends.hostpool._session import DEFAULT_WORKDIR, make_transport
from remotetune.backends.hostpool._slots import NVIDIA_SMI_ARGS, gpu_is_busy, parse_nvidia_smi
from remotetune.errors import ConfigError, RemotetuneError, TransportError
from remotetune.model import GpuInfo, HostSpec
from remotetune.transport.base import NewHostKey, Transport

log = logging.getLogger(__name__)

class CheckReason(str, enum.Enum):
    OK = "ok"
    NAME_RESOLUTION = "name resolution"
    CONNECTION_REFUSED = "connection refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    AUTHENTICATION = "authentication"
    UNKNOWN_HOST_KEY = "unknown host key"
    HOST_KEY_MISMATCH = "host key mismatch"
    NO_PYTHON = "no python"
    OLD_PYTHON = "python too old"
    WORKDIR = "workdir not writable"
    DISK_FULL = "disk full"
    SETUP = "setup failed"
    GPU_QUERY = "nvidia-smi failed"
    CONFIG = "config"
    ERROR = "error"


_BY_ERROR_REASON = {
    "name resolution": CheckReason.NAME_RESOLUTION,
    "connection refused": CheckReason.CONNECTION_REFUSED,
    "timeout": CheckReason.TIMEOUT,
    "unreachable": CheckReason.UNREACHABLE,
    "connection lost": CheckReason.UNREACHABLE,
    "authentication": CheckReason.AUTHENTICATION,
    "unknown host key": CheckReason.UNKNOWN_HOST_KEY,
    "host key": CheckReason.UNKNOWN_HOST_KEY,
    "host key mismatch": CheckReason.HOST_KEY_MISMATCH,
}


@dataclass(frozen=True)
class GpuCheck:
    gpu: GpuInfo
    busy: bool  # above the host's activeGpu memory or utilisation threshold
    selected: bool  # in gpuIndices (or no gpuIndices given)


@dataclass(frozen=True)
class HostCheck:
    name: str
    address: str  # user@host:port as configured
    ok: bool
    reason: CheckReason
    message: str = ""
    hint: str | None = None
    auth_method: str | None = None
    python_version: str | None = None
    gpus: tuple[GpuCheck, ...] = ()
    gpu_note: str | None = None  # e.g. "no GPUs (nvidia-smi not found)"
    workdir: str | None = None
    free_disk_bytes: int | None = None
    seconds: float = 0.0
    new_host_keys: tuple[NewHostKey, ...] = ()  # recorded by --accept-new (jump hosts too)


def _address(spec: HostSpec) -> str:
    if spec.local:
        return "local"
    user = f"{spec.user}@" if spec.user else ""
    port = f":{spec.port}" if spec.port else ""
    return f"{user}{spec.host}{port}"


def _sections(output: str) -> dict[str, tuple[str, int | None]]:
    """``name -> (text, exit code)`` from :func:`commands.check_command` output."""
    found: dict[str, tuple[str, int | None]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(commands.CHECK_MARK + " "):
            word = line[len(commands.CHECK_MARK) + 1:].strip()
            if word.startswith("rc ") and name is not None:
                found[name] = ("\n".join(lines), int(word[3:]))
                name = None
            else:
                name, lines = word, []
        elif name is not None:
            lines.append(line)
    if name is not None:
        found[name] = ("\n".join(lines), None)
    return found


_BY_PROBE_FAILURE = {
    ProbeFailure.NO_PYTHON: CheckReason.NO_PYTHON,
    ProbeFailure.OLD_PYTHON: CheckReason.OLD_PYTHON,
    ProbeFailure.WORKDIR: CheckReason.WORKDIR,
    ProbeFailure.DISK_FULL: CheckReason.DISK_FULL,
}


def check_host(
    spec: HostSpec,
    *,
    timeout: float = 15.0,
    transport_factory: Callable[[HostSpec], Transport] = make_transport,
) -> HostCheck:
    """Check one host; never raises (a failure is a HostCheck with ``ok=False``)."""
    started = time.monotonic()
    spec = replace(spec, connect_timeout=min(spec.connect_timeout, timeout))
    base: dict[str, Any] = {"name": spec.name, "address": _address(spec)}

    def done(ok: bool, reason: CheckReason, message: str = "", **fields: Any) -> HostCheck:
        recorded = tuple(getattr(transport, "new_host_keys", ()))  # even if it failed later
        return HostCheck(ok=ok, reason=reason, message=message, new_host_keys=recorded,
                         seconds=time.monotonic() - started, **base, **fields)

    transport: Transport | None = None
    try:
        transport = transport_factory(spec)
        transport.connect()
        base["auth_method"] = getattr(transport, "auth_method", None) or (
            "local" if spec.local else None)
        workdir = spec.workdir or DEFAULT_WORKDIR
        result = transport.run(
            commands.check_command(spec.python, workdir, NVIDIA_SMI_ARGS, spec.setup),
            timeout=timeout)
    except TransportError as exc:
        reason = _BY_ERROR_REASON.get(exc.reason, CheckReason.ERROR)
        return done(False, reason, exc.message, hint=exc.hint)
    except ConfigError as exc:
        return done(False, CheckReason.CONFIG, str(exc))
    except RemotetuneError as exc:
        return done(False, CheckReason.ERROR, str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken host must not hide the others
        log.exception("%s: check failed unexpectedly", spec.name)
        return done(False, CheckReason.ERROR, f"{type(exc).__name__}: {exc}")
    finally:
        if transport is not None:
            transport.close()
    return _verdict(spec, result.stdout + result.stderr, done)


def _verdict(spec: HostSpec, output: str, done: Callable[..., HostCheck]) -> HostCheck:
    sections = _sections(output)
    gpu_fields = _gpus(spec, sections.get("gpus"))
    python_text, python_rc = sections.get("python", ("", None))
    facts = parse_probe(python_text) if python_rc == 0 else HostFacts(output=python_text)
    fields: dict[str, Any] = dict(gpu_fields)
    if facts.version is not None:
        fields.update(python_version=facts.version, workdir=facts.workdir,
                      free_disk_bytes=facts.free)
    problem = probe_problem(spec.python, facts)
    if problem is not None:
        return done(False, _BY_PROBE_FAILURE[problem.failure], problem.message,
                    hint=problem.hint, **fields)
    setup = _setup_failure(sections.get("setup"))
    if spec.setup and setup is not None:
        return done(False, CheckReason.SETUP, setup,
                    hint="fix that line in the host's `setup:` in machines.yml", **fields)
    if spec.gpu_indices and fields.get("gpu_note") and not fields.get("gpus"):
        return done(False, CheckReason.GPU_QUERY, str(fields["gpu_note"]),
                    hint="gpuIndices is set, so this host should have working GPUs", **fields)
    if spec.gpu_indices and fields.get("gpus"):
        have = {g.gpu.index for g in fields["gpus"]}
        absent = [i for i in spec.gpu_indices if i not in have]
        if absent:
            return done(False, CheckReason.GPU_QUERY,
                        f"gpuIndices lists GPUs {absent} that nvidia-smi does not report",
                        hint=f"the host has GPUs {sorted(have)}", **fields)
    return done(True, CheckReason.OK, **fields)


def _setup_failure(section: tuple[str, int | None] | None) -> str | None:
    """Which setup line failed and the tail of its output, or None when they all passed."""
    if section is None:
        return "the setup lines did not finish"
    text, code = section
    if code == 0:
        return None
    lines = text.strip().splitlines()
    marker = next((i for i in range(len(lines) - 1, -1, -1)
                   if lines[i].startswith("remotetune: setup line ")), None)
    if marker is None:
        return f"the setup lines failed (exit {code}): {last_line(text) or 'no output'}"
    tail = "\n".join(lines[max(0, marker - 5):marker])
    what = lines[marker][len("remotetune: "):]
    return f"{what}" + (f"\noutput:\n{tail}" if tail else "")


def _gpus(spec: HostSpec, section: tuple[str, int | None] | None) -> dict[str, Any]:
    if section is None:
        return {"gpu_note": "GPUs not checked"}
    text, code = section
    if code == 127:
        return {"gpu_note": "no GPUs (nvidia-smi not found)"}
    if code != 0:
        detail = " / ".join(text.strip().splitlines()[-2:])
        return {"gpu_note": f"nvidia-smi failed (exit {code}): {detail}"}
    try:
        gpus = parse_nvidia_smi(text)
    except ValueError as exc:
        return {"gpu_note": f"cannot read nvidia-smi output: {exc}"}
    if not gpus:
        return {"gpu_note": "no GPUs (nvidia-smi lists none)"}
    wanted = spec.gpu_indices
    return {"gpus": tuple(
        GpuCheck(g, gpu_is_busy(spec, g), wanted is None or g.index in wanted) for g in gpus)}


def accepting_new_keys(spec: HostSpec) -> Transport:
    """A transport that records unknown host keys in known_hosts (OpenSSH's
    ``StrictHostKeyChecking=accept-new``); a changed key is still refused."""
    if spec.local:
        return make_transport(spec)
    from remotetune.transport.ssh import SSHTransport  # paramiko only when needed

    return SSHTransport(spec, accept_new=True)


def check_hosts(
    specs: Sequence[HostSpec],
    *,
    timeout: float = 15.0,
    transport_factory: Callable[[HostSpec], Transport] = make_transport,
    accept_new: bool = False,
) -> list[HostCheck]:
    """Check every host in parallel; one HostCheck per spec, in the same order.

    ``accept_new``: unknown host keys are recorded (:func:`accepting_new_keys`)."""
    if not specs:
        return []
    if accept_new:
        transport_factory = accepting_new_keys
    pool = ThreadPoolExecutor(max_workers=min(32, len(specs)),
                              thread_name_prefix="remotetune-check")
    futures = [pool.submit(check_host, s, timeout=timeout, transport_factory=transport_factory)
               for s in specs]
    wait_futures(futures, timeout=2 * timeout + 5)  # connect, then the one command
    pool.shutdown(wait=False, cancel_futures=True)
    checks = []
    for spec, future in zip(specs, futures, strict=True):
        if future.done():
            checks.append(future.result())
        else:
            checks.append(HostCheck(spec.name, _address(spec), False, CheckReason.TIMEOUT,
                                    f"no result within {2 * timeout + 5:g} s"))
    return checks


# --------------------------------------------------------------------------- rendering


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024  # type: ignore[assignment]
    return "-"


def _gpu_text(check: HostCheck) -> Text:
    if not check.gpus:
        return Text(check.gpu_note or "-", style="dim")
    text = Text()
    for i, item in enumerate(check.gpus):
        gpu = item.gpu
        if i:
            text.append("\n")
        line = (f"{gpu.index}: {gpu.name} {gpu.memory_used_mib:.0f}/"
                f"{gpu.memory_total_mib:.0f} MiB {gpu.utilization_pct:.0f}%")
        style = "dim" if not item.selected else ("yellow" if item.busy else "")
        text.append(line, style=style)
        if item.busy:
            text.append(" busy", style="yellow")
        if not item.selected:
            text.append(" (not in gpuIndices)", style="dim")
    return text


def new_key_lines(checks: Sequence[HostCheck]) -> list[Text]:
    """One line per host key recorded by ``--accept-new``, with its fingerprint."""
    return [Text(f"{c.name}: new host key for {k.host}: {k.key_type} {k.fingerprint}, "
                 f"recorded in {k.recorded_in}", style="yellow")
            for c in checks for k in c.new_host_keys]


def render_checks(checks: Sequence[HostCheck]) -> Group:
    """The host keys just recorded, a table of the checks and a one-line summary."""
    table = Table(title="remotetune check", expand=False)
    for column in ("host", "status", "auth", "python", "GPUs", "disk free", "details"):
        table.add_column(column, overflow="fold")
    for c in checks:
        status = Text("ok", style="green") if c.ok else Text(f"FAIL: {c.reason.value}",
                                                             style="bold red")
        details = c.message + (f"\nhint: {c.hint}" if c.hint else "")
        table.add_row(
            Text(f"{c.name}\n{c.address}"),
            status,
            c.auth_method or "-",
            c.python_version or "-",
            _gpu_text(c),
            _size(c.free_disk_bytes),
            Text(details),
        )
    failed = [c for c in checks if not c.ok]
    summary = (Text(f"all {len(checks)} hosts ok", style="green") if not failed else Text(
        f"{len(failed)} of {len(checks)} hosts failed: "
        + ", ".join(f"{c.name} ({c.reason.value})" for c in failed), style="bold red"))
    return Group(*new_key_lines(checks), table, summary)
