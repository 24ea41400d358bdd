"""Step 1 of grading: make a submitted notebook safe to score.

The steps mirror nbgrader's autograde sanitizing (ClearOutput, DeduplicateIds,
OverwriteKernelspec, OverwriteCells, CheckCellMetadata) but restore cells from a
:class:`~autograder.release.SourceNotebook` carried with the job, so a worker needs no
database. Restoring is stricter than nbgrader's: every nbgrader flag of a known cell is
reset from the source, not only ``locked``, ``points`` and ``checksum``. The hand-in cell
``release`` appends (``[service] url``) is removed first: grading never runs it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import nbformat
from nbformat import NotebookNode

from .errors import InvalidNotebookError
from .notebooks import clone, nbgrader_meta
from .release import SourceNotebook, strip_hidden_tests
from .submitcell import is_submit_cell

#: The kernel every submission runs on, whatever the notebook asks for.
FORCED_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}
INJECTED_TAG = "injected-parameters"


@dataclasses.dataclass
class SanitizeContext:
    """What the steps read (the source, parameters) and write (notes for the participant)."""

    source: SourceNotebook
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: One sentence per change made to the submission, shown in feedback.
    notes: list[str] = dataclasses.field(default_factory=list)
    #: Grade ids of the source that the submission lacks (they score 0).
    missing: list[str] = dataclasses.field(default_factory=list)
    #: The released notebook's graded cells, by grade id: (source, points). A cell as it was
    #: released is never "edited" nor "claimed" points, even when the source changed since.
    released: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)
    #: Grade ids of the submission that the source does not have (their metadata dropped).
    unknown: list[str] = dataclasses.field(default_factory=list)


Step = Callable[[NotebookNode, SanitizeContext], NotebookNode]


def clear_outputs(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """Drop every output and execution count: only what runs here counts."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        cell.metadata.pop("execution", None)
    return nb


