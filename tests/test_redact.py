"""What is shown once hidden tests ran, and submission text as data: the rules one by one.

The class graded end to end is tests/test_exfiltration.py; here each rule gets the variants
that a graded notebook cannot produce cheaply (an evaluator's codes, Keras' messages, long
histories) or that need no kernel (text, spreadsheet cells, the pages' environment).
"""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.config import parse_assignment
from autograder.feedback import _history_charts
from autograder.pages import environment, literal, spreadsheet_cell
from autograder.redact import (
    HISTORY_METRICS,
    MAX_CHARTS,
    MAX_EPOCHS,
    hidden_from,
    history_series,
    redact_checks,
    redact_tests,
)
from autograder.results import ItemResult
from autograder.scoring import explain_failure

SECRET = "assert squares(1) == [1]  # kumquat"
HIDDEN_CELL = (
    f"assert squares(3) == [1, 4, 9]\n### BEGIN HIDDEN TESTS\n{SECRET}\n### END HIDDEN TESTS"
)


def _error(ename: str, evalue: str, line: str) -> dict:
    return new_output(
        "error",
        ename=ename,
        evalue=evalue,
        traceback=[f"Cell In[3], line 3\n----> 3 {line}\n", f"{ename}: {evalue}"],
    )


def _test_cell(source: str, *outputs: dict) -> object:
    cell = new_code_cell(source, outputs=list(outputs))
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 1}
    return cell


@pytest.mark.parametrize(
    ("ename", "evalue", "line", "said"),
    [
        # A built-in exception is named, its message never.
        ("ValueError", "a3VtcXVhdA==", SECRET, "the test failed in a hidden test: ValueError"),
        # A class of the notebook's own is not named: its name is any text.
        (
            "E6b756d71756174",
            "x",
            SECRET,
            "the test failed in a hidden test: an exception of a class that is not one of "
            "Python's built-in ones (its name is not shown, as it was raised after the hidden "
            "tests ran)",
        ),
        # A released line is quoted (the instructor's text); a traceback's invented one is not.
        (
            "NameError",
            "name 'kumquat' is not defined",
            "assert squares(3) == [1, 4, 9]",
            "the test failed at `assert squares(3) == [1, 4, 9]`: NameError (a name the test "
            "uses is not defined: check that the cell defining it ran without an error)",
        ),
        ("AssertionError", "", "print('kumquat')", "the test failed: AssertionError"),
    ],
)
def test_a_failure_in_a_cell_holding_hidden_tests_is_told_in_the_graders_words(
    ename: str, evalue: str, line: str, said: str
) -> None:
    cell = _test_cell(HIDDEN_CELL, _error(ename, evalue, line))
    # Without being told: the cell's own hidden tests are enough.
    assert explain_failure(cell) == said
    assert "kumquat" not in said


def test_stderr_and_a_later_cell_follow_the_same_rule() -> None:
    stderr = new_output("stream", name="stderr", text="a3VtcXVhdA==\n")
    cell = _test_cell("assert total(3) == 14", stderr)
    assert explain_failure(cell).endswith("): a3VtcXVhdA==")  # before any hidden test
    assert "a3VtcXVhdA" not in explain_failure(cell, hidden_ran=True)
    failed = _test_cell("assert total(3) == 14", _error("KeyError", "'kumquat'", "x"))
    assert explain_failure(failed) == "the test failed at `x`: KeyError: 'kumquat'"
    assert explain_failure(failed, hidden_ran=True) == "the test failed: KeyError"


