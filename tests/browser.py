"""Headless Chromium driven by Playwright for Python: load a page at a phone's size, collect
console errors (CSP reports included), take a screenshot, and ask the page questions.

Debian's ``chromium`` is the browser (``executable_path``): nothing is downloaded, and it runs
offline. Playwright's own browser builds are never used.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A phone's viewport (an iPhone 12-14 in CSS pixels).
PHONE = {"width": 390, "height": 844}


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
    #: The open page (Playwright's ``Page``), for questions a test asks of it.
    page: Any = None


class Chromium:
    """One headless Chromium; use as a context manager, then :meth:`load` pages."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.playwright: Any = None
        self.browser: Any = None
        self.pages: list[Any] = []

    def __enter__(self) -> Chromium:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        args = ["--disable-gpu"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.browser = self.playwright.chromium.launch(executable_path=self.binary, args=args)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()

    def load(self, path: Path, *, viewport: dict[str, int] = PHONE) -> PageLoad:
        """Open ``path`` at ``viewport`` (a phone by default); return console errors, a
        full-page screenshot, the sideways overflow and the open page."""
        page = self.browser.new_page(viewport=viewport, device_scale_factor=2, is_mobile=True)
        self.pages.append(page)
        result = PageLoad(page=page)
        page.on(
            "console",
            lambda msg: result.errors.append(msg.text) if msg.type in {"error", "assert"} else None,
        )
        page.on("pageerror", lambda exc: result.errors.append(str(exc)))
        page.goto(path.resolve().as_uri(), wait_until="load")
        # Let late console messages (CSP reports, image decode errors) arrive.
        page.wait_for_timeout(300)
        result.overflow_px = int(
            page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        )
        result.title = str(page.title())
        result.screenshot = page.screenshot(full_page=True)
        return result
