"""One host, ready to run trials: a transport, the shipped package, and a running agent.

A :class:`HostSession` is used by one thread at a time (its host worker). Its methods
are the only operations the controller performs on a host.
"""

from __future__ import annotations

import json
import logging
import posixpath
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotetune import commands
from remotetune.backends._base import (
    ExitInfo,
    LaunchResult,
    RunState,
    TrialHandle,
    TrialPoll,
)
from remotetune.backends.hostpool import _bundle as hostlib
from remotetune.backends.hostpool._agent_client import AgentClient
from remotetune.backends.hostpool._probe import (
    HostFacts,
    facts_of,
    last_line,
    parse_probe,
    probe_problem,
)
from remotetune.backends.hostpool._slots import NVIDIA_SMI_ARGS, parse_nvidia_smi
from remotetune.errors import AgentError, RemoteSetupError, TransportError
from remotetune.metrics import skipped_line
from remotetune.model import GpuInfo, HostSpec
from remotetune.transport.base import Transport

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = "~/.remotetune/hosts"
METRIC_LINE_LIMIT = 16 << 20  # longer metric lines are skipped with a warning
WATCH_EVERY = 0.005  # seconds between the agent's stat checks during a long poll


def make_transport(spec: HostSpec) -> Transport:
    if spec.local:
        from remotetune.transport.local import LocalTransport

        return LocalTransport(spec)
    from remotetune.transport.ssh import SSHTransport  # paramiko only when needed

    return SSHTransport(spec)


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    python: str
    home: str
    workdir: str
    cpus: int


@dataclass(frozen=True)
class PollItem:
    trial_id: str
    trial_dir: str
    offset: int


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[GpuInfo, ...] | None  # None: no nvidia-smi (a CPU host) or it failed
    error: str | None = None