def test_hidden_tests_reach_every_later_cell_and_every_later_notebook() -> None:
    first = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell(HIDDEN_CELL)])
    plain = new_notebook(cells=[new_code_cell("y = 2")])
    assert hidden_from([plain, first, plain, None, plain]) == [None, 1, 0, None, 0]
    # The worker's pass rewrites only the sentences explain_failure wrote from outputs.
    later = _test_cell("assert total(3) == 14", _error("KeyError", "'kumquat'", "x"))
    nb = new_notebook(cells=[new_code_cell(HIDDEN_CELL), later])
    items = [
        ItemResult("t", "test", 0.0, 1.0, False, explain_failure(later), notebook="n"),
        ItemResult("t", "test", 0.0, 1.0, False, "this test did not run", notebook="n"),
        # A sentence that quotes it (a flag before it, say) is rewritten where it quotes it.
        ItemResult("t", "test", 0.0, 1.0, False, f"flagged; {explain_failure(later)}"),
    ]
    redone = redact_tests(items, nb, 0)
    assert [i.message for i in redone] == [
        "the test failed: KeyError",
        "this test did not run",
        "flagged; the test failed: KeyError",
    ]
    assert redact_tests(items, nb, None) == items


CONFIG = parse_assignment(
    "a",
    {
        "assignment": {"dataset": "digits", "notebooks": ["a"]},
        "checks": [
            {"id": "acc", "kind": "accuracy", "points": 1, "threshold": 0.5},
            {"id": "csv", "kind": "csv", "points": 1},
        ],
    },
    where="x",
)


def _acc(message: str, **details: object) -> ItemResult:
    return ItemResult("acc", "accuracy", 0.0, 1.0, False, message, details=details)


def _csv(message: str, **details: object) -> ItemResult:
    return ItemResult("csv", "csv", 0.0, 1.0, False, message, details=details)


def test_check_messages_keep_numbers_and_lose_the_notebooks_words() -> None:
    kept = [
        _acc(
            "held-out accuracy 0.412 is below the required 0.500 (41 of 100 correct)", accuracy=0.41
        ),
        _acc(
            "the model outputs 3 classes; this data set has 10 (end the model with Dense(10))",
            code="classes",
        ),
        _acc("the model could not be collected: cell [4] ran past its 10 s limit", code=None),
        _csv("submission.csv is valid; its public score is 0.913", public=0.913),
        _csv("the notebook did not write submission.csv; run the cell that saves the predictions"),
    ]
    known = ["cell [4] ran past its 10 s limit"]
    assert redact_checks(kept, CONFIG, known=known) == kept
    hostile = [
        (
            _acc("the model cannot be graded: its class 'a3VtcXVhdA' ...", code="custom-code"),
            "it uses a class or function from outside Keras",
        ),
        (_acc("Lambda layer 'a3VtcXVhdA' holds Python code", code="lambda"), "Lambda layer,"),
        (_acc("the model could not be loaded: ValueError: a3VtcXVhdA", code="load"), "safe mode"),
        (_acc("a3VtcXVhdA", code="missing-model"), "no model was collected"),
        (_acc("the evaluator could not run: a3VtcXVhdA", code="grader"), "grading machine"),
        (_acc("a3VtcXVhdA", code="made-up"), "the model was not scored"),
        (
            _csv(
                "the notebook did not write submission.csv: cell [6], which writes it, raised "
                "KeyError: 'a3VtcXVhdA'; fix that cell"
            ),
            "raised KeyError; fix that cell",
        ),
        (
            _csv(
                "the notebook did not write submission.csv: cell [6], which writes it, raised "
                "E6b756d: a3VtcXVhdA; fix that cell"
            ),
            "raised an exception; fix that cell",
        ),
        (_csv("submission.csv: a3VtcXVhdA"), "submission.csv was not scored"),
        (
            _csv(
                "submission.csv is not a valid digits submission (2 problems): line 2: Label "
                "'a3VtcXVhdA' is not one of 0..9",
                report={
                    "valid": False,
                    "counts": {"label": 1, "header": 1},
                    "problems": [
                        {"rule": "header", "line": 1, "message": "header is 'a3VtcXVhdA'"},
                        {"rule": "label", "line": 2, "message": "Label 'a3VtcXVhdA' is bad"},
                        {"rule": "label", "line": 3, "message": "Label 'a3VtcXVhdA' is bad"},
                    ],
                },
            ),
            "2 problems): line 1: the first line is not exactly the competition's header; "
            "line 2: a label the competition does not have",
        ),
    ]
    for item, said in hostile:
        (shown,) = redact_checks([item], CONFIG, known=known)
        assert said in shown.message and "a3VtcXVhdA" not in shown.message, shown.message
        assert (shown.score, shown.details) == (item.score, item.details)


