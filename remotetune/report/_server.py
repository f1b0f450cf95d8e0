"""``remotetune serve``: the report page, live, from a small read-only HTTP server.

Routes (GET and HEAD only; anything else is 405):

- ``/``: the experiment list, or a redirect to the one experiment it was started for;
- ``/exp/ID``: the report page of experiment ID, polling ``/api/exp/ID``;
- ``/api/exp/ID``: the report's JSON document, re-read from the store at most once per
  ``min_refresh_s`` and only when it changed; ``?since=VERSION`` answers 204 No Content
  while the document's ``version`` is still VERSION;
- ``/static/plotly.min.js``: plotly.js from the installed plotly package.

It binds 127.0.0.1 unless told otherwise. A token (``?token=`` or ``Authorization: Bearer``)
is then checked on every request with a constant-time compare; binding anything but a
loopback address always needs one. Without a token, requests must name a loopback host in
``Host`` (so a web page elsewhere cannot reach the server through DNS rebinding).
"""

from __future__ import annotations

import dataclasses
import hmac
import html
import ipaddress
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from remotetune.errors import ConfigError, ExperimentNotFound, StoreError
from remotetune.report._data import current_version, load_report_data
from remotetune.report._page import plotly_js, render_page
from remotetune.report._payload import build_payload
from remotetune.report._render import report_title

if TYPE_CHECKING:
    from remotetune.store import Store

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    experiment_id: str | None = None  # None: the list of experiments at /
    token: str | None = None  # required on every request when set
    require_token: bool = False  # generate one even on loopback
    refresh_ms: int = 2000  # how often the page polls
    min_refresh_s: float = 1.0  # the JSON document is re-read at most this often

    def checked(self) -> ServeOptions:
        """These options with a generated token where one is needed (off loopback, or asked)."""
        if self.token is None and (self.require_token or not is_loopback(self.host)):
            return dataclasses.replace(self, token=secrets.token_urlsafe(24))
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the serve token must be at least 16 characters")
        return self


class _Cache:
    """The last JSON document per experiment, rebuilt only when the store has moved on.

    A poll first reads the cheap version (trials, hosts, the last event; no metrics). An
    unchanged version costs nothing more, so many open pages on a big experiment stay cheap.
    """

    def __init__(self, store: Store, ttl: float) -> None:
        self.store, self.ttl = store, ttl
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[float, str, str]] = {}  # id -> (when, version, doc)

    def version(self, experiment_id: str) -> str:
        with self._lock:
            hit = self._docs.get(experiment_id)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        return current_version(self.store, experiment_id)

    def payload(self, experiment_id: str) -> str:
        with self._lock:
            hit = self._docs.get(experiment_id)
            if hit is not None and (time.monotonic() - hit[0] < self.ttl or hit[1] ==
                                    current_version(self.store, experiment_id)):
                return hit[2]
            data = load_report_data(self.store, experiment_id)
            doc = build_payload(data)
            self._docs[experiment_id] = (time.monotonic(), data.version, doc)
            return doc


