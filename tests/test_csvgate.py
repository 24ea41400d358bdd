"""The CSV check's gate and reasons: the public score decides, and a missing file says why."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.checks import csv_check
from autograder.config import Course, parse_assignment
from autograder.csvcheck import read_labels
from autograder.datasets import prepare
from autograder.execute import ExecutionOutcome


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Course:
    course = Course.at(tmp_path_factory.mktemp("gate"))
    prepare("digits", course=course)
    return course


def _job(course: Course, min_score: float):
    config = parse_assignment(
        "a",
        {
            "assignment": {"dataset": "digits", "notebooks": ["a"]},
            "checks": [{"id": "csv", "kind": "csv", "points": 2, "min_score": min_score}],
        },
        where="x",
    )
    job = types.SimpleNamespace(config=config, heldout={"digits": course.heldout("digits")})
    return job, config.checks[0]


def _write(workdir: Path, labels: dict, *, public_right: float) -> None:
    public = [i for i, (_, usage) in sorted(labels.items()) if usage.lower() == "public"]
    right_public = set(public[: int(len(public) * public_right)])
    lines = ["ImageId,Label"]
    for image_id, (label, usage) in sorted(labels.items()):
        ok = usage.lower() != "public" or image_id in right_public
        lines.append(f"{image_id},{label if ok else (int(label) + 1) % 10}")
    (workdir / "submission.csv").write_text("\n".join(lines) + "\n")


def test_the_gate_is_the_public_score_the_participant_sees(digits, tmp_path):
    labels = read_labels(digits.heldout("digits") / "test-labels.csv")
    _write(tmp_path, labels, public_right=0.5)  # public 0.5, private 1.0: overall above 0.7
    job, check = _job(digits, 0.7)
    out = tmp_path / "out"
    out.mkdir()
    item = csv_check(job, check, tmp_path, out)
    assert item.score == 0 and not item.passed
    assert item.details["public"] == pytest.approx(0.5, abs=0.01)
    assert item.details["overall"] > 0.7
    public = item.details["public"]
    assert item.message == (
        f"submission.csv is valid but its public score {public:.3f} is below the required 0.700"
    )
    assert "private" not in item.message
    _write(tmp_path, labels, public_right=1.0)
    item = csv_check(job, check, tmp_path, out)
    assert item.passed
    assert item.message == "submission.csv is valid; its public score is 1.000 (required 0.700)"


def test_a_file_not_written_says_what_really_happened(digits, tmp_path):
    job, check = _job(digits, 0.7)
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Predict"),
            new_code_cell("x = 1"),
            new_code_cell("pd.DataFrame(p).to_csv('submission.csv')"),
        ]
    )
    nb.cells[2].outputs = [
        {"output_type": "error", "ename": "NameError", "evalue": "name 'pd' is not defined"}
    ]
    item = csv_check(job, check, tmp_path, tmp_path, ExecutionOutcome(nb=nb))
    assert item.message == (
        "the notebook did not write submission.csv: cell [2], which writes it, raised "
        "NameError: name 'pd' is not defined; fix that cell"
    )
    died = ExecutionOutcome(
        nb=nb,
        status="kernel-died",
        message="the Python kernel stopped in cell [1] (it crashed, exited or was killed); "
        "the cells after it were not run",
    )
    assert csv_check(job, check, tmp_path, tmp_path, died).message == (
        "the notebook did not write submission.csv: the Python kernel stopped in cell [1] "
        "(it crashed, exited or was killed); the cells after it were not run"
    )
    quiet = ExecutionOutcome(nb=new_notebook(cells=[new_code_cell("x = 1")]))
    assert csv_check(job, check, tmp_path, tmp_path, quiet).message == (
        "the notebook did not write submission.csv; run the cell that saves the predictions"
    )
