"""Controller side of the agent protocol (see :mod:`remotetune.backends.hostpool._host.agent`,
run on hosts as ``remotetune._host.agent``)."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from typing import Any

from remotetune.backends.hostpool._probe import last_line
from remotetune.errors import AgentError, HostUnreachable, RemoteSetupError
from remotetune.transport.base import AgentChannel

log = logging.getLogger(__name__)


class AgentClient:
    """Request/response over one channel. One call at a time (a lock serialises callers)."""

    def __init__(self, channel: AgentChannel, host: str, *, ready_timeout: float = 30.0) -> None:
        self.channel = channel
        self.host = host
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        first = self._readline(ready_timeout)
        try:
            hello = json.loads(first)
        except ValueError:
            hello = {}
        if not hello.get("ready"):
            raise RemoteSetupError(
                host,
                "the agent did not start: "
                f"{last_line(channel.stderr_text()) or repr(first[:200])}",
                hint="check that `python` in machines.yml names a Python 3.8+ interpreter",
            )

    def _readline(self, timeout: float) -> str:
        try:
            line = self.channel.readline(timeout)
        except HostUnreachable as exc:
            stderr = last_line(self.channel.stderr_text())  # never a traceback's fragments
            if stderr:
                raise HostUnreachable(self.host, f"{exc.message}; the agent said: {stderr}"
                                      ) from None
            raise
        return line.decode("utf-8", "replace")

    def call(
        self, op: str, *, payload: bytes | None = None, timeout: float = 60.0, **fields: Any
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"id": next(self._ids), "op": op, **fields}
        if payload is not None:
            request["size"] = len(payload)
        data = json.dumps(request).encode("utf-8") + b"\n"
        with self._lock:
            self.channel.send(data + payload if payload else data)
            while True:
                line = self._readline(timeout)
                try:
                    answer = json.loads(line)
                except ValueError:
                    log.warning("%s: agent printed a non-protocol line: %r", self.host, line[:200])
                    continue
                if answer.get("id") == request["id"]:
                    break
        if not answer.get("ok"):
            details = answer.get("details")
            raise AgentError(self.host, op, str(answer.get("error")), str(answer.get("kind")),
                             details if isinstance(details, dict) else None)
        return answer

    def close(self) -> None:
        self.channel.close()