def test_the_history_shows_keras_metric_names_only_and_bounded() -> None:
    history = {
        "loss": [1.0] * 120,
        "val_loss": [1.1] * 120,
        "accuracy": [0.5, 0.6],
        "val_val_loss": [1.0],
        "<script>alert(1)</script>": [1.0, 2.0],
        "a3VtcXVhdA": [1.0, 2.0],
        "loss\u202e": [1.0],
        "mse": [3.0, 2.0],
        "auc": [0.5, 0.7],
        "precision": [0.1, 0.2],
        "recall": [0.3, 0.4],
    }
    series, epochs = history_series(history)
    assert set(series) == {"loss", "val_loss", "accuracy", "mse", "auc", "precision", "recall"}
    assert epochs["loss"] == 120 and len(series["loss"]) == MAX_EPOCHS
    assert {"loss", "accuracy", "sparse_categorical_accuracy", "mae"} <= HISTORY_METRICS
    charts = _history_charts(history)
    assert len(charts) == MAX_CHARTS
    text = "".join(charts)
    assert "<title>loss (first 50 of 120 epochs)</title>" in text
    assert "<title>accuracy</title>" in text  # loss and accuracy come first
    assert "script" not in text and "a3VtcXVhdA" not in text
    # Points at whole pixels: finer coordinates would carry more of the values.
    assert "." not in text.split('points="')[1].split('"')[0]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8, ST-terminated
        ("\x1b]8;;http://evil\x07link\x1b]8;;\x07", "link"),  # OSC 8, BEL-terminated
        ("\x1b]0;title\x07done", "done"),
        ("\x1b[31mred\x1b[0m \x1b[2J\x1b[10;10H\x1b[?25lx", "red x"),  # colour, cursor, clear
        ("\x9b2Jc1", "c1"),  # the 8-bit CSI
        ("safe\rEVIL", "safeEVIL"),  # an overwrite leaves both parts
        ("line\r\nnext", "line\nnext"),
        ("txt.exe\u202egnp.exe", "txt.exegnp.exe"),  # bidi override
        ("a\u2066b\u2069c\u200bd\ufeffe", "abcde"),  # isolates, zero-width space, BOM
        ("nul\x00bell\x07del\x7f", "nulbelldel"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("family \U0001f468\u200d\U0001f469", "family \U0001f468\u200d\U0001f469"),  # ZWJ kept
        ("[/] [bold red]x[/] <b>", "[/] [bold red]x[/] <b>"),  # markup is not ours to remove
    ],
)
def test_literal_text_drops_what_does_not_show_as_itself(raw: str, shown: str) -> None:
    assert literal(raw) == shown


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(1)", "'@SUM(1)"),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("\r=1+1", "'=1+1"),  # the CR goes, the formula is still quoted
        ("\x00=1+1", "'=1+1"),
        ("\x1b[2J=1", "'=1"),
        ("-0.5", "-0.5"),  # a number stays a number
        ("3", "3"),
        ("1e-3", "1e-3"),
        (None, ""),
        (2.5, "2.5"),
        ("ok = fine", "ok = fine"),
    ],
)
def test_a_spreadsheet_cell_is_never_a_formula(value: object, cell: str) -> None:
    assert spreadsheet_cell(value) == cell


def test_every_template_expression_is_literal_text() -> None:
    env = environment()
    page = env.from_string("<p>{{ x }}</p>{{ y|safe }}").render(
        x="<script>\x1b]8;;http://e\x07a\u202eb\x00</script>", y="<i>ok\u202e</i>"
    )
    assert page == "<p>&lt;script&gt;ab&lt;/script&gt;</p><i>ok</i>"
