"""The workshop in a real browser (Playwright driving Debian's Chromium) against a real service
on a loopback port: a participant's personal link, upload, the status turning to graded
without a reload, the feedback page; the same on a phone; a cross-site form refused; the
instructor regrading and revealing. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import nbformat
import pytest
from conftest import complete, make_tiny_course
from servicekit import LiveService

from autograder.classroom import revealed

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("AUTOGRADER_ARTIFACTS") or Path(__file__).parent / "artifacts")


@pytest.fixture
def browser():
    from browser import chromium_path

    binary = chromium_path()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed (dev extra)")
    from playwright.sync_api import sync_playwright

    args = ["--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=binary, args=args)
        yield chromium
        chromium.close()


def _page(browser, *, phone: bool):
    size = {"width": 390, "height": 844} if phone else {"width": 1200, "height": 900}
    page = browser.new_page(viewport=size, is_mobile=phone, device_scale_factor=2)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def _wait_text(page, selector: str, prefix: str, timeout: float = 120) -> None:
    """Wait until ``selector``'s text starts with ``prefix`` (polled from here: the pages'
    CSP forbids the eval that Playwright's wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while not page.inner_text(selector).startswith(prefix):
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} still says {page.inner_text(selector)!r}")
        page.wait_for_timeout(200)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_participant_hands_in_and_watches_it_graded_without_reloading(browser, tmp_path, phone):
    course = make_tiny_course(tmp_path / "course")
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(complete(course), notebook)
    with LiveService(course) as live:
        _, token = live.roster.add("ann")
        page, errors = _page(browser, phone=phone)
        page.goto(f"{live.url}/me?token={token}")
        assert page.url == f"{live.url}/"
        assert "signed in as ann" in page.inner_text("header")
        page.set_input_files("form.upload input[accept='.ipynb']", str(notebook))
        page.click("form.upload button[type=submit]")
        page.wait_for_url("**/?done=*")
        assert "handed in tiny" in page.inner_text("header")
        loads = []
        page.on("load", lambda _: loads.append(1))
        # The status cell turns to "graded" by itself, and the feedback link appears.
        _wait_text(page, "td.status", "graded")
        page.wait_for_selector("td.link a", timeout=10_000)
        assert loads == []  # no reload
        assert page.inner_text("td.points").strip() == "3 / 4"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
        _shot(page, f"workshop-{'phone' if phone else 'desktop'}")
        page.click("td.link a")
        page.wait_for_selector("h1 .score")
        assert "feedback for ann" in page.inner_text("header")
        _shot(page, f"workshop-feedback-{'phone' if phone else 'desktop'}")
        assert errors == []


def test_a_cross_site_form_is_refused(browser, tmp_path):
    course = make_tiny_course(tmp_path / "course")
    with LiveService(course, start_graders=False) as live:
        _, token = live.roster.add("ann")
        attacker = tmp_path / "evil"
        attacker.mkdir()
        (attacker / "index.html").write_text(
            f'<form id="f" method="post" action="{live.url}/upload" '
            'enctype="multipart/form-data"><input name="assignment" value="tiny">'
            '<input type="hidden" name="csrf" value="guess"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )
        handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(attacker)
        )
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            page, _ = _page(browser, phone=False)
            page.goto(f"{live.url}/me?token={token}")  # the victim is signed in
            with page.expect_response(f"{live.url}/upload") as answer:
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            assert answer.value.status == 403
            assert "another site" in answer.value.text()
        finally:
            server.shutdown()
        assert live.queue.of_student("ann") == []


def test_the_instructor_sees_the_room_regrades_and_reveals(browser, tmp_path):
    from test_feedback import CHECKS

    course = make_tiny_course(tmp_path / "course")
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(complete(course), notebook)
    with LiveService(course) as live:
        _, ann = live.roster.add("ann")
        _, teacher = live.roster.add("teacher", instructor=True)
        page, errors = _page(browser, phone=False)
        page.goto(f"{live.url}/me?token={ann}")
        page.set_input_files("form.upload input[accept='.ipynb']", str(notebook))
        page.click("form.upload button[type=submit]")
        _wait_text(page, "td.status", "graded")
        # A CSV check after grading, so that the class has a leaderboard to reveal.
        toml = course.source("tiny") / "assignment.toml"
        toml.write_text(toml.read_text() + CHECKS)
        page.context.clear_cookies()
        page.goto(f"{live.url}/me?token={teacher}")
        page.goto(f"{live.url}/class")
        room = page.inner_text("#room-tiny")
        assert "ann" in room and "graded" in room and "3 / 4" in room
        # Regrade ann, confirmed; the action is recorded and a new submission queued.
        page.select_option("form[action$='/regrade'] select", "ann")
        page.check("form[action$='/regrade'] input[name=confirm]")
        page.click("form[action$='/regrade'] button")
        page.wait_for_url("**/class?done=regrade*")
        assert "teacher: regrade" in page.inner_text("#actions + ul")
        assert len(live.queue.of_student("ann")) == 2
        page.check("form[action$='/reveal'] input[name=confirm]")
        page.click("form[action$='/reveal'] button")
        page.wait_for_url("**/class?done=reveal*")
        assert revealed(live.service, "tiny")
        assert "The final leaderboard is revealed." in page.inner_text("#room-tiny")
        _shot(page, "class")
        # Without the confirmation the server refuses (the box is required in the page too).
        answer = page.request.post(
            f"{live.url}/class/tiny/reveal",
            form={"csrf": "x"},
            headers={"Origin": live.url},
        )
        assert answer.status == 403
        assert errors == []