class HostSession:
    def __init__(
        self,
        spec: HostSpec,
        *,
        workdir: str | None = None,
        transport_factory: Callable[[HostSpec], Transport] = make_transport,
    ) -> None:
        self.spec = spec
        self.workdir_setting = workdir or spec.workdir or DEFAULT_WORKDIR
        self._factory = transport_factory
        self.transport: Transport | None = None
        self.agent: AgentClient | None = None
        self.info: HostInfo | None = None
        self._lib_relative = ""  # the shipped package's directory under the workdir, once open
        # The local machine runs trials with the controller's own interpreter unless told.
        self.python = sys.executable if spec.local and spec.python == "python3" else spec.python
        # Trials whose pid record a poll returned (by trial dir): later polls ask the agent to
        # leave it out of its answer and reuse this one (one record per trial, not per poll).
        self._starts: dict[str, LaunchResult] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------ lifecycle

    def open(self, *, gpus_early: bool = False) -> HostInfo:
        """Probe the host (Python, workdir), ship the host package if missing, start the agent:
        one process and one round trip (``commands.connect_command``, docs/protocol.md).

        The probe is the one `remotetune check` runs, so both report a host's problem (no
        Python, Python too old, workdir not writable, disk full) in the same words. With
        ``gpus_early`` the agent starts nvidia-smi at once; :meth:`gpus` collects it.
        """
        self.close()
        transport = self._factory(self.spec)
        self.transport = transport
        transport.connect()
        digest, pack = hostlib.packed()
        lib_dir = posixpath.join(self.workdir_setting, "lib", digest)
        self._lib_relative = f"lib/{digest}"
        head = {"size": len(pack), "gpus": list(NVIDIA_SMI_ARGS) if gpus_early else None}
        try:
            channel = transport.start(
                commands.connect_command(self.python, self.workdir_setting, lib_dir))
            channel.send(json.dumps(head).encode() + b"\n" + pack)
            self.agent = AgentClient(channel, self.name)
        except TransportError:
            self._probe(transport)  # says what is wrong in `check`'s words, if it can
            raise
        first = self.agent.first  # ready with the host's facts, or the bootstrap's refusal
        hello = first.get("hello") or {}
        self._judge(facts_of(hello.get("probe", first.get("probe"))))
        if not first.get("ready"):
            raise self._setup_error(str(first.get("error") or ""))
        self.info = HostInfo(
            hostname=str(hello["hostname"]),
            python=str(hello["python"]),
            home=str(hello["home"]),
            workdir=str(hello["workdir"]),
            cpus=int(hello["cpus"]),
        )
        return self.info

    def _probe(self, transport: Transport) -> HostFacts:
        """The probe as its own process: for a diagnosis when the agent cannot start."""
        result = transport.run(commands.probe_command(self.python, self.workdir_setting),
                               timeout=60)
        output = result.stdout + result.stderr
        facts = parse_probe(output) if result.ok else HostFacts(output=output)
        self._judge(facts)
        return facts

    def _judge(self, facts: HostFacts) -> None:
        problem = probe_problem(self.spec.python, facts)
        if problem is not None:
            raise RemoteSetupError(self.name, problem.message, hint=problem.hint)

    def _setup_error(self, output: str) -> TransportError:
        detail = last_line(output)  # never a traceback's fragments
        if "No space left" in output:
            return RemoteSetupError(self.name, f"disk full in {self.workdir_setting}: {detail}")
        return RemoteSetupError(
            self.name,
            f"could not install remotetune's host package in {self.workdir_setting}: "
            f"{detail or 'no output'}",
            hint="check that `workdir:` is writable and `python:` is Python 3.8+",
        )

    def close(self) -> None:
        if self.agent is not None:
            try:
                self.agent.close()
            except Exception:  # noqa: BLE001 - closing a broken channel may fail any way
                pass
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:  # noqa: BLE001
                pass
        self.agent = None
        self.transport = None

    def _agent(self) -> AgentClient:
        if self.agent is None:
            raise RemoteSetupError(self.name, "not connected")
        return self.agent

    # ------------------------------------------------------------------ operations

    def trial_dir(self, experiment_id: str, trial_id: str) -> str:
        """Relative to the host's workdir (the agent resolves it)."""
        return f"experiments/{experiment_id}/trials/{trial_id}"

    @property
    def lib_dir(self) -> str:
        """Absolute path of the shipped package on the host (for PYTHONPATH)."""
        return self.absolute(self._lib_relative)

    def absolute(self, relative: str) -> str:
        assert self.info is not None
        return posixpath.join(self.info.workdir, relative)

    def sync(self, manifest: Any, objects_dir: Path) -> str:
        from remotetune import sync

        return sync.sync_snapshot(self._agent(), manifest, objects_dir)

    def launch(self, trial_id: str, trial_dir: str, files: dict[str, str]) -> LaunchResult:
        self._starts.pop(trial_dir, None)
        info = self._agent().call("launch", trial_dir=trial_dir, files=files, timeout=60)
        return _started(trial_id, self.name, info)

    def launch_many(self, launches: Sequence[tuple[str, str, dict[str, str]]]
                    ) -> list[LaunchResult | AgentError]:
        """Several ``(trial_id, trial_dir, files)`` in one request: the agent forks every
        launcher, then reads their reports (docs/protocol.md). One outcome per trial."""
        for _, trial_dir, _ in launches:
            self._starts.pop(trial_dir, None)
        agent = self._agent()
        answer = agent.call(
            "launches", trials=[{"trial_dir": d, "files": f} for _, d, f in launches],
            timeout=60)
        return [_started(trial_id, self.name, r["info"]) if r.get("ok") else
                agent.failure("launch", r)
                for (trial_id, _, _), r in zip(launches, answer["results"], strict=True)]

    def poll(self, items: Sequence[PollItem], max_bytes: int = 1 << 20,
             line_limit: int = METRIC_LINE_LIMIT, wait: float = 0.0) -> list[TrialPoll]:
        """Every trial's news; with ``wait``, the agent answers when some came (a long poll,
        docs/protocol.md), when another request reaches it (:meth:`wake`), or after ``wait``.
        """
        if not items:
            return []
        starts = self._starts
        answer = self._agent().call(
            "poll",
            trials=[{"dir": i.trial_dir, "offset": i.offset, "started": True}
                    if i.trial_dir in starts else {"dir": i.trial_dir, "offset": i.offset}
                    for i in items],
            max_bytes=max_bytes,
            line_limit=line_limit,
            wait=wait,
            every=WATCH_EVERY,
            timeout=60 + wait,
        )
        host = self.name
        return [_poll_result(item, host, r, line_limit, starts)
                for item, r in zip(items, answer["trials"], strict=True)]

    def wake(self) -> None:
        """End the long poll in flight, if any, so the next operation runs now (any thread)."""
        agent = self.agent
        if agent is not None:
            agent.wake()

    def kill(
        self, pgid: int, grace: float, *, wait: bool = False, trial_dir: str | None = None
    ) -> bool:
        """TERM the process group, KILL after ``grace``. Returns True if it may still live.

        With ``trial_dir`` the agent first checks the group is still that trial's (its
        pid.json): a pid reused since (the host restarted) belongs to someone else.
        """
        answer = self._agent().call(
            "kill", pgid=pgid, grace=grace, wait=wait, dir=trial_dir, timeout=grace + 30
        )
        return bool(answer["alive"])

    def tails(self, trial_dir: str, limit: int = 4000) -> tuple[str, str]:
        answer = self._agent().call("tail", dir=trial_dir, bytes=limit)
        stderr = answer["stderr"]
        if answer.get("launcher"):
            stderr = (stderr + "\n" + answer["launcher"]).strip()
        return answer["stdout"], stderr

    def gpus(self, within: float | None = None) -> GpuReport | None:
        """nvidia-smi's reading. With ``within`` the agent waits that long at most: None means
        still running (collected by a later call; the agent's channel is not held)."""
        fields: dict[str, Any] = {} if within is None else {"within": within}
        answer = self._agent().call("exec", argv=list(NVIDIA_SMI_ARGS), timeout=30, **fields)
        if answer.get("pending"):
            return None
        if not answer["found"]:
            return GpuReport(None, "nvidia-smi not found")
        if answer["code"] == 6:  # "No devices were found"
            return GpuReport(())
        if answer["code"] != 0:
            text = (answer["stderr"] or answer["stdout"]).strip()
            return GpuReport(None, f"nvidia-smi failed (exit {answer['code']}): {text[:200]}")
        try:
            return GpuReport(tuple(parse_nvidia_smi(answer["stdout"])))
        except ValueError as exc:
            return GpuReport(None, f"cannot read nvidia-smi output: {exc}")


