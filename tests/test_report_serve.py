"""``remotetune serve``: a real HTTP server on loopback, read-only, token-checked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_report import EVIL, add_experiment
from test_run_local import cli_env

from remotetune.errors import ConfigError
from remotetune.report import ReportServer, ServeOptions
from remotetune.store import Store


def get(url: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "remotetune.db") as s:
        add_experiment(s, "exp00001", name=EVIL)
        add_experiment(s, "exp00002", name="second")
        yield s


@pytest.fixture
def server(store: Store) -> Iterator[ReportServer]:
    srv = ReportServer(store, ServeOptions(port=0, min_refresh_s=0.0)).start()
    yield srv
    srv.stop()


def test_index_lists_experiments_escaped(server: ReportServer) -> None:
    status, headers, body = get(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<a href="/exp/exp00001">' in page and '<a href="/exp/exp00002">' in page
    assert "<script>alert(" not in page and "&lt;/script&gt;" in page


def test_page_and_json_follow_the_store(server: ReportServer, store: Store) -> None:
    base = server.url.rstrip("/")
    status, _, body = get(base + "/exp/exp00001")
    page = body.decode()
    assert status == 200 and 'data-live-url="/api/exp/exp00001"' in page
    assert '<script src="/static/plotly.min.js"></script>' in page
    status, headers, body = get(base + "/api/exp/exp00001")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    doc = json.loads(body)
    assert len(doc["trials"]) == 6
    add_experiment(store, "exp00001", n=9)  # more trials arrive: the next poll sees them
    assert len(json.loads(get(base + "/api/exp/exp00001")[2])["trials"]) == 9
    status, headers, body = get(base + "/static/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and "max-age" in headers["Cache-Control"]


def test_unknown_experiment_and_path_are_404(server: ReportServer) -> None:
    base = server.url.rstrip("/")
    assert get(base + "/exp/nosuch")[0] == 404
    assert get(base + "/api/exp/nosuch")[0] == 404
    assert get(base + "/etc/passwd")[0] == 404


def test_read_only(server: ReportServer) -> None:
    base = server.url.rstrip("/")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = get(base + "/api/exp/exp00001", method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(base + "/", method="HEAD")[0] == 200


def test_loopback_server_refuses_other_host_names(server: ReportServer) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 gets nothing."""
    assert get(server.url, {"Host": "evil.example:8080"})[0] == 403
    assert get(server.url, {"Host": "localhost:8080"})[0] == 200


def test_token_is_checked_on_every_request(store: Store) -> None:
    srv = ReportServer(store, ServeOptions(port=0, token="t" * 24,
                                           experiment_id="exp00002")).start()
    try:
        port = srv.server_address[1]
        base = f"http://127.0.0.1:{port}"
        assert srv.url == f"{base}/?token={'t' * 24}"
        for path in ("/", "/exp/exp00002", "/api/exp/exp00002", "/static/plotly.min.js"):
            assert get(base + path)[0] == 403
            assert get(base + path + "?token=" + "t" * 23 + "u")[0] == 403
            assert get(base + path, {"Authorization": "Bearer " + "t" * 24})[0] in (200, 302)
        status, headers, _ = get(srv.url)
        assert status == 302 and headers["Location"] == f"/exp/exp00002?token={'t' * 24}"
        page = get(base + headers["Location"])[2].decode()
        assert f'src="/static/plotly.min.js?token={"t" * 24}"' in page
        assert f'data-live-url="/api/exp/exp00002?token={"t" * 24}"' in page
    finally:
        srv.stop()


def test_binding_beyond_loopback_always_needs_a_token() -> None:
    assert ServeOptions().checked().token is None
    generated = ServeOptions(host="0.0.0.0").checked().token
    assert generated and len(generated) >= 24
    assert ServeOptions(require_token=True).checked().token
    with pytest.raises(ConfigError):
        ServeOptions(token="short").checked()


def test_cli_serve_prints_its_url_and_serves(tmp_path: Path) -> None:
    with Store(tmp_path / "home" / "remotetune.db") as s:
        add_experiment(s, "exp00009")
    proc = subprocess.Popen(
        [sys.executable, "-m", "remotetune.cli", "serve", "exp0", "--port", "0", "--token"],
        env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        assert match, line + proc.stderr.read() if proc.stderr else line
        status, headers, _ = get(match.group(1))
        assert status == 302 and headers["Location"].startswith("/exp/exp00009?token=")
        assert get(match.group(1).split("?")[0])[0] == 403
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def test_a_taken_port_is_a_clear_error(server: ReportServer, store: Store) -> None:
    port = server.server_address[1]
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
        ReportServer(store, ServeOptions(port=port))


def test_polls_get_204_until_the_store_changes(server: ReportServer, store: Store) -> None:
    base = server.url.rstrip("/") + "/api/exp/exp00002"
    version = json.loads(get(base)[2])["version"]
    status, _, body = get(f"{base}?since={version}")
    assert status == 204 and body == b""
    assert get(f"{base}?since=stale")[0] == 200
    add_experiment(store, "exp00002", n=7, name="second")  # a new trial
    status, _, body = get(f"{base}?since={version}")
    assert status == 200 and json.loads(body)["version"] != version
    assert len(json.loads(body)["trials"]) == 7


def test_index_of_an_empty_store(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.db") as empty:
        srv = ReportServer(empty, ServeOptions(port=0)).start()
        try:
            status, _, body = get(srv.url)
            assert status == 200 and b"no experiments in this store" in body
        finally:
            srv.stop()
