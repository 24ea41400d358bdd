"""No hidden test reaches a participant, in any form: what is shown once hidden tests ran.

A cell holding hidden tests runs in the participant's kernel, so from the moment it starts the
notebook's code can read it (``In``, ``_ih``, a ``pre_run_cell`` hook's ``raw_cell``, the frames
of a function the test calls) and carry it out through anything a page repeats, in any
encoding a scrubber of known lines cannot recognise. So, from that moment on, nothing the
notebook's code chose is shown as its text. What is shown instead:

- a test item: its verdict, and a sentence in the grader's words
  (:func:`autograder.scoring.explain_failure` with ``hidden_ran``): the failing line when it
  is a released line of the test, "in a hidden test", the exception's name when it is one of
  Python's built-in ones;
- a check (accuracy, CSV), which reads what the notebook left at its end: its numbers, and
  sentences rebuilt from the check's codes and rules (:func:`redact_checks`), never the values
  of the file or the text of an error the model or the kernel produced;
- the notebook's outputs from the first cell holding hidden tests on: not shown, one fixed
  sentence where they stop (:mod:`autograder.feedback`);
- the training history: only series named as Keras names its metrics
  (:data:`HISTORY_METRICS`), at most :data:`MAX_EPOCHS` epochs of :data:`MAX_CHARTS` charts.

The kernels of one submission's notebooks share its work folder, so a notebook that runs
after one holding hidden tests is under the rule from its first cell (:func:`hidden_from`).
Numbers still pass (verdicts, scores, accuracy, the confusion matrix, the history's values):
see docs/architecture.md for the bound that leaves.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nbformat import NotebookNode

from .config import AccuracyCheck, AssignmentConfig, CsvCheck, check_notebook_for
from .csvrules import RULES
from .notebooks import nbgrader_meta
from .release import BEGIN_HIDDEN_TESTS
from .results import ItemResult
from .scoring import BUILTIN_EXCEPTIONS, explain_failure

#: Metric names Keras gives a History (``model.compile(metrics=[...])`` by name, its losses),
#: each also with ``val_``: the only series a chart shows once hidden tests ran, since a
#: series' name is a legend the notebook chose.
HISTORY_METRICS: frozenset[str] = frozenset(
    [
        "loss",
        "accuracy",
        "acc",
        "sparse_categorical_accuracy",
        "categorical_accuracy",
        "binary_accuracy",
        "top_k_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "binary_crossentropy",
        "binary_focal_crossentropy",
        "categorical_focal_crossentropy",
        "mean_squared_error",
        "mse",
        "mean_absolute_error",
        "mae",
        "mean_absolute_percentage_error",
        "mape",
        "mean_squared_logarithmic_error",
        "msle",
        "root_mean_squared_error",
        "kl_divergence",
        "kullback_leibler_divergence",
        "hinge",
        "squared_hinge",
        "categorical_hinge",
        "poisson",
        "log_cosh",
        "logcosh",
        "huber",
        "cosine_similarity",
        "auc",
        "precision",
        "recall",
        "f1_score",
        "fbeta_score",
        "iou",
        "mean_iou",
        "r2_score",
        "learning_rate",
        "lr",
    ]
)
#: Epochs drawn per series and charts per page: the values are the notebook's numbers, so
#: what a chart can carry is bounded too.
MAX_EPOCHS = 50
MAX_CHARTS = 4

#: What an accuracy check says for each evaluator code whose own message may quote the
#: notebook's text (a layer's name, a Keras error, the kernel's collection report).
_ACCURACY_SENTENCES = {
    "lambda": (
        "the model cannot be graded: it holds Python code in a Lambda layer, which the grader "
        "does not load (Keras safe mode); use built-in layers such as Rescaling, Reshape or "
        "Activation instead"
    ),
    "custom-code": (
        "the model cannot be graded: it uses a class or function from outside Keras, which "
        "the grader does not load (Keras safe mode); build it from Keras' own layers"
    ),
    "load": (
        "the saved model could not be loaded by Keras (safe mode, not compiled); save a "
        "keras.Model with model.save"
    ),
    "file": "the collected model is not a regular .keras file the grader can read",
    "missing-model": (
        "no model was collected: at the end of the notebook, the variable the assignment "
        "names held no model"
    ),
    "not-a-model": "the variable the assignment names does not hold a keras.Model",
    "save-failed": "the model could not be saved by the grader's collection step",
    "grader": (
        "the grader could not evaluate the model (a problem of the grading machine, not of "
        "the submission; the instructor can see why)"
    ),
    "images": (
        "the grader could not read the held-out images (a problem of the course's data, not "
        "of the submission; ask the instructor)"
    ),
}
#: Evaluator codes whose message is the grader's words and numbers only (shapes, signals).
_ACCURACY_OWN_WORDS = frozenset(
    {"ok", "timeout", "crashed", "classes", "input-shape", "output-shape"}
)
_RAISED = re.compile(r"^(.*, which writes it, raised )(.*?)(; fix that cell)$", re.DOTALL)


def first_hidden_cell(nb: NotebookNode) -> int | None:
    """The index of the first code cell holding hidden tests (as graded, they are restored)."""
    for index, cell in enumerate(nb.cells):
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if cell.cell_type == "code" and BEGIN_HIDDEN_TESTS in source:
            return index
    return None


def hidden_from(notebooks: Iterable[NotebookNode | None]) -> list[int | None]:
    """For each notebook in the order they ran (None: not run), the index of the cell from
    which the rule applies: its first cell holding hidden tests, or 0 once a notebook before
    it ran (its kernel shared the work folder); None when neither."""
    out: list[int | None] = []
    seen = False
    for nb in notebooks:
        if nb is None:
            out.append(None)
            continue
        first = first_hidden_cell(nb)
        out.append(0 if seen else first)
        seen = seen or first is not None
    return out


def redact_tests(
    items: Sequence[ItemResult], nb: NotebookNode, start: int | None
) -> list[ItemResult]:
    """``items`` of ``nb`` with each failed test at or after cell ``start`` explained in the
    grader's words: wherever a message holds the sentence :func:`explain_failure` wrote from
    the outputs, it holds the grader's instead (other sentences are the grader's already)."""
    if start is None:
        return list(items)
    cells: dict[str, tuple[int, NotebookNode]] = {}
    for index, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str):
            cells[grade_id] = (index, cell)
    out = []
    for item in items:
        found = cells.get(item.id) if item.kind == "test" else None
        if found is not None and found[0] >= start:
            told = explain_failure(found[1])
            if told in item.message:
                strict = explain_failure(found[1], hidden_ran=True)
                item = dataclasses.replace(item, message=item.message.replace(told, strict))
        out.append(item)
    return out


def redact_checks(
    items: Sequence[ItemResult], config: AssignmentConfig, *, known: Iterable[str] = ()
) -> list[ItemResult]:
    """The checks' ``items`` as shown once hidden tests ran: a message that may quote what the
    notebook wrote (the CSV's values, an exception's text, the model's names) rebuilt from the
    check's codes, rules and numbers. ``known`` are sentences of the grader's own (how each
    notebook's run ended) that a message may repeat."""
    checks = {c.id: c for c in config.checks}
    out = []
    for item in items:
        check = checks.get(item.id)
        if isinstance(check, CsvCheck) and item.kind == "csv":
            message = _csv_message(item, check, config, set(known))
        elif isinstance(check, AccuracyCheck) and item.kind == "accuracy":
            message = _accuracy_message(item, check, config, set(known))
        else:
            message = item.message
        out.append(item if message == item.message else dataclasses.replace(item, message=message))
    return out


def csv_problem(problem: Mapping[str, Any]) -> str:
    """A CSV problem as shown once hidden tests ran: its line and what its rule means, never
    the field it quotes."""
    rule = str(problem.get("rule", ""))
    what = RULES.get(rule, "a problem of the file's format")
    line = problem.get("line")
    return f"line {int(line)}: {what}" if isinstance(line, int) else what


def _csv_message(
    item: ItemResult, check: CsvCheck, config: AssignmentConfig, known: set[str]
) -> str:
    details = item.details
    if "public" in details:
        return item.message  # scored: the file's name and its score
    report = details.get("report")
    if isinstance(report, Mapping):
        if report.get("valid"):
            return item.message
        counts = {str(k): int(v) for k, v in dict(report.get("counts", {})).items()}
        total = sum(counts.values())
        first: dict[str, str] = {}
        for problem in report.get("problems", []):
            if isinstance(problem, Mapping) and str(problem.get("rule")) not in first:
                first[str(problem.get("rule"))] = csv_problem(problem)
        return (
            f"{check.file} is not a valid {check.competition} submission ({total:,} "
            f"problem{'' if total == 1 else 's'}): " + "; ".join(first.values())
        )
    match = _RAISED.match(item.message)
    if match and match.group(1).startswith(f"the notebook did not write {check.file}: cell ["):
        ename = match.group(2).split(":", 1)[0].strip()
        named = ename if ename in BUILTIN_EXCEPTIONS else "an exception"
        return f"{match.group(1)}{named}{match.group(3)}"
    own = {
        f"{check_notebook_for(check, config)}.ipynb could not be run",
        f"{check.file} is outside the notebook's folder",
        f"{check.file} is not a regular file",
        f"the notebook did not write {check.file}; run the cell that saves the predictions",
        f"{check.file} is valid; its score is computed by Kaggle, not here",
        *(f"the notebook did not write {check.file}: {m}" for m in known),
    }
    if item.message in own:
        return item.message
    return (
        f"{check.file} was not scored (the reason is not shown: it came from what the notebook "
        "did after its hidden tests ran)"
    )


def _accuracy_message(
    item: ItemResult, check: AccuracyCheck, config: AssignmentConfig, known: set[str]
) -> str:
    details = item.details
    code = details.get("code")
    if "accuracy" in details or code in _ACCURACY_OWN_WORDS:
        return item.message
    if isinstance(code, str) and code in _ACCURACY_SENTENCES:
        return _ACCURACY_SENTENCES[code]
    own = {
        f"{check_notebook_for(check, config)}.ipynb could not be run",
        "the model could not be collected: the notebook did not run to the end",
        *(f"the model could not be collected: {m}" for m in known),
    }
    if item.message in own:
        return item.message
    return (
        "the model was not scored (the reason is not shown: it came from what the notebook did "
        "after its hidden tests ran)"
    )


def history_series(history: Mapping[str, Any]) -> tuple[dict[str, list[float]], dict[str, int]]:
    """The series of a training history a chart may show: those named as Keras names its
    metrics, each cut to :data:`MAX_EPOCHS` values; and how many epochs each had."""
    series: dict[str, list[float]] = {}
    epochs: dict[str, int] = {}
    for key, values in history.items():
        name = str(key)
        if not isinstance(values, list) or name.removeprefix("val_") not in HISTORY_METRICS:
            continue
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        series[name], epochs[name] = numbers[:MAX_EPOCHS], len(numbers)
    return series, epochs