def drop_hand_in_cell(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """Remove the hand-in cell ``release`` appends (its tag, submitcell.py): it scores
    nothing, must never run here, and would fill the feedback page with the client's code.
    A cell with a grade id of the source stays, whatever its tags."""

    def known(cell: NotebookNode) -> bool:
        grade_id = nbgrader_meta(cell).get("grade_id")
        return isinstance(grade_id, str) and ctx.source.cell(grade_id) is not None

    nb.cells = [c for c in nb.cells if known(c) or not is_submit_cell(c)]
    return nb


def deduplicate_ids(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """A grade id used twice keeps its metadata on the last cell only (as nbgrader does)."""
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        meta = nbgrader_meta(cell)
        if not any(meta.get(k) for k in ("grade", "solution", "locked", "task")):
            continue
        grade_id = str(meta.get("grade_id"))
        if grade_id in seen:
            cell.metadata.pop("nbgrader", None)
            ctx.notes.append(
                f"cell id {grade_id!r} appears more than once; only its last copy was graded"
            )
        else:
            seen.add(grade_id)
    return nb


def force_kernelspec(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """Run on the grader's Python kernel, whatever kernel the submission names."""
    asked = nb.metadata.get("kernelspec", {})
    language = (asked.get("language") if isinstance(asked, dict) else None) or "python"
    if language != "python":
        raise InvalidNotebookError(
            f"the notebook is written for the {language!r} kernel; this assignment is Python: "
            "open the released notebook with a Python kernel, copy your answers over and submit "
            "that"
        )
    nb.metadata["kernelspec"] = dict(FORCED_KERNELSPEC)
    return nb


def _set_cell_type(cell: NotebookNode, cell_type: str) -> None:
    if cell.cell_type == cell_type:
        return
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def released_cells(nb: NotebookNode) -> dict[str, tuple[str, Any]]:
    """The graded cells of a released notebook, by grade id: (source, points)."""
    cells = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if isinstance(meta.get("grade_id"), str):
            cells[meta["grade_id"]] = (str(cell.source), meta.get("points"))
    return cells


def restore_cells(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """nbgrader's OverwriteCells: restore type, flags, points, checksum and locked sources."""
    from nbgrader.utils import compute_checksum

    present: set[str] = set()
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        source_cell = ctx.source.cell(grade_id) if isinstance(grade_id, str) else None
        if source_cell is None:
            # Unknown to the gradebook: nbgrader drops the id; we drop all its grading
            # metadata, so a forged or stale cell can neither score nor break validation.
            if isinstance(grade_id, str) and nbgrader_meta(cell).get("grade"):
                ctx.unknown.append(grade_id)
            cell.metadata.pop("nbgrader", None)
            continue
        meta = nbgrader_meta(cell)
        present.add(source_cell.grade_id)
        if cell.cell_type != source_cell.cell_type:
            ctx.notes.append(
                f"cell {grade_id!r} was changed from {source_cell.cell_type} to "
                f"{cell.cell_type}; it was changed back"
            )
            _set_cell_type(cell, source_cell.cell_type)
        new_meta: dict[str, Any] = {
            "grade": source_cell.grade,
            "grade_id": grade_id,
            "locked": source_cell.locked,
            "schema_version": 3,
            "solution": source_cell.solution,
            "task": source_cell.task,
            "checksum": source_cell.checksum,
            "cell_type": source_cell.cell_type,
        }
        if source_cell.points is not None:
            new_meta["points"] = source_cell.points
        old_points = meta.get("points")
        if source_cell.points is not None and old_points is not None:
            try:
                changed = float(old_points) != source_cell.points
            except (TypeError, ValueError):
                changed = True
            if changed and source_cell.grade_id in ctx.released:
                changed = ctx.released[source_cell.grade_id][1] != old_points
            if changed:
                ctx.notes.append(
                    f"cell {grade_id!r} claimed {old_points!r} points; it is worth "
                    f"{source_cell.points:g}"
                )
        cell.metadata["nbgrader"] = new_meta
        if source_cell.locked and compute_checksum(cell) != source_cell.checksum:
            # The released copy of a test cell lacks its hidden tests, so it always differs
            # from the gradebook's: only a change to the text the student was given is news.
            released = strip_hidden_tests(source_cell.source, strict=True)
            as_released = ctx.released.get(source_cell.grade_id, (released, None))[0]
            if cell.source.strip() not in {released.strip(), as_released.strip()}:
                ctx.notes.append(
                    f"read-only cell {grade_id!r} was edited; the original was restored before "
                    "grading"
                )
            cell.source = source_cell.source
            if compute_checksum(cell) != source_cell.checksum:  # pragma: no cover - invariant
                raise RuntimeError(f"inconsistent checksums for cell {grade_id}")
    for source_cell in ctx.source.grade_cells:
        if source_cell.grade_id not in present:
            ctx.missing.append(source_cell.grade_id)
    return nb


def check_metadata(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """nbgrader's CheckCellMetadata: the graded cells must now be well formed."""
    from nbgrader.nbgraderformat import MetadataValidator

    try:
        MetadataValidator().validate_nb(nb)
    except Exception as exc:  # ValidationError, SchemaTooOldError, SchemaTooNewError...
        raise InvalidNotebookError(
            f"the grading information of a cell is corrupted ({exc}); start again from the "
            "released notebook and copy your answers over"
        ) from None
    return nb


def inject_parameters(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """Papermill-style: insert the grading parameters after the cell tagged ``parameters``."""
    if not ctx.parameters:
        return nb
    lines = [
        "# Parameters injected by the autograder for grading.",
        *(f"{key} = {_python_literal(value)}" for key, value in sorted(ctx.parameters.items())),
    ]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    cell.id = INJECTED_TAG
    position = 0
    for index, existing in enumerate(nb.cells):
        if "parameters" in existing.metadata.get("tags", []):
            position = index + 1
            break
    nb.cells.insert(position, cell)
    return nb


def _python_literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float | str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_python_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


#: The order matters and is pinned by a test: the hand-in cell dropped before dedup (its
#: copies are no duplicates to report), restore after dedup (so the surviving copy is
#: restored), check after restore (so the checked metadata is the source's).
SANITIZE_STEPS: tuple[Step, ...] = (
    clear_outputs,
    drop_hand_in_cell,
    deduplicate_ids,
    force_kernelspec,
    restore_cells,
    check_metadata,
    inject_parameters,
)


def sanitize(nb: NotebookNode, ctx: SanitizeContext) -> NotebookNode:
    """Apply :data:`SANITIZE_STEPS` to a copy of ``nb``."""
    nb = clone(nb)
    for step in SANITIZE_STEPS:
        nb = step(nb, ctx)
    return nb
