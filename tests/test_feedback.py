"""Feedback pages and the leaderboard: what they show, what they must never show, and the
command-line errors. One small class is graded for real (two kernels); the accuracy and CSV
items are written into the gradebook with the details the checks record."""

from __future__ import annotations

import dataclasses
import html
import os
import re
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import complete, tiny_source, with_cell, write_nb
from nbformat.v4 import new_code_cell

from autograder import gradebook
from autograder.cli import cli
from autograder.config import Course, load_assignment
from autograder.feedback import write_feedback
from autograder.grade import GradeSettings, grade
from autograder.leaderboard import rank, write_leaderboard
from autograder.release import release, source_index
from autograder.results import ItemResult, SubmissionResult

MARKER = "HIDDEN-MARKER-7f3a"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
CHECKS = """
[[checks]]
kind = "accuracy"
id = "heldout_accuracy"
points = 2
threshold = 0.9

[[checks]]
kind = "csv"
id = "kaggle_csv"
points = 1
"""


def _add_checks(course: Course) -> None:
    """Give the tiny assignment an accuracy and a CSV check (after grading: no kernel needs
    them) and register them in the gradebook, as 'grade' does."""
    toml = course.source("tiny") / "assignment.toml"
    toml.write_text(toml.read_text() + CHECKS)
    config = load_assignment(course, "tiny")
    gradebook.register_assignment(course.gradebook_url, config, source_index(course, config))


def accuracy_item(*, correct_per_class: list[int], total_per_class: int = 10) -> ItemResult:
    k = len(correct_per_class)
    matrix = []
    for i, right in enumerate(correct_per_class):
        row = [0] * k
        row[i] = right
        row[(i + 1) % k] += total_per_class - right
        matrix.append(row)
    correct, total = sum(correct_per_class), k * total_per_class
    accuracy = correct / total
    return ItemResult(
        id="heldout_accuracy",
        kind="accuracy",
        score=2.0 if accuracy >= 0.9 else 0.0,
        max_score=2.0,
        passed=accuracy >= 0.9,
        message=(
            f"held-out accuracy {accuracy:.3f} {'meets' if accuracy >= 0.9 else 'is below'} "
            f"the required 0.900 ({correct} of {total} correct)"
        ),
        notebook="tiny",
        details={
            "accuracy": accuracy,
            "correct": correct,
            "total": total,
            "threshold": 0.9,
            "classes": [str(c) for c in range(k)],
            "per_class_total": [total_per_class] * k,
            "per_class_correct": correct_per_class,
            "per_class_accuracy": [c / total_per_class for c in correct_per_class],
            "confusion_matrix": matrix,
        },
    )


