"""autograder new / new-assignment: a course from nothing, whose assignment validates."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from autograder.cli import cli
from autograder.config import Course, load_assignment
from autograder.release import release


def test_new_makes_a_released_course_with_every_cell_kind_and_both_checks(tmp_path):
    folder = tmp_path / "fashion"
    out = CliRunner().invoke(cli, ["new", str(folder), "--dataset", "fashion-mnist"])
    assert out.exit_code == 0, out.output
    course = Course.at(folder)
    config = load_assignment(course, "first")
    assert config.dataset == "fashion-mnist"
    assert [(c.kind, c.dataset) for c in config.checks] == [
        ("accuracy", "fashion-mnist"),
        ("csv", "fashion-mnist"),
    ]
    assert release(course, "first", check=True).in_sync
    released = (folder / "release" / "first" / "first.ipynb").read_text()
    assert "HIDDEN TESTS" not in released and "NotImplementedError" in released
    out = CliRunner().invoke(cli, ["--course-dir", str(folder), "new-assignment", "second"])
    assert out.exit_code == 0, out.output
    assert course.assignments() == ["first", "second"]
    again = CliRunner().invoke(cli, ["new", str(folder)])
    assert again.exit_code == 2 and "is not empty" in again.stderr


@pytest.mark.slow
def test_the_new_assignment_validates(tmp_path):
    from autograder.datasets import prepare
    from autograder.grade import GradeSettings
    from autograder.validate import validate

    folder = tmp_path / "course"
    CliRunner().invoke(cli, ["new", str(folder)])
    course = Course.at(folder)
    prepare("digits", course=course)
    report = validate(course, "first", settings=GradeSettings(sandbox=False))
    assert report.ok, report.problems
    assert sorted(line.split()[0] for line in report.figures) == ["hand", "hand", "ok", "ok", "ok"]
