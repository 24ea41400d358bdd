"""``autograder feedback``: one self-contained HTML page per participant.

``feedback/<student>/<assignment>/index.html`` holds the score, a table of every item (test
cells with their messages, the held-out accuracy against its threshold, the Kaggle CSV
verdict), a confusion matrix and per-class accuracy, the training curves when the notebook
kept a ``history``, and the executed notebook.

Scores are the gradebook's (:func:`autograder.gradebook.load_results`): a grade or comment a
grader entered shows at the next ``feedback``. Every graded cell is headed by its verdict and
points, the item table links to the cells, and answers and tasks say "waiting for a grader"
until someone grades them. Markdown shows its math as MathML and the images the released
assignment ships; code is highlighted (:mod:`autograder.richtext`).

The executed notebook has nbgrader's hidden tests put back (nbgrader issue #917 is about
feedback leaking them). Here every test cell shows the released source instead, and nothing the
notebook's code chose after the first cell holding hidden tests started is shown as its text
(:mod:`autograder.redact`): its outputs from that cell on are left out with one sentence saying
why, failures are told in the grader's words, CSV problems by their rule, and the training
curves only under Keras' metric names. Before that cell, outputs are shown as escaped text and
PNG/JPEG images only (HTML and JavaScript a notebook displayed are never rendered), with the
lines of the hidden tests scrubbed from every message as a second guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .config import AssignmentConfig, Course, load_assignment
from .errors import AutograderError
from .gradebook import load_results
from .notebooks import nbgrader_meta, read_notebook
from .pages import (
    MAX_IMAGE_BYTES,
    Scrubber,
    heat,
    image_uri,
    line_chart,
    plain,
    render,
    write_page,
)
from .redact import (
    MAX_CHARTS,
    MAX_EPOCHS,
    csv_problem,
    hidden_from,
    history_series,
    redact_checks,
    redact_tests,
)
from .release import (
    BEGIN_HIDDEN_TESTS,
    gradebook_version,
    hidden_test_lines,
    released_file,
    strip_hidden_tests,
    student_version,
)
from .results import ItemResult, SubmissionResult
from .richtext import Markdown, highlight, highlight_css, image_data_uri

#: Characters of one output kept on the page (a runaway print loop must not make it huge).
MAX_OUTPUT_CHARS = 20_000
#: Invalid-CSV problems listed on the page.
MAX_CSV_PROBLEMS = 5


def graded_results(
    course: Course, assignment: str, students: Sequence[str] | None = None
) -> list[SubmissionResult]:
    """The recorded results of ``assignment`` (of ``students`` only, when given).

    Errors say what to do: nothing graded yet, or a student with no recorded result.
    """
    results = load_results(course.gradebook_url, assignment)
    if not results:
        raise AutograderError(
            f"nothing graded yet for {assignment}; run 'autograder grade {assignment}' first"
        )
    if students:
        known = {r.student for r in results}
        unknown = [s for s in students if s not in known]
        if unknown:
            raise AutograderError(
                f"no graded submission of {assignment} for {', '.join(unknown)}; graded "
                f"students are {', '.join(sorted(known))}"
            )
        results = [r for r in results if r.student in set(students)]
    return results


class ReleasedSources:
    """What the instructor's side says about each notebook of an assignment: the released
    source of every nbgrader cell, the cells holding hidden tests, and a scrubber of their
    lines. Built once per ``write_feedback`` (it runs nbgrader's release steps)."""

    def __init__(self, course: Course, config: AssignmentConfig) -> None:
        self.released: dict[str, dict[str, str]] = {}
        self.hidden_cells: dict[str, set[str]] = {}
        self.languages: dict[str, str] = {}
        lines: list[str] = []
        images: dict[str, str | None] = {}

        def image(url: str) -> str | None:
            # Only files of the released assignment, verified as images, ever reach a page.
            if url not in images:
                data = released_file(course, config.name, url, limit=MAX_IMAGE_BYTES)
                images[url] = image_data_uri(data) if data is not None else None
            return images[url]

        self.markdown = Markdown(image)
        for name in config.notebooks:
            released = student_version(course, config.name, name)
            info = released.metadata.get("language_info") or released.metadata.get("kernelspec")
            language = info.get("language") or info.get("name") if isinstance(info, dict) else ""
            self.languages[name] = str(language or "python")
            self.released[name] = {
                str(meta["grade_id"]): cell.source
                for cell in released.cells
                if (meta := nbgrader_meta(cell)).get("grade_id") is not None
            }
            self.hidden_cells[name] = set()
            for cell in gradebook_version(course, config.name, name).cells:
                hidden = hidden_test_lines(cell.source)
                if hidden:
                    # The markers too: a printed input history should not show where they were.
                    markers = [ln for ln in cell.source.splitlines() if "HIDDEN TESTS" in ln]
                    lines.extend(hidden + markers)
                    self.hidden_cells[name].add(str(nbgrader_meta(cell).get("grade_id", "")))
        self.scrub = Scrubber(lines)


def write_feedback(
    course: Course,
    assignment: str,
    *,
    students: Sequence[str] | None = None,
    final: bool = False,
) -> list[Path]:
    """Write ``feedback/<student>/<assignment>/index.html`` for every graded student (or for
    ``students``); return the paths written. ``final`` shows the CSV's private score too."""
    config = load_assignment(course, assignment)
    results = graded_results(course, assignment, students)
    sources = ReleasedSources(course, config)
    written = []
    for result in results:
        html = render_feedback(result, course=course, config=config, sources=sources, final=final)
        written.append(write_page(course.feedback(result.student, assignment) / "index.html", html))
    return written


def render_feedback(
    result: SubmissionResult,
    *,
    course: Course,
    config: AssignmentConfig,
    sources: ReleasedSources | None = None,
    final: bool = False,
) -> str:
    """The feedback page of one submission, as HTML text."""
    sources = sources or ReleasedSources(course, config)
    scrub = sources.scrub
    folder = course.autograded(result.student, config.name)
    executed: dict[str, NotebookNode | None] = {}
    errors: dict[str, str] = {}
    for name in config.notebooks:
        path = folder / f"{name}.ipynb"
        executed[name] = None
        if not path.is_file():
            # Nothing ran (not a notebook, nothing submitted): the result's message says why.
            errors[name] = result.message
            continue
        try:
            executed[name] = read_notebook(path)
        except AutograderError as exc:
            errors[name] = str(exc)
    starts = dict(zip(config.notebooks, hidden_from(executed.values()), strict=True))
    shown = _shown_items(result, config, executed, starts)
    items = [_item_view(item, scrub, final) for item in shown]
    by_cell = {(i.notebook, i.id): v for i, v in zip(shown, items, strict=True)}
    order = {name: n for n, name in enumerate(config.notebooks)}
    # Grouped by notebook (a check comes after the cells, in the notebook it reads).
    items.sort(key=lambda view: order.get(view["notebook"], len(order)))
    for item_view in items:
        if item_view["kind"] in ("accuracy", "csv"):
            item_view["href"] = f"#{item_view['kind']}-{item_view['id']}"
    hidden_ran = any(start is not None for start in starts.values())
    accuracy = [_accuracy_view(item) for item in shown if item.kind == "accuracy"]
    csv = [_csv_view(item, scrub, final, hidden_ran) for item in shown if item.kind == "csv"]
    history = result.details.get("history") if isinstance(result.details, Mapping) else None
    charts = _history_charts(history) if isinstance(history, Mapping) else []
    totals = {t["name"]: t for t in result.notebook_totals()}
    notebooks: list[dict[str, Any]] = []
    for n, name in enumerate(config.notebooks):
        view: dict[str, Any] = {"name": name, "anchor": f"notebook-{n}", "total": totals.get(name)}
        notebooks.append(view)
        nb = executed[name]
        if nb is None:
            view.update(cells=None, error=errors.get(name, ""))
            continue
        view["cells"] = _cells(nb, name, sources, by_cell, f"cell-{n}", starts[name])
    notes = result.details.get("notes", []) if isinstance(result.details, Mapping) else []
    return render(
        "feedback.html.j2",
        title=config.title or config.name,
        assignment=config.name,
        result=result,
        message=scrub(result.message),
        notes=[scrub(str(n)) for n in notes if isinstance(n, str)],
        items=items,
        # Subtotals per notebook when there are several (checks count with their notebook).
        subtotals=len(config.notebooks) > 1,
        accuracy=accuracy,
        csv=csv,
        charts=charts,
        notebooks=notebooks,
        highlight_css=highlight_css(),
    )


# --- items ----------------------------------------------------------------------------------


def _shown_items(
    result: SubmissionResult,
    config: AssignmentConfig,
    executed: Mapping[str, NotebookNode | None],
    starts: Mapping[str, int | None],
) -> list[ItemResult]:
    """The items as a participant may see them: the worker already told failures after the
    hidden tests in its own words; done again here for results recorded before it did."""
    items = list(result.items)
    for name, nb in executed.items():
        start = starts.get(name)
        if nb is None or start is None:
            continue
        mine = redact_tests([i for i in items if i.notebook == name], nb, start)
        redone = iter(mine)
        items = [next(redone) if i.notebook == name else i for i in items]
    if any(start is not None for start in starts.values()):
        items = redact_checks(items, config, known=[result.message])
    return items


#: What the item table and a graded cell's header say for each state.
STATE_LABELS = {
    "pass": "passed",
    "fail": "lost points",
    "pending": "waiting for a grader",
    "hand": "graded by hand",
}


def _state(item: ItemResult) -> str:
    if item.hand_graded and item.manual_score is not None:
        return "hand"
    # A test cell missing from the submission is flagged for a human in nbgrader's gradebook,
    # but it is not an answer awaiting a grader: it lost its points (its message says why).
    if item.needs_manual_grade and item.hand_graded:
        return "pending"
    if item.needs_manual_grade and item.manual_score is None and not item.passed:
        return "fail"
    if item.needs_manual_grade:
        return "pending"
    return "pass" if item.passed else "fail"


def _item_view(item: ItemResult, scrub: Scrubber, final: bool) -> dict[str, Any]:
    message = _csv_message(item, final) if item.kind == "csv" else item.message
    state = _state(item)
    return {
        "id": item.id,
        "kind": item.kind,
        "notebook": item.notebook,
        "score": item.score,
        "max_score": item.max_score,
        "state": state,
        "label": STATE_LABELS[state],
        # scoring quotes the failing line; when that line was a hidden test, say so plainly.
        "message": scrub(message).replace(f"at `{Scrubber.REPLACEMENT}`", "in a hidden test"),
        # Set when the item's cell (or section) is on the page.
        "href": None,
    }


def _csv_message(item: Any, final: bool) -> str:
    """The CSV item's message; before the final reveal, without its private score."""
    details = item.details
    if final or "private" not in details:
        return str(item.message)
    public = f"public score {float(details['public']):.3f}"
    verdict = "valid" if item.passed else "valid, but below the required score"
    return f"the file is {verdict}; {public} (the private score is revealed at the end)"


def _accuracy_view(item: Any) -> dict[str, Any]:
    d = item.details
    if "confusion_matrix" not in d:
        return {"id": item.id, "message": item.message, "matrix": None}
    classes = [str(c) for c in d.get("classes", [])]
    matrix = [[int(v) for v in row] for row in d["confusion_matrix"]]
    rows = []
    for i, row in enumerate(matrix):
        total = sum(row)
        rows.append(
            {
                "label": classes[i] if i < len(classes) else str(i),
                "cells": [
                    {"count": v, "colour": heat(v, total, diagonal=i == j)}
                    for j, v in enumerate(row)
                ],
                "total": total,
                "correct": row[i] if i < len(row) else 0,
                "accuracy": (row[i] / total) if total and i < len(row) else None,
            }
        )
    return {
        "id": item.id,
        "message": item.message,
        "accuracy": d.get("accuracy"),
        "threshold": d.get("threshold"),
        "correct": d.get("correct"),
        "total": d.get("total"),
        "passed": item.passed,
        "classes": classes,
        "matrix": rows,
    }


def _csv_view(item: Any, scrub: Scrubber, final: bool, hidden_ran: bool) -> dict[str, Any]:
    d = item.details
    report = d.get("report") if isinstance(d.get("report"), Mapping) else None
    problems = []
    counts: dict[str, int] = {}
    if report is not None:
        counts = {str(k): int(v) for k, v in dict(report.get("counts", {})).items()}
        for p in list(report.get("problems", []))[:MAX_CSV_PROBLEMS]:
            if hidden_ran:
                # The file was written after the hidden tests ran: its rule, never its values.
                problems.append(csv_problem(p))
                continue
            where = f"line {p['line']}: " if p.get("line") is not None else ""
            problems.append(scrub(f"{where}{p.get('message', '')}"))
    return {
        "id": item.id,
        "passed": item.passed,
        "message": scrub(_csv_message(item, final)),
        "public": d.get("public"),
        "private": d.get("private") if final else None,
        "rows": d.get("rows") or (report or {}).get("rows_seen"),
        "problems": problems,
        "more": max(0, sum(counts.values()) - len(problems)),
    }


def _history_charts(history: Mapping[str, Any]) -> list[Any]:
    """One chart per metric: ``loss`` with ``val_loss``, ``accuracy`` with ``val_accuracy``...;
    only Keras' metric names, loss and accuracy first, at most :data:`MAX_CHARTS` charts of
    :data:`MAX_EPOCHS` epochs (the history is the notebook's, kept after its hidden tests)."""
    series, epochs = history_series(history)
    first = {"loss": 0, "accuracy": 1}
    names = sorted({k.removeprefix("val_") for k in series}, key=lambda n: (first.get(n, 2), n))
    charts = []
    for name in names:
        group = {k: series[k] for k in (name, f"val_{name}") if k in series}
        longest = max(epochs[k] for k in group)
        cut = f" (first {MAX_EPOCHS} of {longest} epochs)" if longest > MAX_EPOCHS else ""
        chart = line_chart(group, title=name + cut)
        if chart:
            charts.append(chart)
    return charts[:MAX_CHARTS]


# --- the executed notebook ---------------------------------------------------------------


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    text = plain(text)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n… ({len(text) - MAX_OUTPUT_CHARS:,} more characters)"
    return text


def _outputs(cell: NotebookNode, scrub: Scrubber) -> list[dict[str, Any]]:
    """The outputs of a cell that ran before any hidden test: text and images."""
    out: list[dict[str, Any]] = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            name = "stderr" if output.get("name") == "stderr" else "stdout"
            out.append({"kind": name, "text": scrub(_text(output.get("text", "")))})
        elif kind in {"execute_result", "display_data"}:
            data = output.get("data", {})
            uri = next(
                (u for m in ("image/png", "image/jpeg") if (u := image_uri(m, data.get(m)))),
                None,
            )
            if uri:
                out.append({"kind": "image", "uri": uri})
            elif "text/plain" in data:
                out.append({"kind": "stdout", "text": scrub(_text(data["text/plain"]))})
        elif kind == "error":
            head = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
            text = _text("\n".join(str(t) for t in output.get("traceback", [])) or head)
            out.append({"kind": "error", "text": scrub(text)})
    return out


#: Said where a notebook's outputs stop being shown, and why.
WITHHELD = (
    "Outputs from here on are not shown. This cell holds hidden tests: from the moment it "
    "started, the notebook's code could read them, so nothing it printed, displayed or raised "
    "after that is repeated on this page. Each test's verdict and message say how it went; "
    "run your notebook to see its outputs."
)
WITHHELD_EARLIER = (
    "This notebook's outputs are not shown: it ran after the hidden tests of an earlier "
    "notebook of this assignment were in reach of the code (the notebooks share one folder). "
    "Each test's verdict and message say how it went; run your notebook to see its outputs."
)


def _cells(
    nb: NotebookNode,
    notebook: str,
    sources: ReleasedSources,
    items: Mapping[tuple[str, str], dict[str, Any]],
    anchor: str,
    hidden_from: int | None,
) -> list[dict[str, Any]]:
    """The cells of an executed notebook as the page shows them; a cell scored by an item
    gets that item's verdict and an anchor the item table links to. From cell
    ``hidden_from`` on, code cells show no outputs; the first of them says why."""
    released = sources.released.get(notebook, {})
    hidden = sources.hidden_cells.get(notebook, set())
    language = sources.languages.get(notebook, "python")
    cells = []
    told = False
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        grade_id = str(meta.get("grade_id", "")) if meta.get("grade_id") is not None else ""
        source = raw = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if grade_id in released and not meta.get("solution"):
            # A test or locked cell: what the participant was given, never the hidden tests.
            source = released[grade_id]
        source = sources.scrub(strip_hidden_tests(source))
        verdict = items.get((notebook, grade_id)) if grade_id else None
        view: dict[str, Any] = {
            "type": cell.cell_type,
            "grade_id": grade_id,
            "graded": verdict is not None,
            "verdict": verdict,
            "anchor": f"{anchor}-{index}",
            "count": cell.get("execution_count") if cell.cell_type == "code" else None,
            "notice": "",
        }
        if verdict is not None and verdict["href"] is None:
            verdict["href"] = f"#{view['anchor']}"
        if cell.cell_type == "markdown":
            view["html"] = sources.markdown(source)
        elif cell.cell_type == "code":
            view["html"] = highlight(source, language)
            if hidden_from is not None and index >= hidden_from:
                view["outputs"] = []
                if not told:  # the first cell left without outputs says why
                    holds = grade_id in hidden or BEGIN_HIDDEN_TESTS in raw
                    view["notice"], told = WITHHELD if holds else WITHHELD_EARLIER, True
            else:
                view["outputs"] = _outputs(cell, sources.scrub)
        else:
            view["html"] = highlight(source, "text")
            view["outputs"] = []
        cells.append(view)
    return cells
