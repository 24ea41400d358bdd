"""Headless Chromium over the DevTools protocol: load a page, collect console errors, take a
screenshot. Only Debian's ``chromium`` and the small ``websocket-client`` are needed (no
chromedriver, no Selenium)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A phone's viewport (an iPhone 12-14 in CSS pixels).
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What loading one page showed."""

    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    #: document width minus viewport width: above 0 means the page scrolls sideways.
    overflow_px: int = 0
    title: str = ""


class Chromium:
    """One headless Chromium with a DevTools endpoint; use as a context manager."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.profile = Path(tempfile.mkdtemp(prefix="autograder-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        args = [
            self.binary,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _page_socket(self) -> Any:
        import websocket

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        return websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)

    def load(self, path: Path, *, viewport: dict[str, Any] = PHONE) -> PageLoad:
        """Open ``path`` at ``viewport``; return console errors, a screenshot and overflow."""
        ws = self._page_socket()
        result = PageLoad()
        events: list[dict[str, Any]] = []

        def call(method: str, **params: Any) -> dict[str, Any]:
            msg_id = next(self.ids)
            ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == msg_id:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return dict(msg.get("result", {}))
                events.append(msg)

        try:
            for domain in ("Runtime", "Log", "Page"):
                call(f"{domain}.enable")
            call("Emulation.setDeviceMetricsOverride", **viewport)
            call("Page.navigate", url=path.resolve().as_uri())
            deadline = time.monotonic() + 30
            while not any(e.get("method") == "Page.loadEventFired" for e in events):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} did not finish loading within 30 s")
                events.append(json.loads(ws.recv()))
            # Let late console messages (CSP reports, image decode errors) arrive.
            call("Runtime.evaluate", expression="1")
            time.sleep(0.3)
            metrics = call(
                "Runtime.evaluate",
                expression="[document.documentElement.scrollWidth - window.innerWidth, "
                "document.title]",
                returnByValue=True,
            )
            overflow, title = metrics["result"]["value"]
            result.overflow_px, result.title = int(overflow), str(title)
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            result.screenshot = base64.b64decode(shot["data"])
            ws.settimeout(0.2)
            try:
                while True:
                    events.append(json.loads(ws.recv()))
            except Exception:
                pass
        finally:
            ws.close()
        result.errors = console_errors(events)
        return result


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Errors among DevTools events: console.error, uncaught exceptions, error log entries."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            errors.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text", "exception")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(re.sub(r"\s+", " ", str(params["entry"].get("text", ""))))
    return errors
