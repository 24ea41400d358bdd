"""validate speaks to the instructor: every item's figure against what it needs, and fixes
that name assignment.toml, never a command that fails."""

from __future__ import annotations

from click.testing import CliRunner

from autograder.cli import cli
from autograder.config import Course, parse_assignment
from autograder.datasets import not_prepared
from autograder.results import ItemResult
from autograder.validate import for_instructor, item_figure

CONFIG = parse_assignment(
    "fashion",
    {
        "assignment": {"dataset": "fashion-mnist"},
        "checks": [
            {"id": "acc", "kind": "accuracy", "points": 4, "threshold": 0.85, "variable": "clf"},
            {"id": "csv", "kind": "csv", "points": 2, "min_score": 0.75},
        ],
    },
    where="x",
)


def test_each_figure_stands_beside_its_threshold():
    acc = ItemResult(
        "acc", "accuracy", 0.0, 4.0, False, "held-out accuracy 0.812 is below ...",
        details={"accuracy": 0.8123, "correct": 812, "total": 1000},
    )  # fmt: skip
    assert item_figure(acc, CONFIG) == (
        "held-out accuracy 0.812, threshold 0.850 (812 of 1,000 correct)"
    )
    assert for_instructor(acc, CONFIG) == (
        "lower threshold in check 'acc' of source/fashion/assignment.toml, or train the "
        "solution longer"
    )
    csv = ItemResult("csv", "csv", 2.0, 2.0, True, "", details={"public": 0.8, "private": 0.79})
    assert item_figure(csv, CONFIG) == (
        "public score 0.800, min_score 0.750 (private 0.790, which decides only at the final "
        "reveal)"
    )
    test = ItemResult("test_training", "test", 3.0, 3.0, True, "")
    assert item_figure(test, CONFIG) == "3 / 3 points"


def test_a_missing_variable_is_said_to_the_instructor():
    missing = ItemResult(
        "acc", "accuracy", 0.0, 4.0, False,
        "no variable named 'clf' in the notebook; assign your trained keras.Model to 'clf'",
        details={"code": "missing-model"},
    )  # fmt: skip
    message = for_instructor(missing, CONFIG)
    assert "assign your" not in message
    assert message == (
        "the solution leaves no keras.Model in 'clf'; name the variable that holds its trained "
        "model in check 'acc' of source/fashion/assignment.toml (variable = ...), or assign it "
        "in the solution"
    )


def test_a_misspelt_data_set_suggests_no_command_that_fails(tmp_path):
    course = Course.at(tmp_path)
    assert not_prepared(course, "fashion_mnist").message == (
        f"data set 'fashion_mnist' is not one 'autograder data prepare' writes, and {tmp_path} "
        "has no data set of that name; did you mean 'fashion-mnist'? fix the name in "
        "assignment.toml (data sets: digits, fashion-mnist, mnist, kaggle:digit-recognizer)"
    )
    assert not_prepared(course, "fashion-mnist").message == (
        f"data set 'fashion-mnist' is not prepared in {tmp_path}; run 'autograder data prepare "
        "fashion-mnist' first"
    )


def test_validate_prints_every_item_and_its_figure(tiny_course):
    out = CliRunner().invoke(
        cli, ["--course-dir", str(tiny_course.root), "validate", "tiny", "--unsafe-no-sandbox"]
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[1:] == [
        "  ok    test_squares (test): 2 / 2 points",
        "  ok    test_total (test): 1 / 1 points",
        "  hand  explain (manual): 1 points, by hand",
        "  every test and check passes",
    ]
