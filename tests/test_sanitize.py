"""Sanitizing a submission: every kind of cell tampering is undone, and the order is pinned."""

from __future__ import annotations

import copy

import pytest
from conftest import tiny_source
from nbformat.v4 import new_code_cell

from autograder.errors import InvalidNotebookError
from autograder.release import GRADEBOOK_STEPS, index_notebook, run_steps
from autograder.sanitize import (
    SANITIZE_STEPS,
    SanitizeContext,
    check_metadata,
    clear_outputs,
    deduplicate_ids,
    drop_hand_in_cell,
    force_kernelspec,
    inject_parameters,
    restore_cells,
    sanitize,
)


@pytest.fixture
def source():
    nb = run_steps(tiny_source(), GRADEBOOK_STEPS, notebook="tiny", assignment="tiny")
    return index_notebook(nb, "tiny")


def student(source_nb=None):
    nb = run_steps(
        tiny_source(),
        (*GRADEBOOK_STEPS, "clear_hidden_tests", "compute_checksums"),
        notebook="tiny",
        assignment="tiny",
    )
    return nb


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_steps_run_in_a_pinned_order():
    assert (
        clear_outputs,
        drop_hand_in_cell,
        deduplicate_ids,
        force_kernelspec,
        restore_cells,
        check_metadata,
        inject_parameters,
    ) == SANITIZE_STEPS


def test_edited_test_cell_and_hidden_tests_are_restored(source):
    nb = student()
    cell(nb, "test_squares").source = "pass  # nothing to see"
    ctx = SanitizeContext(source=source)
    out = sanitize(nb, ctx)
    restored = cell(out, "test_squares").source
    assert "assert squares(3) == [1, 4, 9]" in restored
    assert "assert squares(1) == [1]" in restored  # the hidden test is back
    assert ctx.notes == [
        "read-only cell 'test_squares' was edited; the original was restored before grading"
    ]


def test_an_untouched_test_cell_gets_its_hidden_tests_back_without_a_note(source):
    nb = student()
    ctx = SanitizeContext(source=source)
    out = sanitize(nb, ctx)
    assert "assert squares(1) == [1]" in cell(out, "test_squares").source
    assert ctx.notes == []


def test_points_type_and_flags_come_from_the_source(source):
    nb = student()
    tampered = cell(nb, "test_total")
    tampered.metadata.nbgrader["points"] = 100
    tampered.metadata.nbgrader["solution"] = True
    answer = cell(nb, "explain")
    answer.cell_type = "code"
    answer.outputs = []
    answer.execution_count = None
    ctx = SanitizeContext(source=source)
    out = sanitize(nb, ctx)
    assert cell(out, "test_total").metadata.nbgrader["points"] == 1.0
    assert cell(out, "test_total").metadata.nbgrader["solution"] is False
    assert cell(out, "explain").cell_type == "markdown"
    assert "cell 'test_total' claimed 100 points; it is worth 1" in ctx.notes
    assert "cell 'explain' was changed from markdown to code; it was changed back" in ctx.notes


def test_forged_and_duplicated_grade_cells_score_nothing(source):
    nb = student()
    forged = new_code_cell("print('free points')")
    forged.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "bonus",
        "points": 50,
        "solution": False,
        "locked": False,
        "schema_version": 3,
    }
    nb.cells.append(forged)
    nb.cells.insert(1, copy.deepcopy(cell(nb, "test_total")))
    ctx = SanitizeContext(source=source)
    out = sanitize(nb, ctx)
    assert "nbgrader" not in out.cells[-1].metadata
    graded = [c.metadata["nbgrader"]["grade_id"] for c in out.cells if "nbgrader" in c.metadata]
    assert graded.count("test_total") == 1
    assert "cell id 'test_total' appears more than once; only its last copy was graded" in ctx.notes


def test_deleted_grade_cell_is_reported_missing(source):
    nb = student()
    nb.cells = [
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_total"
    ]
    ctx = SanitizeContext(source=source)
    sanitize(nb, ctx)
    assert ctx.missing == ["test_total"]


def test_kernel_is_forced_and_other_languages_refused(source):
    nb = student()
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "Evil", "language": "python"}
    out = sanitize(nb, SanitizeContext(source=source))
    assert out.metadata.kernelspec["name"] == "python3"
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    with pytest.raises(InvalidNotebookError) as err:
        sanitize(nb, SanitizeContext(source=source))
    assert (
        err.value.message == "the notebook is written for the 'R' kernel; this assignment is "
        "Python: open the released notebook with a Python kernel, copy your answers over and "
        "submit that"
    )


def test_parameters_are_injected_after_the_parameters_cell(source):
    nb = student()
    out = sanitize(
        nb, SanitizeContext(source=source, parameters={"N": 4, "NAME": "x", "FAST": True})
    )
    index = next(i for i, c in enumerate(out.cells) if "parameters" in c.metadata.get("tags", []))
    injected = out.cells[index + 1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source.splitlines()[1:] == ["FAST = True", "N = 4", "NAME = 'x'"]


def test_outputs_of_the_submission_are_never_trusted(source):
    nb = student()
    fake = cell(nb, "test_squares")
    fake.outputs = [{"output_type": "stream", "name": "stdout", "text": "all tests passed"}]
    fake.execution_count = 3
    out = sanitize(nb, SanitizeContext(source=source))
    assert cell(out, "test_squares").outputs == []
    assert cell(out, "test_squares").execution_count is None


def test_the_hand_in_cell_is_dropped_but_a_source_cell_with_its_tag_stays(source):
    from autograder.submitcell import TAG, add_submit_cell

    released = student()
    nb = add_submit_cell(released, server="https://x.example", assignment="tiny", notebook="t")
    ctx = SanitizeContext(source=source)
    assert [c.source for c in drop_hand_in_cell(copy.deepcopy(nb), ctx).cells] == [
        c.source for c in released.cells
    ]
    cell(nb, "test_squares").metadata["tags"] = [TAG]  # a test cannot be dropped so
    assert [c.source for c in drop_hand_in_cell(nb, ctx).cells] == [
        c.source for c in released.cells
    ]
