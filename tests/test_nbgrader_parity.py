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
    report = grade(ours, "ps1", settings=GradeSettings(sandbox=False), backend="inline")
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
    assert got == expected
    # The showtraceback cheats gain nothing: their test of 'a' fails as it should.
    assert results["cheat-attempt"].item("bar").score == 0
    assert results["cheat-attempt-alternative"].item("bar").score == 0


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