def csv_item(public: float | None, private: float | None, message: str = "") -> ItemResult:
    if public is None:
        return ItemResult(
            id="kaggle_csv",
            kind="csv",
            score=0.0,
            max_score=1.0,
            passed=False,
            message=message,
            notebook="tiny",
            details={
                "report": {
                    "valid": False,
                    "rows_seen": 3,
                    "counts": {"id-duplicate": 3},
                    "problems": [
                        {"rule": "id-duplicate", "line": 3, "message": "ImageId 1 appears twice"},
                        {"rule": "id-duplicate", "line": 4, "message": "ImageId 1 appears again"},
                    ],
                }
            },
        )
    assert private is not None
    overall = (public + private) / 2
    return ItemResult(
        id="kaggle_csv",
        kind="csv",
        score=1.0,
        max_score=1.0,
        passed=True,
        message=f"submission.csv is valid; its public score is {public:.3f}",
        notebook="tiny",
        details={"public": public, "private": private, "overall": overall, "rows": 40},
    )


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """alice passes and prints things a page must not run or leak; bob fails the hidden test.
    Graded once for the module (two kernels); tests only read it and write pages."""
    root = tmp_path_factory.mktemp("feedback") / "course"
    nb = tiny_source()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_squares":
            cell.source = cell.source.replace(
                "assert squares(1) == [1]", f"assert squares(1) == [1]  # {MARKER}"
            )
    write_nb(nb, root / "source" / "tiny" / "tiny.ipynb")
    (root / "source" / "tiny" / "assignment.toml").write_text(
        "[assignment]\ntitle = 'Tiny'\n\n[execute]\ntimeout_cell = 20\ntimeout_total = 60\n"
    )
    tiny_course = Course.at(root)
    release(tiny_course, "tiny")

    def submit(student: str, notebook: nbformat.NotebookNode) -> None:
        write_nb(notebook, tiny_course.submitted(student, "tiny") / "tiny.ipynb")

    alice = complete(tiny_course)
    # Before the cell holding hidden tests: shown, as escaped text and checked images.
    first_test = next(
        n
        for n, c in enumerate(alice.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_squares"
    )
    alice.cells[first_test:first_test] = [
        new_code_cell("print(\"<script>alert('pwned')</script>\")"),
        new_code_cell(
            "from IPython.display import HTML, Image, display\n"
            "import base64\n"
            "display(HTML(\"<script>alert('html')</script><img src='http://example.com/x.png'>\"))\n"
            f'display(Image(data=base64.b64decode("{PNG}")))\n'
            'print("\\n".join(In))'
        ),
    ]
    # After it: the kernel's input history holds the test cells as run, hidden tests included,
    # and nothing printed from then on is shown.
    alice.cells.append(new_code_cell('print("AFTER-" + "HIDDEN")\nprint("\\n".join(In))'))
    submit("alice", alice)
    submit(
        "bob",
        with_cell(
            complete(tiny_course),
            "squares",
            "def squares(n):\n    return [i * i for i in range(1, n + 1)] if n > 1 else []",
        ),
    )
    grade(tiny_course, "tiny", settings=GradeSettings(sandbox=False), backend="inline")

    _add_checks(tiny_course)
    history = {"loss": [1.2, 0.7, 0.4], "val_loss": [1.3, 0.9, 0.6], "accuracy": [0.5, 0.8, 0.9]}
    extra = {
        "alice": (accuracy_item(correct_per_class=[10, 9, 10, 8]), csv_item(0.95, 0.8123)),
        "bob": (
            accuracy_item(correct_per_class=[3, 9, 10, 8]),
            csv_item(None, None, "submission.csv is not a valid digit-recognizer submission"),
        ),
    }
    for result in gradebook.load_results(tiny_course.gradebook_url, "tiny"):
        details = {**result.details, "history": history}
        items = [*result.items, *extra[result.student]]
        gradebook.record(tiny_course.gradebook_url, result.with_items(items, details=details))
    return tiny_course


def visible(page: str) -> str:
    """The text of a page as a reader sees it: no tags, entities as characters."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_feedback_pages_show_score_items_and_checks_without_hidden_tests(graded_course):
    paths = write_feedback(graded_course, "tiny")
    assert paths == [graded_course.feedback(s, "tiny") / "index.html" for s in ("alice", "bob")]
    alice, bob = (p.read_text() for p in paths)

    # Score and every item.
    assert '<span class="score">6</span> / 7 points' in alice
    assert '<span class="score">1</span> / 7 points' in bob
    for item in ("test_squares", "test_total", "explain", "heldout_accuracy", "kaggle_csv"):
        # Each item links to its cell (or to its section, for the checks).
        link = rf'<td><a href="#[^"]+"><strong>{item}</strong></a>'
        assert re.search(link, alice) and re.search(link, bob), item
    assert "the test failed in a hidden test: AssertionError" in bob

    # The hidden test's text appears nowhere: not in sources, tracebacks, messages or outputs,
    # neither in the markup nor in the text a reader sees (code is split into spans).
    for page in (alice, bob, visible(alice), visible(bob)):
        assert MARKER not in page
        assert "squares(1)" not in page
        assert "HIDDEN TESTS" not in page
    # From the cell holding hidden tests on, outputs are left out, with the reason once.
    for page in (alice, bob):
        assert page.count("Outputs from here on are not shown.") == 1
        assert "AFTER-HIDDEN" not in page and "AssertionError: " not in page
    # ...while the visible test is shown as released.
    assert "assert squares(3) == [1, 4, 9]" in visible(alice)

    # Student output is escaped text; displayed HTML is not rendered; images are inline.
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in alice
    assert "<script" not in alice
    assert "&lt;IPython.core.display.HTML object&gt;" in alice
    assert f'src="data:image/png;base64,{PNG}"' in alice
    assert re.findall(r'src="([^"]*)"', alice) == [f"data:image/png;base64,{PNG}"]
    assert "<img src='http" not in alice

    # Accuracy against its threshold, per class, and the confusion matrix.
    assert "<strong>37</strong> of <strong>40</strong>" in alice
    assert '<strong class="pass">92.5%</strong>;\nthe points need 90.0%' in alice
    assert '<table class="confusion">' in alice
    assert '<td style="background: rgba(0,114,178,0.90)">10</td>' in alice
    assert '<td style="background: rgba(213,94,0,0.22)">1</td>' in alice
    assert (
        '<td>1</td><td class="num">9</td><td class="num">10</td>\n<td class="num">90.0%</td>'
        in alice
    )

    # The CSV: public score only before the end; an invalid file's first problems.
    assert "Public score: <strong>0.9500</strong>" in alice
    assert "0.812" not in alice and "0.881" not in alice  # private, overall
    # The file was written after the hidden tests ran: its problems by rule, never its values.
    assert (
        "line 3: an id on more than one row\nline 4: an id on more than one row\n... and 1 more"
        in bob
    )
    assert "ImageId 1" not in bob

    # Training curves, as inline SVG.
    assert alice.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert "<title>loss</title>" in alice and "<title>accuracy</title>" in alice

    # Readable on a phone, nothing loaded from outside.
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in alice
    assert "default-src 'none'; img-src data:" in alice
    assert not re.search(r"(src|href)=\"(https?:)?//", alice)


def test_final_feedback_reveals_the_private_score(graded_course):
    (path,) = write_feedback(graded_course, "tiny", students=["alice"], final=True)
    page = path.read_text()
    assert "private score: <strong>0.8123</strong>" in page
    assert path == graded_course.feedback("alice", "tiny") / "index.html"


def _result(student: str, csv: ItemResult, submitted_at: str | None) -> SubmissionResult:
    tests = [
        ItemResult("test_squares", "test", 2.0, 2.0, True, "passed", notebook="tiny"),
        ItemResult("test_total", "test", 0.0, 1.0, False, "the test did not pass", notebook="tiny"),
    ]
    return SubmissionResult(
        student=student,
        assignment="tiny",
        status="graded",
        items=(*tests, csv),
        submitted_at=submitted_at,
    )


@pytest.fixture
def class_course(tiny_course: Course) -> Course:
    """Six recorded results, no kernel run: ties on the public score, one without a time."""
    config = load_assignment(tiny_course, "tiny")
    gradebook.register_assignment(
        tiny_course.gradebook_url, config, source_index(tiny_course, config)
    )
    _add_checks(tiny_course)
    for student, public, private, when in [
        ("ann", 0.91, 0.71, "2025-05-01T10:05:00+00:00"),
        ("ben", 0.97, 0.61, "2025-05-01T10:20:00+00:00"),
        ("cat", 0.91, 0.81, "2025-05-01T10:01:00+00:00"),
        ("dan", 0.91, 0.93, None),
        ("eve", 0.50, 0.55, "2025-05-01T09:00:00+00:00"),
    ]:
        gradebook.record(
            tiny_course.gradebook_url, _result(student, csv_item(public, private), when)
        )
    gradebook.record(
        tiny_course.gradebook_url,
        _result(
            "mallory",
            csv_item(
                None,
                None,
                "the notebook did not write submission.csv; run the cell "
                "that saves the predictions",
            ),
            None,
        ),
    )
    return tiny_course


def test_leaderboard_ranks_public_scores_with_ties_to_the_earlier_submission(class_course):
    results = gradebook.load_results(class_course.gradebook_url, "tiny")
    entries, unranked = rank(results, "kaggle_csv")
    assert [(e.rank, e.student, e.public) for e in entries] == [
        (1, "ben", 0.97),
        (2, "cat", 0.91),  # 10:01 beats ann's 10:05
        (3, "ann", 0.91),
        (4, "dan", 0.91),  # no submission time: after every timed one
        (5, "eve", 0.50),
    ]
    assert all(e.private is None for e in entries)
    assert [(u.student, u.reason) for u in unranked] == [
        (
            "mallory",
            "the notebook did not write submission.csv; run the cell that saves the predictions",
        )
    ]
    final, _ = rank(results, "kaggle_csv", final=True)
    assert [e.student for e in final] == ["dan", "cat", "ann", "ben", "eve"]


def test_leaderboard_page_hides_private_scores_until_final(class_course, tmp_path):
    path = write_leaderboard(class_course, "tiny")
    assert path == class_course.root / "leaderboard.html"
    page = path.read_text()
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>(\w+)</td>", page)
    assert rows == [("1", "ben"), ("2", "cat"), ("3", "ann"), ("4", "dan"), ("5", "eve")]
    for private in ("0.71", "0.61", "0.81", "0.93", "0.55"):
        assert private not in page
    # The overall score would give the private one away: it is not there either.
    assert "0.79" not in page and "0.86" not in page
    # Who is not ranked, and why, is for the instructor's copy only.
    assert "mallory" not in page and "did not write" not in page
    mine = write_leaderboard(class_course, "tiny", output=tmp_path / "mine.html", reasons=True)
    assert "<td>mallory</td><td>the notebook did not write submission.csv" in mine.read_text()
    # The maximum is the gradebook's: the answer "explain" (1) and the accuracy check (2),
    # left out of these records, count as they do in nbgrader's totals.
    assert "6 submission(s); mean score 2.83 of 7." in page
    assert (
        '<tr><td>kaggle_csv</td><td>csv</td>\n<td class="num">5 / 6</td>'
        '<td class="num">83%</td></tr>' in page
    )
    assert '<td class="num">0 / 6</td><td class="num">0%</td>' in page  # test_total
    assert "<title>total scores of the class</title>" in page
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)

    final = write_leaderboard(class_course, "tiny", final=True, output=tmp_path / "final.html")
    assert final == tmp_path / "final.html"
    text = final.read_text()
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>(\w+)</td>", text)
    assert [s for _, s in rows] == ["dan", "cat", "ann", "ben", "eve"]
    assert '<td class="num">0.9300</td><td class="num">0.9100</td>' in text


def test_student_names_are_escaped_on_the_leaderboard(class_course):
    ranked = rank([_result("x", csv_item(0.5, 0.5), None)], "kaggle_csv")[0]
    from autograder.pages import render

    html = render(
        "leaderboard.html.j2",
        title="<i>T</i>",
        assignment="tiny",
        check_id="kaggle_csv",
        final=False,
        entries=[dataclasses.replace(ranked[0], student="<script>x</script>")],
        unranked=[],
        n=1,
        mean=1.0,
        max_score=3.0,
        chart="",
        items=[],
    )
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert "&lt;i&gt;T&lt;/i&gt;" in html


def test_markdown_cells_cannot_run_script_or_load_images():
    from autograder.richtext import Markdown

    page = Markdown()(
        "# Title <script>alert(1)</script>\n\n![chart](http://example.com/c.png) "
        "[bad](javascript:alert(1)) [good](https://keras.io) <img src=x onerror=alert(1)>"
    )
    assert page == (
        "<h1>Title &lt;script&gt;alert(1)&lt;/script&gt;</h1>\n<p><em>[image: chart]</em> bad "
        '<a href="https://keras.io">good</a> &lt;img src=x onerror=alert(1)&gt;</p>\n'
    )


def test_only_clean_png_and_jpeg_outputs_become_images():
    from autograder.pages import image_uri

    assert image_uri("image/png", PNG) == f"data:image/png;base64,{PNG}"
    assert image_uri("image/png", [PNG[:20], "\n", PNG[20:]]) == f"data:image/png;base64,{PNG}"
    assert image_uri("image/png", PNG + '"><script>') is None
    assert image_uri("image/jpeg", PNG) is None  # not a JPEG
    assert image_uri("image/svg+xml", PNG) is None


def _invoke(course: Course, *args: str):
    return CliRunner().invoke(cli, ["--course-dir", str(course.root), *args])


def test_cli_writes_pages_and_names_what_it_wrote(graded_course):
    out = _invoke(graded_course, "feedback", "tiny", "--student", "bob")
    assert out.exit_code == 0, out.output
    page = graded_course.feedback("bob", "tiny") / "index.html"
    assert out.output == (
        f"wrote 1 feedback page(s) under {graded_course.root / 'feedback'}\n  {page}\n"
    )
    out = _invoke(graded_course, "leaderboard", "tiny")
    assert out.exit_code == 0, out.output
    assert out.output == f"wrote public leaderboard {graded_course.root / 'leaderboard.html'}\n"


def test_cli_errors_say_what_to_do(tiny_course):
    root = tiny_course.root
    out = _invoke(tiny_course, "feedback", "nope")
    assert out.exit_code == 2
    assert out.output == (
        f"error: no assignment 'nope' in {root / 'source'} (assignments: tiny); check the "
        "name, or run the command from the course folder (--course-dir)\n"
    )
    out = _invoke(tiny_course, "leaderboard", "nope")
    assert out.exit_code == 2 and out.output.startswith("error: no assignment 'nope' in ")

    out = _invoke(tiny_course, "feedback", "tiny")
    assert out.exit_code == 2
    assert out.output == "error: nothing graded yet for tiny; run 'autograder grade tiny' first\n"

    out = _invoke(tiny_course, "leaderboard", "tiny")
    assert out.exit_code == 2
    assert out.output == (
        "error: tiny has no csv check in its assignment.toml, and the leaderboard ranks Kaggle "
        "CSV scores; add a [[checks]] table with kind = 'csv', or use 'autograder results tiny'\n"
    )

    _add_checks(tiny_course)
    out = _invoke(tiny_course, "leaderboard", "tiny")
    assert out.output == "error: nothing graded yet for tiny; run 'autograder grade tiny' first\n"
    gradebook.record(tiny_course.gradebook_url, _result("ann", csv_item(0.9, 0.8), None))
    out = _invoke(tiny_course, "feedback", "tiny", "--student", "zed", "--student", "ann")
    assert out.exit_code == 2
    assert out.output == ("error: no graded submission of tiny for zed; graded students are ann\n")


# --- in a real browser ------------------------------------------------------------------


def _artifacts(tmp_path: Path) -> Path:
    """Where the screenshots are kept: $AUTOGRADER_ARTIFACTS, else tests/artifacts/ (ignored
    by git), so a run leaves them to look at."""
    default = Path(__file__).parent / "artifacts"
    folder = Path(os.environ.get("AUTOGRADER_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _hand_graded_page(course: Course, student: str = "hacker") -> str:
    from conftest import enter_hand_grades

    enter_hand_grades(course.gradebook_url)
    [page] = write_feedback(course, "ps1", students=[student])
    return page.read_text()


def test_a_hand_grade_reaches_the_page_at_the_next_feedback_without_regrading(
    user_guide_course,
):
    [page] = write_feedback(user_guide_course, "ps1", students=["hacker"])
    before = page.read_text()
    assert '<span class="score">3</span> / 13 points' in before
    # Two answers, a task and two written answers wait, in the table and on their cells.
    assert before.count(">waiting for a grader</") == 2 * 5
    html = _hand_graded_page(user_guide_course)
    assert '<span class="score">9</span> / 13 points' in html
    # Per-notebook subtotals, in the contents, the item table and the notebooks' headings.
    assert 'problem1.ipynb</a> <span class="muted">(8 / 10)</span>' in html
    assert '<tr class="subtotal"><th>problem2.ipynb</th><th class="num">1 / 3</th>' in html
    # The grader's comment, escaped like everything else.
    assert "the grader wrote: Nice use case [/] &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>bold</b>" not in html
    assert "graded by hand: 3 of 4 points; the grader wrote: Geometric sum only." in html
    assert "score set by a grader: 0 of 1 points" in html


def test_the_page_shows_math_the_released_image_highlighted_code_and_cell_verdicts(
    user_guide_course,
):
    html = _hand_graded_page(user_guide_course)
    # Math as MathML, no MathJax, no dollar signs left of the problem text.
    assert html.count("<math ") >= 10 and "mathjax" not in html.lower()
    assert "$x_i=i^2$" not in html
    # The assignment's own image, inlined from the instructor's files.
    assert html.count('<img class="figure" src="data:image/png;base64,iVBOR') == 1
    assert "[image: ]" not in html
    # Code highlighted by Pygments, styled by its classes.
    assert (
        '<span class="k">def</span><span class="w"> </span><span class="nf">squares</span>' in html
    )
    assert "pre.source .k {" in html
    # Every scored cell headed by its verdict and points, and linked from the item table.
    cells = re.findall(r'<div class="cell [^"]*graded ([a-z]+)-cell" id="(cell-\d+-\d+)">', html)
    assert len(cells) == 9  # 4 tests, 4 answers, 1 task
    assert {state for state, _ in cells} == {"pass", "fail", "hand", "pending"}
    for _, anchor in cells:
        assert f'<a href="#{anchor}"><strong>' in html
    assert (
        '<strong>part-b</strong> <span class="muted">(manual)</span>\n&middot; <span class="pending">waiting for a grader</span> &middot; 0 / 2 points'
        in html
    )
    assert '<span class="hand">graded by hand</span> &middot; 1 / 1 points' in html


def test_pages_load_in_headless_chromium_without_console_errors(
    graded_course, user_guide_course, tmp_path, record_property
):
    from browser import Chromium, chromium_path

    binary = chromium_path()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed (dev extra)")
    _hand_graded_page(user_guide_course)
    pages = {
        "feedback-alice": write_feedback(graded_course, "tiny", students=["alice"])[0],
        "feedback-bob": write_feedback(graded_course, "tiny", students=["bob"])[0],
        "leaderboard": write_leaderboard(graded_course, "tiny"),
        "feedback-user-guide": user_guide_course.feedback("hacker", "ps1") / "index.html",
    }
    artifacts = _artifacts(tmp_path)
    with Chromium(binary) as browser:
        for name, path in pages.items():
            load = browser.load(path)
            shot = artifacts / f"{name}.png"
            shot.write_bytes(load.screenshot)
            record_property(f"screenshot-{name}", str(shot))
            print(f"screenshot of {path}: {shot}")
            assert load.errors == [], f"{name}: console errors {load.errors}"
            assert load.screenshot.startswith(b"\x89PNG"), name
            assert load.overflow_px <= 0, (
                f"{name} scrolls sideways on a phone by {load.overflow_px} px"
            )
            assert load.title
            if name == "feedback-user-guide":
                page = load.page
                # MathML is laid out by the browser itself (a box with a size, not raw TeX).
                boxes = page.evaluate(
                    "[...document.querySelectorAll('math')].map(m => m.getBoundingClientRect())"
                    ".map(r => [r.width, r.height])"
                )
                assert len(boxes) >= 10 and all(w > 0 and h > 0 for w, h in boxes), boxes
                assert page.evaluate("[...document.images].map(i => i.naturalWidth)") == [200]
                colours = page.evaluate(
                    "[...document.querySelectorAll('pre.source .k')].slice(0, 3)"
                    ".map(e => getComputedStyle(e).color)"
                )
                assert colours and all(c != "rgb(27, 31, 36)" for c in colours), colours
                assert page.locator(".verdict").count() == 9
                # A link of the item table lands on its cell.
                page.click("a[href^='#cell-'] >> nth=0")
                assert page.evaluate("location.hash").startswith("#cell-")


def test_a_submission_that_never_ran_gets_a_page_saying_why(tiny_course, submit):
    submit("dave", b"I could not get Jupyter to start\n")
    grade(tiny_course, "tiny", settings=GradeSettings(sandbox=False), backend="inline")
    [page] = write_feedback(tiny_course, "tiny")
    html = page.read_text()
    assert '<span class="score">0</span> / 4 points' in html
    assert '<p class="muted">tiny.ipynb is not valid notebook JSON (line 1, column 1' in html


def test_a_test_cell_missing_from_the_submission_lost_its_points_on_the_page():
    from autograder.feedback import STATE_LABELS, _state

    missing = ItemResult(
        "test_total", "test", 0.0, 1.0, False,
        "this graded cell is missing from the submission; start from the released notebook "
        "and keep its cells",
        needs_manual_grade=True,
    )  # fmt: skip
    assert STATE_LABELS[_state(missing)] == "lost points"
    answer = ItemResult("explain", "manual", 0.0, 1.0, False, "", needs_manual_grade=True)
    assert STATE_LABELS[_state(answer)] == "waiting for a grader"
    hand = dataclasses.replace(answer, manual_score=1.0, needs_manual_grade=False)
    assert STATE_LABELS[_state(hand)] == "graded by hand"
