"""Headless Chromium for tests: open a local page, run JavaScript, collect console errors.

A minimal Chrome DevTools Protocol client over the browser's websocket (flat sessions).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _DevTools:
    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=20)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(json.loads(self.ws.recv(timeout=deadline - time.monotonic())))


class Page:
    """One page loaded in a fresh headless Chromium (use as a context manager)."""

    def __init__(self, path: Path, profile: Path, width: int = 1280) -> None:
        self.path, self.profile, self.width = path, profile, width

    def __enter__(self) -> Page:
        self.browser = subprocess.Popen(
            [
                chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0", f"--window-size={self.width},900", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                line = self.browser.stderr.readline()
                if not line and self.browser.poll() is not None:
                    break
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                url = match.group(1) if match else None
            if url is None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            self.tools = _DevTools(url)
            target = self.tools.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.tools.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log"):
                self.tools.call(f"{domain}.enable", self.session)
            self.tools.call("Page.navigate", self.session, url=self.path.as_uri())
            self.tools.wait_event("Page.loadEventFired")
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.tools.ws.close()
        self._stop()

    def _stop(self) -> None:
        self.browser.terminate()
        try:
            self.browser.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.browser.kill()
            self.browser.wait()

    def evaluate(self, expression: str) -> Any:
        reply = self.tools.call(
            "Runtime.evaluate", self.session, returnByValue=True, expression=expression
        )
        return reply["result"]["value"]

    def screenshot(self, path: Path, height: int) -> None:
        self.tools.call(
            "Emulation.setDeviceMetricsOverride", self.session, width=self.width,
            height=min(height, 8000), deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        shot = self.tools.call("Page.captureScreenshot", self.session, format="png")["data"]
        path.write_bytes(base64.b64decode(shot))

    def errors(self) -> list[dict]:
        """Exceptions, console errors/warnings and log errors/warnings seen so far."""
        return [
            e["params"]
            for e in self.tools.events
            if e.get("method") == "Runtime.exceptionThrown"
            or (
                e.get("method") == "Runtime.consoleAPICalled"
                and e["params"]["type"] in ("error", "assert", "warning")
            )
            or (
                e.get("method") == "Log.entryAdded"
                and e["params"]["entry"]["level"] in ("error", "warning")
            )
        ]


#: What every page check reads: readiness flag, images (and broken ones), SVGs, height.
PAGE_CHECKS = """({
    ready: document.documentElement.getAttribute('data-ready'),
    images: document.images.length,
    broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length,
    svgs: document.querySelectorAll('svg').length,
    height: document.documentElement.scrollHeight
})"""
