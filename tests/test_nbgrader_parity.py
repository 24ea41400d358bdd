"""nbgrader parity: on nbgrader's own test notebooks, our per-item scores equal those of
``nbgrader autograde`` run on the same course (both are run here, side by side)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES

from autograder.config import Course
from autograder.grade import GradeSettings, grade

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"nbgrader fixtures not found at {FIXTURES}"),
]


def _course(root: Path, source: str, students: dict[str, str], toml: str = "") -> Course:
    (root / "source" / "ps1").mkdir(parents=True)
    shutil.copyfile(FIXTURES / source, root / "source" / "ps1" / "p1.ipynb")
    if toml:
        (root / "source" / "ps1" / "assignment.toml").write_text(toml)
    for student, fixture in students.items():
        folder = root / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        shutil.copyfile(FIXTURES / fixture, folder / "p1.ipynb")
    return Course.at(root)


def _nbgrader(root: Path, *args: str) -> None:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _nbgrader_scores(root: Path, students: list[str]) -> dict[str, dict[str, tuple[float, bool]]]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in students:
            nb = gb.find_submission_notebook("p1", "ps1", student)
            out[student] = {g.name: (g.score, g.needs_manual_grade) for g in nb.grades}
    return out


def _both(tmp_path: Path, source: str, students: dict[str, str], *, nbgrader_args=(), toml=""):
    theirs = _course(tmp_path / "nbgrader", source, students)
    _nbgrader(theirs.root, "db", "assignment", "add", "ps1")
    _nbgrader(theirs.root, "generate_assignment", "ps1", "--force")
    _nbgrader(theirs.root, "autograde", "ps1", *nbgrader_args)
    expected = _nbgrader_scores(theirs.root, list(students))

    ours = _course(tmp_path / "ours", source, students, toml)
    report = grade(
        ours, "ps1", settings=GradeSettings(sandbox=False), backend="inline", allow_stale=True
    )
    got = {
        r.student: {i.id: (i.score, i.needs_manual_grade) for i in r.items} for r in report.graded
    }
    return expected, got, {r.student: r for r in report.graded}


def test_submitted_fixtures_score_as_nbgrader_scores_them(tmp_path):
    students = {
        p.stem.removeprefix("submitted-"): p.name
        for p in sorted(FIXTURES.glob("submitted-*.ipynb"))
    }
    assert len(students) == 6
    expected, got, results = _both(tmp_path, "submitted-unchanged.ipynb", students)
    # nbgrader's two showtraceback cheats are the one place we are stricter on purpose: the
    # notebook changed how IPython runs code, so every test that ran after it scores 0 (in
    # nbgrader, 'foo', which cannot fail, keeps its point) and the result is flagged.
    for cheat in ("cheat-attempt", "cheat-attempt-alternative"):
        assert expected[cheat]["foo"] == (1.0, False)
        expected[cheat]["foo"] = (0.0, False)
        assert results[cheat].item("bar").score == 0
        assert results[cheat].flags, cheat
    assert got == expected
    assert not any(r.flags for s, r in results.items() if not s.startswith("cheat-attempt"))


def test_the_solution_and_the_released_version_of_test_ipynb_score_as_in_nbgrader(tmp_path):
    # The released (student) version comes from nbgrader itself, so both sides grade the
    # same files: the full solution, and the untouched student version.
    staging = _course(tmp_path / "staging", "test.ipynb", {})
    _nbgrader(staging.root, "db", "assignment", "add", "ps1")
    _nbgrader(staging.root, "generate_assignment", "ps1", "--force")
    released = tmp_path / "released-test.ipynb"
    shutil.copyfile(staging.root / "release" / "ps1" / "p1.ipynb", released)

    students = {"solution": "test.ipynb", "hidden-solution": "test-hidden-tests.ipynb"}
    expected, got, results = _both(tmp_path, "test.ipynb", students)
    assert got == expected
    assert results["solution"].score == 3.0  # 6 points: 3 from tests, 3 graded by hand

    for side in ("nbgrader", "ours"):
        folder = tmp_path / side / "submitted" / "unchanged" / "ps1"
        folder.mkdir(parents=True)
        shutil.copyfile(released, folder / "p1.ipynb")
    _nbgrader(tmp_path / "nbgrader", "autograde", "ps1", "--student", "unchanged")
    theirs = _nbgrader_scores(tmp_path / "nbgrader", ["unchanged"])
    report = grade(
        Course.at(tmp_path / "ours"),
        "ps1",
        settings=GradeSettings(sandbox=False),
        backend="inline",
        students=["unchanged"],
        allow_stale=True,  # nbgrader's course: no release/ of ours
    )
    (unchanged,) = report.graded
    assert {i.id: (i.score, i.needs_manual_grade) for i in unchanged.items} == theirs["unchanged"]


def test_a_cell_past_its_time_limit_scores_as_in_nbgrader(tmp_path):
    expected, got, results = _both(
        tmp_path,
        "timeout.ipynb",
        {"slow": "timeout.ipynb"},
        nbgrader_args=("--ExecutePreprocessor.timeout=1",),
        toml="[execute]\ntimeout_cell = 1\n",
    )
    assert got == expected
    assert results["slow"].status == "timeout"
    assert got["slow"]["correct_squares"] == (0.0, False)


# --- nbgrader's user-guide course: every cell kind, two notebooks, hand grading ----------------


def _gradebook_view(url: str) -> dict[str, dict[str, object]]:
    """What nbgrader's gradebook at ``url`` says of each ps1 submission: every grade's score
    and maximum by (notebook, cell), the notebooks' and the assignment's totals."""
    from nbgrader.api import Gradebook

    view: dict[str, dict[str, object]] = {}
    with Gradebook(url) as gb:
        for submission in gb.assignment_submissions("ps1"):
            view[submission.student.id] = {
                "items": {
                    (nb.name, g.name): (float(g.score), float(g.max_score))
                    for nb in submission.notebooks
                    for g in nb.grades
                },
                "notebooks": {nb.name: (nb.score, nb.max_score) for nb in submission.notebooks},
                "total": (submission.score, submission.max_score),
            }
    return view


def _our_view(course: Course) -> dict[str, dict[str, object]]:
    """The same, from what 'autograder results' reads."""
    from autograder.gradebook import results

    return {
        r.student: {
            "items": {(i.notebook, i.id): (i.score, i.max_score) for i in r.items},
            "notebooks": {t["name"]: (t["score"], t["max_score"]) for t in r.notebook_totals()},
            "total": (r.score, r.max_score),
        }
        for r in results(course, "ps1")
    }


def test_the_user_guide_course_totals_equal_nbgrader_before_and_after_hand_grading(
    tmp_path, user_guide_course
):
    from conftest import enter_hand_grades, make_user_guide_course

    from autograder.gradebook import results

    theirs = make_user_guide_course(tmp_path / "nbgrader")
    _nbgrader(theirs.root, "db", "assignment", "add", "ps1")
    _nbgrader(theirs.root, "generate_assignment", "ps1", "--force")
    _nbgrader(theirs.root, "autograde", "ps1")
    expected = _gradebook_view(theirs.gradebook_url)
    assert expected["hacker"]["total"] == (3.0, 13.0)  # nbgrader's documented totals
    assert expected["bitdiddle"]["total"] == (1.5, 13.0)
    ours = user_guide_course
    assert _our_view(ours) == expected
    # nbgrader reading our gradebook agrees too (formgrader and 'nbgrader export' do).
    assert _gradebook_view(ours.gradebook_url) == expected

    by_student = {r.student: r for r in results(ours, "ps1")}
    task = by_student["hacker"].item("cell-938593c4a215c6cc")
    assert (task.kind, task.max_score, task.message) == (
        "task",
        4.0,
        "a task graded by hand: waiting for a grader",
    )
    assert by_student["hacker"].item("part-a").needs_manual_grade

    # Hand grades show at the next 'results' without regrading, as nbgrader scores them
    # (the manual score overrides the automatic one; extra credit counts).
    for url in (theirs.gradebook_url, ours.gradebook_url):
        enter_hand_grades(url)
    expected = _gradebook_view(theirs.gradebook_url)
    assert expected["hacker"]["total"] == (9.0, 13.0)
    assert _our_view(ours) == expected
    hacker = {r.student: r for r in results(ours, "ps1")}["hacker"]
    application = hacker.item("sum_of_squares_application")
    assert application.message == (
        "graded by hand: 2 of 2 points (including 0.5 extra credit); the grader wrote: "
        "Nice use case [/] <b>bold</b>"
    )
    assert not application.needs_manual_grade and application.manual_score == 1.5
    overridden = hacker.item("correct_squares")
    assert overridden.score == 0 and not overridden.passed
    assert overridden.message.startswith("score set by a grader: 0 of 1 points (the automatic")
    assert hacker.item("part-b").message == "answered; waiting for a grader"

    # Regrading, by either tool, never erases a hand grade.
    _nbgrader(theirs.root, "autograde", "ps1", "--force")
    report = grade(
        ours,
        "ps1",
        settings=GradeSettings(sandbox=False),
        backend="inline",
        force=True,
        allow_stale=True,
    )
    assert {r.student: r.score for r in report.graded} == {"bitdiddle": 3.5, "hacker": 9.0}
    expected = _gradebook_view(theirs.gradebook_url)
    assert expected["hacker"]["total"] == (9.0, 13.0)
    assert _our_view(ours) == expected


def test_nbgrader_grades_a_notebook_with_the_hand_in_cell_as_without_it(tmp_path):
    """The cell ``release`` adds with ``[service] url`` carries no nbgrader metadata (an
    nbgrader cell unknown to its gradebook makes nbgrader refuse the notebook) and does
    nothing under ``NBGRADER_EXECUTION``: nbgrader's autograde scores it as without."""
    import nbformat
    from conftest import complete, make_tiny_course
    from nbgrader.api import Gradebook

    from autograder.submitcell import add_submit_cell

    ours = make_tiny_course(tmp_path / "ours")
    root = tmp_path / "nbgrader"
    (root / "source" / "tiny").mkdir(parents=True)
    shutil.copyfile(ours.source("tiny") / "tiny.ipynb", root / "source" / "tiny" / "tiny.ipynb")
    _nbgrader(root, "db", "assignment", "add", "tiny")
    _nbgrader(root, "generate_assignment", "tiny", "--force")
    done = complete(ours)
    cell = dict(server="http://127.0.0.1:9", assignment="tiny", notebook="tiny.ipynb")
    for student, nb in (("without", done), ("with", add_submit_cell(done, **cell))):
        folder = root / "submitted" / student / "tiny"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "tiny.ipynb")
    _nbgrader(root, "autograde", "tiny")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        scores = {
            s: {g.name: g.score for g in gb.find_submission_notebook("tiny", "tiny", s).grades}
            for s in ("without", "with")
        }
    assert scores["with"] == scores["without"]
    assert sum(scores["with"].values()) == 3
    graded = nbformat.read(root / "autograded" / "with" / "tiny" / "tiny.ipynb", as_version=4)
    assert graded.cells[-1].outputs == []  # it ran, and did nothing