class ReportServer(ThreadingHTTPServer):
    """The live report server. Use as a context manager, or ``start()`` it in a thread."""

    daemon_threads = True

    def __init__(self, store: Store, options: ServeOptions) -> None:
        self.options = options.checked()
        self.store = store
        self.cache = _Cache(store, self.options.min_refresh_s)
        if ":" in self.options.host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((self.options.host, self.options.port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.options.host}:{self.options.port}: "
                f"{exc.strerror or exc}",
                hint="choose another --port (0: any free port) or --host",
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        base = f"http://{shown}:{port}/"
        return base + (f"?token={quote(self.options.token)}" if self.options.token else "")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An unexpected error in one request: logged (never printed), the server goes on."""
        logger.exception("serve: request from %s failed", client_address)

    def start(self) -> ReportServer:
        self._thread = threading.Thread(target=self.serve_forever, name="report-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: ReportServer
    server_version = "remotetune"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        logger.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib's name
        self._handle(head=True)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._handle(head=False)

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"read-only\n",
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815 - stdlib's names

    def _handle(self, head: bool) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            self._send(HTTPStatus.FORBIDDEN, "text/plain",
                       b"forbidden: this server needs its token (?token=...)\n", head=head)
            return
        try:
            status, ctype, body, extra = self._route(url.path, url.query)
        except ExperimentNotFound as exc:
            status, ctype, body, extra = HTTPStatus.NOT_FOUND, "text/plain", str(exc), {}
        except StoreError as exc:
            logger.warning("serve: %s", exc)
            status, ctype, body, extra = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", \
                str(exc), {}
        self._send(status, ctype, body.encode("utf-8"), head=head, extra=extra)

    def _allowed(self, query: str) -> bool:
        token = self.server.options.token
        if token is None:
            return is_loopback(host_name(self.headers.get("Host") or ""))
        given = parse_qs(query).get("token", [""])[0]
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))

    def _with_token(self, path: str) -> str:
        token = self.server.options.token
        return f"{path}?token={quote(token)}" if token else path

    def _route(self, path: str, query: str) -> tuple[HTTPStatus, str, str, dict[str, str]]:
        opts = self.server.options
        if path == "/":
            if opts.experiment_id is not None:
                exp = self.server.store.experiment(opts.experiment_id)
                target = self._with_token(f"/exp/{quote(exp.id)}")
                return HTTPStatus.FOUND, "text/plain", "", {"Location": target}
            return HTTPStatus.OK, "text/html; charset=utf-8", self._index(), {}
        if path == "/static/plotly.min.js":
            return (HTTPStatus.OK, "text/javascript; charset=utf-8", plotly_js(),
                    {"Cache-Control": "private, max-age=86400"})
        if path.startswith("/api/exp/"):
            exp_id = path[len("/api/exp/"):]
            since = parse_qs(query).get("since", [None])[0]
            if since is not None and since == self.server.cache.version(exp_id):
                return HTTPStatus.NO_CONTENT, "application/json", "", {}
            return HTTPStatus.OK, "application/json", self.server.cache.payload(exp_id), {}
        if path.startswith("/exp/"):
            return HTTPStatus.OK, "text/html; charset=utf-8", self._page(path[5:]), {}
        return HTTPStatus.NOT_FOUND, "text/plain", "not found\n", {}

    def _page(self, experiment_id: str) -> str:
        store = self.server.store
        exp = store.experiment(experiment_id)
        doc = self.server.cache.payload(exp.id)
        return render_page(
            doc, title=report_title(exp), subtitle="live view (read-only)",
            live_url=self._with_token(f"/api/exp/{quote(exp.id)}"),
            live_interval_ms=self.server.options.refresh_ms,
            plotly_src=self._with_token("/static/plotly.min.js"),
        )

    def _index(self) -> str:
        rows = []
        for exp in self.server.store.experiments():
            link = html.escape(self._with_token(f"/exp/{quote(exp.id)}"), quote=True)
            created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(exp.created_at or 0))
            rows.append(
                f'<tr><td><a href="{link}">{html.escape(exp.id)}</a></td>'
                f"<td>{html.escape(exp.name)}</td><td>{html.escape(exp.status.value)}</td>"
                f"<td>{html.escape(exp.tuner)}</td><td>{html.escape(created)}</td></tr>"
            )
        body = "".join(rows) or '<tr><td colspan="5">no experiments in this store</td></tr>'
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<link rel="icon" href="data:,"><title>remotetune experiments</title>'
            "<style>body{font-family:system-ui,sans-serif;margin:24px}"
            "td,th{padding:4px 10px;text-align:left;border-bottom:1px solid #ddd}</style>"
            "</head><body><h1>remotetune experiments</h1><table id=\"experiments\">"
            "<thead><tr><th>id</th><th>name</th><th>status</th><th>tuner</th>"
            f"<th>created (UTC)</th></tr></thead><tbody>{body}</tbody></table></body></html>"
        )

    def _send(self, status: HTTPStatus, ctype: str, body: bytes, *, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        headers = {"Cache-Control": "no-store", **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
