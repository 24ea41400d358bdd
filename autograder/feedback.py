"""``autograder feedback``: one self-contained HTML page per participant.

``feedback/<student>/<assignment>/index.html`` holds the score, a table of every item (test
cells with their messages, the held-out accuracy against its threshold, the Kaggle CSV
verdict), a confusion matrix and per-class accuracy, the training curves when the notebook
kept a ``history``, and the executed notebook.

The executed notebook has nbgrader's hidden tests put back (nbgrader issue #917 is about
feedback leaking them). Here every test cell shows the released source instead, a traceback
of a cell that holds hidden tests is cut to its last line, and every line of every hidden test
is scrubbed from all text on the page (outputs, messages). Outputs are escaped text and
PNG/JPEG images only: HTML and JavaScript a notebook displayed are never rendered.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .config import AssignmentConfig, Course, load_assignment
from .errors import AutograderError
from .gradebook import load_results
from .notebooks import nbgrader_meta, read_notebook
from .pages import (
    Scrubber,
    heat,
    image_uri,
    line_chart,
    plain,
    render,
    write_page,
)
from .release import gradebook_version, hidden_test_lines, strip_hidden_tests, student_version
from .results import SubmissionResult

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
        lines: list[str] = []
        for name in config.notebooks:
            released = student_version(course, config.name, name)
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
    items = [_item_view(item, scrub, final) for item in result.items]
    accuracy = [_accuracy_view(item) for item in result.items if item.kind == "accuracy"]
    csv = [_csv_view(item, scrub, final) for item in result.items if item.kind == "csv"]
    history = result.details.get("history") if isinstance(result.details, Mapping) else None
    charts = _history_charts(history) if isinstance(history, Mapping) else []
    notebooks: list[dict[str, Any]] = []
    folder = course.autograded(result.student, config.name)
    for name in config.notebooks:
        path = folder / f"{name}.ipynb"
        if not path.is_file():
            # Nothing ran (not a notebook, nothing submitted): the result's message says why.
            notebooks.append({"name": name, "cells": None, "error": result.message})
            continue
        try:
            nb = read_notebook(path)
        except AutograderError as exc:
            notebooks.append({"name": name, "cells": None, "error": str(exc)})
            continue
        notebooks.append({"name": name, "cells": _cells(nb, name, sources)})
    notes = result.details.get("notes", []) if isinstance(result.details, Mapping) else []
    return render(
        "feedback.html.j2",
        title=config.title or config.name,
        assignment=config.name,
        result=result,
        message=scrub(result.message),
        notes=[scrub(str(n)) for n in notes if isinstance(n, str)],
        items=items,
        accuracy=accuracy,
        csv=csv,
        charts=charts,
        notebooks=notebooks,
    )


# --- items ----------------------------------------------------------------------------------


def _state(item: Any) -> str:
    if item.needs_manual_grade:
        return "pending"
    return "pass" if item.passed else "fail"


def _item_view(item: Any, scrub: Scrubber, final: bool) -> dict[str, Any]:
    message = _csv_message(item, final) if item.kind == "csv" else item.message
    return {
        "id": item.id,
        "kind": item.kind,
        "notebook": item.notebook,
        "score": item.score,
        "max_score": item.max_score,
        "state": _state(item),
        # scoring quotes the failing line; when that line was a hidden test, say so plainly.
        "message": scrub(message).replace(f"at `{Scrubber.REPLACEMENT}`", "in a hidden test"),
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


def _csv_view(item: Any, scrub: Scrubber, final: bool) -> dict[str, Any]:
    d = item.details
    report = d.get("report") if isinstance(d.get("report"), Mapping) else None
    problems = []
    counts: dict[str, int] = {}
    if report is not None:
        counts = {str(k): int(v) for k, v in dict(report.get("counts", {})).items()}
        for p in list(report.get("problems", []))[:MAX_CSV_PROBLEMS]:
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
    """One chart per metric: ``loss`` with ``val_loss``, ``accuracy`` with ``val_accuracy``..."""
    series = {
        str(k): [float(v) for v in vs if isinstance(v, int | float)]
        for k, vs in history.items()
        if isinstance(vs, list)
    }
    charts = []
    for name in sorted(k for k in series if not k.startswith("val_")):
        group = {name: series[name]}
        if f"val_{name}" in series:
            group[f"val_{name}"] = series[f"val_{name}"]
        charts.append(line_chart(group, title=name))
    for name in sorted(k for k in series if k.startswith("val_") and k[4:] not in series):
        charts.append(line_chart({name: series[name]}, title=name))
    return [c for c in charts if c]


# --- the executed notebook ---------------------------------------------------------------


def _markdown(text: str) -> str:
    """Markdown as HTML with raw HTML escaped, images left out and only http(s)/mailto links."""
    return str(_markdown_parser()(text))


@functools.cache
def _markdown_parser() -> Any:
    import mistune

    class _SafeRenderer(mistune.HTMLRenderer):
        def image(self, text: str, url: str, title: str | None = None) -> str:
            return f"<em>[image: {text}]</em>"

        def link(self, text: str, url: str, title: str | None = None) -> str:
            if url.startswith(("http://", "https://", "mailto:", "#")):
                return str(super().link(text, url, title))
            return text

    return mistune.create_markdown(
        escape=True, renderer=_SafeRenderer(escape=True), plugins=["table", "strikethrough"]
    )


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    text = plain(text)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n… ({len(text) - MAX_OUTPUT_CHARS:,} more characters)"
    return text


def _outputs(cell: NotebookNode, scrub: Scrubber, hides_tests: bool) -> list[dict[str, Any]]:
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
            if hides_tests:
                # The frames would show the hidden test's lines around the failing one.
                text = _text(head) + "\n(the traceback is not shown: this cell has hidden tests)"
            else:
                text = _text("\n".join(str(t) for t in output.get("traceback", [])) or head)
            out.append({"kind": "error", "text": scrub(text)})
    return out


def _cells(nb: NotebookNode, notebook: str, sources: ReleasedSources) -> list[dict[str, Any]]:
    released = sources.released.get(notebook, {})
    hidden = sources.hidden_cells.get(notebook, set())
    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        grade_id = str(meta.get("grade_id", "")) if meta.get("grade_id") is not None else ""
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if grade_id in released and not meta.get("solution"):
            # A test or locked cell: what the participant was given, never the hidden tests.
            source = released[grade_id]
        source = sources.scrub(strip_hidden_tests(source))
        view: dict[str, Any] = {
            "type": cell.cell_type,
            "grade_id": grade_id,
            "graded": bool(meta.get("grade")),
            "count": cell.get("execution_count") if cell.cell_type == "code" else None,
        }
        if cell.cell_type == "markdown":
            view["html"] = _markdown(source)
        else:
            view["source"] = source
            view["outputs"] = (
                _outputs(cell, sources.scrub, grade_id in hidden)
                if cell.cell_type == "code"
                else []
            )
        cells.append(view)
    return cells
