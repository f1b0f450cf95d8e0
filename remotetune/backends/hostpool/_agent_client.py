"""Controller side of the agent protocol (see :mod:`remotetune.backends.hostpool._host.agent`,
run on hosts as ``remotetune._host.agent``)."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from remotetune.backends.hostpool._probe import last_line
from remotetune.errors import AgentError, HostUnreachable, RemoteSetupError, TransportError
from remotetune.transport.base import AgentChannel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One request of :meth:`AgentClient.call_many`: an op, its raw payload, its fields."""

    op: str
    payload: bytes | None = None
    fields: dict[str, Any] = field(default_factory=dict)


class AgentClient:
    """Request/response over one channel. One call at a time (a lock serialises callers).

    A long poll (``poll`` with ``wait``) ends early when anything else reaches the agent;
    :meth:`wake` lets another thread end it: it sends an empty line (which the agent
    skips) while a long call is out, and turns the next long call into a short one when
    none is out yet. Sends are serialised by their own lock, so a wake never cuts a request.
    """

    def __init__(self, channel: AgentChannel, host: str, *, ready_timeout: float = 30.0) -> None:
        self.channel = channel
        self.host = host
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._long_out = False  # a long poll is out (its answer not read yet)
        self._woken = False  # a wake came while no long poll was out
        first = self._readline(ready_timeout)
        try:
            hello = json.loads(first)
        except ValueError:
            hello = None
        # The first line: ready (with the host's facts under "hello"), or the connect
        # bootstrap's refusal ("probe" and maybe "error", then it exits) for the session.
        self.first: dict[str, Any] = hello if isinstance(hello, dict) else {}
        if not self.first.get("ready") and "probe" not in self.first:
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
        long = bool(fields.get("wait"))
        with self._lock:
            with self._send_lock:
                if long and self._woken:
                    request["wait"] = 0  # something waits behind us: do not linger
                if long:
                    self._woken = False
                self._long_out = long and bool(request["wait"])
                if payload is not None:
                    request["size"] = len(payload)
                data = json.dumps(request).encode("utf-8") + b"\n"
                self.channel.send(data + payload if payload else data)
            try:
                answer = self._answer(request["id"], timeout)
            finally:
                with self._send_lock:
                    self._long_out = False
        if not answer.get("ok"):
            raise self.failure(op, answer)
        return answer

    def failure(self, op: str, answer: dict[str, Any]) -> AgentError:
        """The error an ``ok: false`` answer (or one item of a batch answer) stands for."""
        details = answer.get("details")
        return AgentError(self.host, op, str(answer.get("error")), str(answer.get("kind")),
                          details if isinstance(details, dict) else None)

    def call_many(self, requests: Iterable[Request], *, timeout: float = 60.0
                  ) -> list[dict[str, Any]]:
        """Requests sent back to back, then their
        answers read in order: the link carries the next request while the agent works on
        the last. Raises the first failure once every answer is in (the channel stays in
        step)."""
        sent: list[tuple[int, str]] = []
        with self._lock:
            for r in requests:
                request: dict[str, Any] = {"id": next(self._ids), "op": r.op, **r.fields}
                if r.payload is not None:
                    request["size"] = len(r.payload)
                data = json.dumps(request).encode("utf-8") + b"\n"
                with self._send_lock:
                    self.channel.send(data + r.payload if r.payload else data)
                sent.append((request["id"], r.op))
            answers = [self._answer(request_id, timeout) for request_id, _ in sent]
        for (_, op), answer in zip(sent, answers, strict=True):
            if not answer.get("ok"):
                raise self.failure(op, answer)
        return answers

    def _answer(self, request_id: int, timeout: float) -> dict[str, Any]:
        while True:
            line = self._readline(timeout)
            try:
                answer = json.loads(line)
            except ValueError:
                log.warning("%s: agent printed a non-protocol line: %r", self.host, line[:200])
                continue
            if answer.get("id") == request_id:
                return dict(answer)

    def wake(self) -> None:
        """End a long poll now (any thread); a closed channel is left to the caller's op."""
        with self._send_lock:
            if not self._long_out:
                self._woken = True
                return
            try:
                self.channel.send(b"\n")
            except TransportError:
                pass
            self._long_out = False

    def close(self) -> None:
        self.channel.close()
