"""Headless Debian ``chromium`` driven over the DevTools protocol on a pipe (no network).

``--remote-debugging-pipe`` makes Chromium read commands on fd 3 and write replies and events
on fd 4, each a JSON message ended by a NUL byte. :class:`Browser` opens one page, records
console errors, uncaught exceptions and failed loads, evaluates JavaScript and takes
screenshots. Test helper only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; a context manager."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000) -> None:
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="rt-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: our pipe ends become fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--mute-audio",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire, close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method, session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)
        # CSP violations do not always reach the console (an eval refused inside a
        # try/catch does not): make each one a console error.
        self.call("Page.addScriptToEvaluateOnNewDocument", session=True, source=(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"))

    # --- protocol ----------------------------------------------------------------------------

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace"))

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method: str, session: bool = False, timeout: float = 30.0,
             **params: Any) -> dict[str, Any]:
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise CdpError(f"{method}: no reply (stderr: {''.join(self._stderr)[-2000:]})")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def wait_event(self, method: str, timeout: float = 30.0, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"no {method} event within {timeout} s")
                self._cond.wait(left)

    # --- page --------------------------------------------------------------------------------

    def open(self, url: str, timeout: float = 60.0) -> None:
        mark = len(self.events)
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired", timeout=timeout, since=mark)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"{expression} stayed falsy for {timeout} s")
            time.sleep(0.1)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        with self._cond:
            events = list(self.events)
        for ev in events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                out.append(f"exception: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                    "error", "assert"):
                args = [a.get("value", a.get("description")) for a in params.get("args", [])]
                out.append(f"console.{params.get('type')}: {args}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return out

    def element_screenshot(self, selector: str, path: Path) -> Path:
        """A screenshot of the element ``selector`` (scrolled into view) alone."""
        rect = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView(); const r = e.getBoundingClientRect(); "
            "return {x: r.x + window.scrollX, y: r.y + window.scrollY, "
            "width: r.width, height: r.height}; })()"
        )
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True, clip={**rect, "scale": 1})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        height = self.height
        if full_page:
            metrics = self.call("Page.getLayoutMetrics", session=True)
            height = int(metrics["cssContentSize"]["height"])
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width,
                      height=height, deviceScaleFactor=1, mobile=False)
            time.sleep(0.5)  # let plotly's responsive layout settle
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        if full_page:
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width,
                      height=self.height, deviceScaleFactor=1, mobile=False)
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_child)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
