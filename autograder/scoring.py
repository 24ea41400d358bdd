"""Scores of a notebook's nbgrader cells, each with a sentence saying why points were lost.

The score itself is nbgrader's (``nbgrader.utils.determine_grade``): a test cell with an error
or any stderr output scores 0, a numeric result gives partial credit, otherwise full points; an
answer cell (grade and solution) scores 0 when unchanged and otherwise waits for a human; a
task cell always waits for a human. Only the messages are ours.
"""

from __future__ import annotations

import ast
import builtins
import re

from nbformat import NotebookNode

from .execute import TIMEOUT_ERROR, ExecutionOutcome
from .notebooks import nbgrader_meta
from .pages import plain
from .release import SourceCell, SourceNotebook, split_hidden_tests
from .results import WAITING, ItemResult
from .sanitize import SanitizeContext

_ARROW = re.compile(r"^\s*-+>\s*\d*\s*(.*)$")
#: Python's own exception classes: once hidden tests ran, the only exception names a message
#: repeats (a class of the notebook's own can be named anything, a hidden test's text too).
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)
#: What a built-in exception usually means in a test cell, said without its message.
_HINTS = {
    "NotImplementedError": (
        " (a solution cell still raises NotImplementedError: write your code there)"
    ),
    "NameError": (
        " (a name the test uses is not defined: check that the cell defining it ran without "
        "an error)"
    ),
}


def _plain(text: str) -> str:
    return plain(text)


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failing_line(traceback: list[str]) -> str:
    """The line of the test cell itself that failed (IPython's arrow in the first frame)."""
    for block in traceback:
        for line in _plain(block).splitlines():
            match = _ARROW.match(line)
            if match and match.group(1).strip():
                return match.group(1).strip()
    return ""


def explain_failure(cell: NotebookNode, *, hidden_ran: bool = False) -> str:
    """Why a test cell lost its points, from its outputs.

    ``hidden_ran`` says the cell ran once hidden tests were in the kernel (an earlier cell's,
    or its own: a cell holding hidden tests is always taken so). From then on the notebook's
    code could read them (input history, event hooks, frames), so the sentence is the
    grader's own words only: the failing line when it is a line of the test as released,
    "in a hidden test" when it is a hidden one, and the exception's name when it is one of
    Python's built-in exceptions; never the exception's message, a class name of the
    notebook's own, or what it wrote to stderr, which could carry a hidden test out.
    """
    source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    visible, hidden = split_hidden_tests(source)
    hidden_ran = hidden_ran or any(line.strip() for line in hidden)
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            ename = str(output.get("ename", "Error"))
            if ename == TIMEOUT_ERROR["ename"]:
                return "the test ran past the time limit and was interrupted"
            if ename == "KeyboardInterrupt":
                continue
            line = _failing_line(list(output.get("traceback", [])))
            if hidden_ran:
                return _failed_after_hidden(ename, line, visible, hidden)
            evalue = _first_line(_plain(str(output.get("evalue", ""))))
            what = f"{ename}: {evalue}" if evalue else ename
            where = f" at `{line[:160]}`" if line else ""
            if ename == "NotImplementedError":
                what += _HINTS[ename]
            return f"the test failed{where}: {what}"
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            if hidden_ran:
                return (
                    "the test wrote to stderr, which counts as a failure (a warning or error "
                    "message; what it wrote is not shown, as it was written after the hidden "
                    "tests ran)"
                )
            text = _first_line(_plain(str(output.get("text", ""))))
            return (
                "the test wrote to stderr, which counts as a failure (a warning or error "
                f"message): {text}"
            )
    return "the test did not pass"


def _failed_after_hidden(ename: str, line: str, visible: str, hidden: list[str]) -> str:
    """A failure in the grader's words: a released line or "a hidden test", a built-in name."""
    shown = {ln.strip() for ln in visible.split("\n") if ln.strip()}
    secret = {ln.strip() for ln in hidden if ln.strip()}
    if line in shown:
        where = f" at `{line[:160]}`"
    elif line in secret:
        where = " in a hidden test"
    else:
        where = ""  # not a line of this test: the traceback said something else
    if ename in BUILTIN_EXCEPTIONS:
        what = ename + _HINTS.get(ename, "")
    else:
        what = (
            "an exception of a class that is not one of Python's built-in ones (its name is "
            "not shown, as it was raised after the hidden tests ran)"
        )
    return f"the test failed{where}: {what}"


def _kind(cell: SourceCell) -> str:
    if cell.task and not cell.grade:
        return "task"
    return "manual" if cell.solution or cell.cell_type != "code" else "test"


