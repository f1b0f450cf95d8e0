"""The local machine as a host: commands run through ``sh -c`` as subprocesses."""

from __future__ import annotations

import os
import queue
import subprocess
import threading

from remotetune.errors import HostUnreachable, RemoteSetupError
from remotetune.transport.base import AgentChannel, CommandResult, Transport


class _ProcessChannel(AgentChannel):
    def __init__(self, proc: subprocess.Popen[bytes], host: str) -> None:
        self.proc = proc
        self.host = host
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise HostUnreachable(self.host, f"agent pipe closed: {exc}") from None

    def readline(self, timeout: float) -> bytes:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise HostUnreachable(self.host, f"no answer from the agent in {timeout:g} s") from None
        if not line:
            self._lines.put(b"")
            raise HostUnreachable(self.host, "the agent exited")
        return line

    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LocalTransport(Transport):
    """Runs on this machine. ``connect`` checks nothing: the machine is always there."""

    _connected = False

    def connect(self) -> None:
        self._connected = True

    @property
    def connected(self) -> bool:
        return self._connected

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                ["sh", "-c", command],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                env=self._env(),
            )
        except subprocess.TimeoutExpired:
            raise HostUnreachable(self.name, f"command timed out after {timeout} s") from None
        except OSError as exc:
            raise RemoteSetupError(self.name, f"cannot run sh: {exc}") from None
        return CommandResult(
            command,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in self.spec.hidden_env:  # secrets of the SSH hosts: not for local trials
            env.pop(name, None)
        env.update(self.spec.env)
        return env

    def start(self, command: str) -> AgentChannel:
        try:
            proc = subprocess.Popen(
                ["sh", "-c", command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(),
                start_new_session=True,  # Ctrl-C on the controller must not reach the agent
            )
        except OSError as exc:
            raise RemoteSetupError(self.name, f"cannot start the agent: {exc}") from None
        return _ProcessChannel(proc, self.name)

    def close(self) -> None:
        self._connected = False
