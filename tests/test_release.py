"""release: student versions from nbgrader's preprocessors; --check catches a stale release/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, tiny_source, write_nb

from autograder.cli import cli
from autograder.config import Course
from autograder.release import GRADEBOOK_STEPS, RELEASE_STEPS, release


def _invoke(course: Course, *args: str):
    return CliRunner().invoke(cli, ["--course-dir", str(course.root), *args])


def test_release_strips_solutions_hidden_tests_and_outputs(tiny_course):
    text = (tiny_course.release("tiny") / "tiny.ipynb").read_text()
    assert "BEGIN SOLUTION" not in text and "return [i * i" not in text
    assert "HIDDEN TESTS" not in text and "squares(1) == [1]" not in text
    nb = nbformat.read(tiny_course.release("tiny") / "tiny.ipynb", as_version=4)
    squares = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "squares"
    )
    assert "raise NotImplementedError()" in squares.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # Non-notebook files go along; the grader's configuration does not.
    assert (tiny_course.release("tiny") / "notes.txt").read_text() == "released with the notebook\n"
    assert not (tiny_course.release("tiny") / "assignment.toml").exists()


def test_release_is_byte_stable_and_check_passes_after_it(tiny_course):
    before = (tiny_course.release("tiny") / "tiny.ipynb").read_bytes()
    report = release(tiny_course, "tiny")
    assert report.written == ()
    assert (tiny_course.release("tiny") / "tiny.ipynb").read_bytes() == before
    result = _invoke(tiny_course, "release", "--check")
    assert result.exit_code == 0, result.output
    assert result.output == "release/ is up to date with source/\n"


def test_check_names_every_stale_missing_and_extra_file_and_writes_nothing(tiny_course):
    src = tiny_course.source("tiny") / "tiny.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells[0].source += "\nNow with more words."
    nbformat.write(nb, src)
    (tiny_course.source("tiny") / "extra.csv").write_text("a,b\n")
    (tiny_course.release("tiny") / "old.txt").write_text("left over\n")
    before = (tiny_course.release("tiny") / "tiny.ipynb").read_bytes()

    result = _invoke(tiny_course, "release", "--check")

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "release/tiny/tiny.ipynb is stale (source/ changed since the last release)",
        "release/tiny/extra.csv is missing",
        "release/tiny/old.txt is not produced by source/ any more",
    ]
    assert "run 'autograder release' to bring release/ up to date" in result.stderr
    assert (tiny_course.release("tiny") / "tiny.ipynb").read_bytes() == before
    assert _invoke(tiny_course, "release").exit_code == 0
    assert _invoke(tiny_course, "release", "--check").exit_code == 0
    assert not (tiny_course.release("tiny") / "old.txt").exists()


def test_unknown_assignment_is_a_usage_error_naming_the_known_ones(tiny_course):
    result = _invoke(tiny_course, "release", "nope")
    assert result.exit_code == 2
    assert f"error: no assignment 'nope' in {tiny_course.root / 'source'} (assignments: tiny)" in (
        result.stderr
    )


def test_step_order_is_nbgraders_generate_assignment_order():
    assert GRADEBOOK_STEPS == (
        "lock_cells",
        "clear_solutions",
        "clear_outputs",
        "check_metadata",
        "compute_checksums",
    )
    assert (
        *GRADEBOOK_STEPS,
        "clear_hidden_tests",
        "clear_mark_scheme",
        "compute_checksums",
        "check_metadata",
    ) == RELEASE_STEPS


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"nbgrader fixtures not found at {FIXTURES}")
def test_release_equals_nbgrader_generate_assignment(tmp_path):
    for name in ("test.ipynb", "test-hidden-tests.ipynb"):
        root = tmp_path / name
        nb = nbformat.read(FIXTURES / name, as_version=4)
        write_nb(nb, root / "source" / "ps1" / "p1.ipynb")
        course = Course.at(root)
        release(course, "ps1")
        ours = json.loads((course.release("ps1") / "p1.ipynb").read_text())

        theirs_root = tmp_path / f"{name}-nbgrader"
        write_nb(nb, theirs_root / "source" / "ps1" / "p1.ipynb")
        env = dict(
            os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "generate_assignment",
                "ps1",
                "--force",
                "--CourseDirectory.db_assignments=[{'name': 'ps1'}]",
            ],
            cwd=theirs_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        theirs = json.loads((theirs_root / "release" / "ps1" / "p1.ipynb").read_text())
        assert [c["source"] for c in ours["cells"]] == [c["source"] for c in theirs["cells"]]
        assert [c["metadata"] for c in ours["cells"]] == [c["metadata"] for c in theirs["cells"]]


def test_tiny_source_round_trips(tmp_path):
    path = write_nb(tiny_source(), tmp_path / "t.ipynb")
    assert nbformat.read(path, as_version=4).cells[2].metadata.nbgrader.grade_id == "squares"


@pytest.mark.parametrize(
    "source",
    [
        "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 2\n### END HIDDEN TESTS\n",
        "a = 1\r\n# BEGIN HIDDEN TESTS\r\nb = 2\r\n# END HIDDEN TESTS\r\nc = 3",
        "x = 1  # BEGIN HIDDEN TESTS inline\ny = 2\nz = 3 # END HIDDEN TESTS\n\n",
        "### BEGIN HIDDEN TESTS\nfirst\n### END HIDDEN TESTS\nkept\n"
        "### BEGIN HIDDEN TESTS\nsecond\n### END HIDDEN TESTS",
        "no markers at all\n",
        "",
    ],
)
def test_hidden_tests_are_stripped_exactly_as_nbgrader_releases_them(source):
    from nbformat.v4 import new_code_cell
    from nbgrader.preprocessors import ClearHiddenTests

    from autograder.release import hidden_test_lines, split_hidden_tests, strip_hidden_tests

    cell = new_code_cell(source)
    ClearHiddenTests()._remove_hidden_test_region(cell)
    assert strip_hidden_tests(source, strict=True) == strip_hidden_tests(source) == cell.source
    kept, hidden = split_hidden_tests(source)
    assert hidden_test_lines(source) == hidden
    markers = [line for line in source.split("\n") if "HIDDEN TESTS" in line]
    # Every line but the markers is either released or hidden, never both, never lost.
    assert len(kept.split("\n")) + len(hidden) == len(source.split("\n")) - len(markers)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("# BEGIN HIDDEN TESTS\n# BEGIN HIDDEN TESTS\n# END HIDDEN TESTS", "nested"),
        ("a\n# BEGIN HIDDEN TESTS\nb", "No end hidden tests"),
    ],
)
def test_a_malformed_hidden_region_fails_as_in_nbgrader(source, error):
    from nbformat.v4 import new_code_cell
    from nbgrader.preprocessors import ClearHiddenTests

    from autograder.release import strip_hidden_tests

    with pytest.raises(RuntimeError, match=error):
        ClearHiddenTests()._remove_hidden_test_region(new_code_cell(source))
    with pytest.raises(RuntimeError, match=error):
        strip_hidden_tests(source, strict=True)