def score_notebook(
    nb: NotebookNode,
    source: SourceNotebook,
    ctx: SanitizeContext,
    outcome: ExecutionOutcome | None,
) -> list[ItemResult]:
    """One item per scored cell of the source (grade cells and tasks), in the source's order."""
    from nbgrader.utils import determine_grade

    by_id: dict[str, tuple[int, NotebookNode]] = {}
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if (meta.get("grade") or meta.get("task")) and isinstance(meta.get("grade_id"), str):
            by_id[meta["grade_id"]] = (index, cell)
    items = []
    for source_cell in source.scored_cells:
        points = float(source_cell.points or 0.0)
        found = by_id.get(source_cell.grade_id)
        kind = _kind(source_cell)
        manual = kind != "test"
        if kind == "task":
            # nbgrader never scores a task: its points are the grader's to give.
            items.append(
                ItemResult(
                    id=source_cell.grade_id,
                    kind="task",
                    score=0.0,
                    max_score=points,
                    passed=False,
                    message=f"a task graded by hand: {WAITING}",
                    notebook=source.name,
                    needs_manual_grade=True,
                )
            )
            continue
        if found is None:
            items.append(_missing(source_cell.grade_id, kind, points, source.name))
            continue
        index, cell = found
        uncounted = (
            _does_not_count(cell, index, outcome)
            if outcome is not None and cell.cell_type == "code" and not manual
            else None
        )
        if uncounted:
            items.append(
                ItemResult(
                    id=source_cell.grade_id,
                    kind=kind,
                    score=0.0,
                    max_score=points,
                    passed=False,
                    message=uncounted,
                    notebook=source.name,
                )
            )
            continue
        try:
            score, _ = determine_grade(cell)
        except (KeyError, ValueError, TypeError, IndexError):
            # nbgrader's partial credit reads the result's text; one it cannot read (empty,
            # not a number, more than the points) would stop the grading of this submission.
            items.append(
                ItemResult(
                    id=source_cell.grade_id,
                    kind=kind,
                    score=0.0,
                    max_score=points,
                    passed=False,
                    message="scored 0: the test's result is not a number of points nbgrader "
                    f"can read (0 to {points:g})",
                    notebook=source.name,
                    needs_manual_grade=manual,
                )
            )
            continue
        if manual:
            # determine_grade gives 0 to an answer cell exactly when its checksum is unchanged.
            unchanged = score == 0
            items.append(
                ItemResult(
                    id=source_cell.grade_id,
                    kind="manual",
                    score=0.0 if score is None else float(score),
                    max_score=points,
                    passed=False,
                    message=(
                        "no answer: the cell is unchanged from the released notebook"
                        if unchanged
                        else f"answered; {WAITING}"
                    ),
                    notebook=source.name,
                    needs_manual_grade=score is None,
                )
            )
            continue
        score = 0.0 if score is None else float(score)
        if score >= points:
            message = "passed"
        elif score > 0:
            message = f"partial credit: {score:g} of {points:g} points"
        else:
            message = explain_failure(cell)
        items.append(
            ItemResult(
                id=source_cell.grade_id,
                kind="test",
                score=score,
                max_score=points,
                passed=score >= points,
                message=message,
                notebook=source.name,
            )
        )
    return items


def _does_not_count(cell: NotebookNode, index: int, outcome: ExecutionOutcome) -> str | None:
    """Why a test cell scores 0 whatever nbgrader's rule would read in its outputs, or None.

    nbgrader credits a test cell with no error output; the outputs are the kernel's to write
    and clear, so the grader's own record of the run decides first: the cell must have run
    and answered, under the hooks it started with, with no error or stderr on the way (a
    later ``clear_output`` erases the output, not the record), and with no result its own
    last expression did not make.
    """
    if index not in outcome.replies:
        if outcome.stopped_at is not None and index >= outcome.stopped_at and outcome.message:
            verb = "finish" if index == outcome.stopped_at and cell.get("outputs") else "run"
            return f"this test did not {verb}: {outcome.message}"
        return "this test did not run"
    if index in outcome.tampered:
        return (
            f"scored 0: the notebook changed {', '.join(outcome.tampered[index])} before or "
            "while this test ran; a test counts only when it runs as the assignment wrote it"
        )
    seen = outcome.evidence.get(index)
    failed = outcome.replies[index] == "error" or (seen and (seen.errors or seen.stderr))
    if failed:
        shown = any(
            o.get("output_type") == "error"
            or (o.get("output_type") == "stream" and o.get("name") == "stderr")
            for o in cell.get("outputs", [])
        )
        return explain_failure(cell) if shown else "the test failed (its output was cleared)"
    results = seen.results if seen else 0
    if results > (1 if _may_end_with_expression(str(cell.source)) else 0):
        return "scored 0: a result appeared that the test's own code did not produce"
    return None


def _may_end_with_expression(source: str) -> bool:
    """Whether the cell's last statement can make an ``execute_result`` (IPython syntax
    such as magics is transformed first; a cell that does not parse may)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    except Exception:
        return True
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr)


def _missing(grade_id: str, kind: str, points: float, notebook: str) -> ItemResult:
    # nbgrader leaves a deleted cell's grade untouched, which flags it for a human to look at
    # (needs_manual_grade defaults to true); the score stays 0 until someone does.
    return ItemResult(
        id=grade_id,
        kind=kind,
        score=0.0,
        max_score=points,
        passed=False,
        message=(
            "this graded cell is missing from the submission; start from the released "
            "notebook and keep its cells"
        ),
        notebook=notebook,
        needs_manual_grade=True,
    )


def missing_items(source: SourceNotebook, why: str) -> list[ItemResult]:
    """Zero for every scored cell of ``source`` (grade cells and tasks), all with the same
    reason."""
    return [
        ItemResult(
            id=c.grade_id,
            kind=_kind(c),
            score=0.0,
            max_score=float(c.points or 0.0),
            passed=False,
            message=why,
            notebook=source.name,
        )
        for c in source.scored_cells
    ]