def _started(trial_id: str, host: str, pid_info: dict[str, Any]) -> LaunchResult:
    """The agent's pid record (pid.json) as a handle: the trial's process group is its ref."""
    handle = TrialHandle(trial_id, host, int(pid_info["pgid"]))
    return LaunchResult(handle, float(pid_info["started"]), int(pid_info["pid"]))


def _poll_result(item: PollItem, host: str, r: dict[str, Any], line_limit: int,
                 starts: dict[str, LaunchResult]) -> TrialPoll:
    """One trial of the agent's poll answer (docs/protocol.md) as a typed poll.

    A line the agent skipped as too long becomes a marker line that the metric decoder turns
    into a warning naming its size (:func:`remotetune.metrics.skipped_line`). An answer
    without ``pid`` is a trial whose record ``starts`` holds (the request said so).
    """
    lines = tuple(r["lines"])
    if r.get("skipped"):
        lines += tuple(skipped_line(size, int(r.get("line_limit", line_limit)))
                       for size in r["skipped"])
    if "pid" not in r:
        started: LaunchResult | None = starts[item.trial_dir]
    elif r["pid"] is None:
        started = None
    else:
        started = starts[item.trial_dir] = _started(item.trial_id, host, r["pid"])
    exit_info = r["exit"]
    if exit_info is not None:
        starts.pop(item.trial_dir, None)  # ended: no more polls of it
        info = ExitInfo(exit_info.get("code"), exit_info.get("signal"), exit_info.get("ended"),
                        exit_info.get("reason"))
        return TrialPoll(item.trial_id, lines, int(r["offset"]), RunState.EXITED, info, started)
    if started is not None:
        state = RunState.VANISHED if r["alive"] is False else RunState.RUNNING
    else:  # files written, no pid yet: starting; no files at all: the launch never arrived
        state = RunState.QUEUED if r["exists"] else RunState.UNKNOWN
    return TrialPoll(item.trial_id, lines, int(r["offset"]), state, None, started)


def launch_files(
    *,
    parameters: dict[str, Any],
    parameter_id: int,
    script: str,
    cwd: str,
    env: dict[str, str],
    unset_env: Sequence[str] = (),
    prepend_env: dict[str, str] | None = None,
    max_duration: float | None,
    kill_grace: float,
    reserve: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The files a trial directory starts with (the agent writes them, then launches).

    ``reserve``: the GPUs the agent reserves for the trial on the host (``_host/gpulocks``).
    """
    launch = {
        "cwd": cwd,
        "env": env,
        "unset_env": list(unset_env),
        "prepend_env": prepend_env or {},
        "max_duration": max_duration,
        "kill_grace": kill_grace,
    }
    if reserve:
        launch["reserve"] = reserve
    params = {"parameter_id": parameter_id, "parameters": parameters}
    return {
        "parameters.json": json.dumps(params, sort_keys=True),
        "launch.json": json.dumps(launch, sort_keys=True),
        "run.sh": script,
    }
