"""Scores as nbgrader's gradebook holds them, joined into our results.

nbgrader's ``grade`` and ``comment`` tables are the one record of scores (what formgrader and
``nbgrader export`` show, hand grades included); our results table adds what nbgrader has no
column for. :func:`joined` makes one :class:`SubmissionResult` of the two: each item scored as
nbgrader scores its grade (a manual score overrides the automatic one, extra credit counts),
with the grader's comment, and every item the gradebook scores present. The functions take an
open nbgrader ``Gradebook``; :mod:`autograder.gradebook` opens it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .results import HAND_GRADED_KINDS, WAITING, ItemResult, SubmissionResult


@dataclasses.dataclass(frozen=True)
class GradeRow:
    """One row of nbgrader's ``grade`` table, as nbgrader scores it."""

    kind: str
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    max_score: float
    needs_manual_grade: bool

    @property
    def score(self) -> float:
        """nbgrader's ``Grade.score``: the manual score if any, else the automatic one, plus
        extra credit."""
        base = self.manual_score if self.manual_score is not None else self.auto_score
        if base is None:
            return 0.0
        return base + (self.extra_credit or 0.0)


def _per_submission(
    gb: Any, row: Any, columns: tuple[Any, ...], assignment: str, student: str | None
) -> Any:
    """A query of ``columns`` over nbgrader's ``row`` table (``Grade`` or ``Comment``), each
    row led by its student, notebook and cell names, for one assignment (and student)."""
    from nbgrader.api import (
        Assignment,
        BaseCell,
        Notebook,
        Student,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    query = (
        gb.db.query(Student.id, Notebook.name, BaseCell.name, *columns)
        .select_from(row)
        .join(BaseCell, BaseCell.id == row.cell_id)
        .join(SubmittedNotebook, SubmittedNotebook.id == row.notebook_id)
        .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
        .join(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id)
        .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
        .join(Student, Student.id == SubmittedAssignment.student_id)
        .filter(Assignment.name == assignment)
    )
    return query if student is None else query.filter(Student.id == student)


def grade_rows(
    gb: Any, assignment: str, student: str | None = None
) -> dict[str, dict[tuple[str, str], GradeRow]]:
    """Every grade of ``assignment`` (of ``student`` only, when given): student ->
    (notebook, cell) -> grade, in one query."""
    from nbgrader.api import Assignment, BaseCell, Grade, Notebook, SolutionCell

    columns = (
        BaseCell.type,
        Grade.auto_score,
        Grade.manual_score,
        Grade.extra_credit,
        Grade.max_score,
        Grade.needs_manual_grade,
    )
    answers = {
        (nb, name)
        for nb, name in gb.db.query(Notebook.name, SolutionCell.name)
        .join(Notebook, Notebook.id == SolutionCell.notebook_id)
        .join(Assignment, Assignment.id == Notebook.assignment_id)
        .filter(Assignment.name == assignment)
    }
    out: dict[str, dict[tuple[str, str], GradeRow]] = {}
    query = _per_submission(gb, Grade, columns, assignment, student)
    for who, nb, name, polymorphic, auto, manual, extra, top, needs in query:
        if polymorphic == "TaskCell":
            kind = "task"
        elif (nb, name) in answers:
            kind = "manual"
        else:
            kind = "test"
        out.setdefault(who, {})[(nb, name)] = GradeRow(
            kind, auto, manual, extra, float(top or 0.0), bool(needs)
        )
    return out


def grader_comments(
    gb: Any, assignment: str, student: str | None = None
) -> dict[tuple[str, str, str], str]:
    """The grader's comment on every (student, notebook, cell) that has one."""
    from nbgrader.api import Comment

    query = _per_submission(gb, Comment, (Comment.manual_comment,), assignment, student)
    return {
        (who, nb, name): str(text)
        for who, nb, name, text in query.filter(Comment.manual_comment.isnot(None))
        if str(text).strip()
    }


def joined(
    result: SubmissionResult,
    grades: Mapping[tuple[str, str], GradeRow],
    comments: Mapping[tuple[str, str, str], str],
) -> SubmissionResult:
    """``result`` with every score as the gradebook holds it, and every item the gradebook
    scores (so totals and maxima are nbgrader's)."""
    default_nb = next((nb for nb, _ in grades), "")
    seen: set[tuple[str, str]] = set()
    items = []
    for item in result.items:
        key = (item.notebook or default_nb, item.id)
        grade = grades.get(key)
        if grade is None:
            items.append(item)
            continue
        seen.add(key)
        items.append(graded_item(item, grade, comments.get((result.student, *key), "")))
    for key, grade in grades.items():
        if key in seen:
            continue
        # Scored in the gradebook but not in our record: a cell added to the assignment
        # after this submission was graded (or a record older than task items).
        placeholder = ItemResult(
            id=key[1],
            kind=grade.kind,
            score=0.0,
            max_score=grade.max_score,
            passed=False,
            message=(
                f"{WAITING}"
                if grade.kind in HAND_GRADED_KINDS
                else "not graded yet: this "
                "item was added after the submission was graded; grade it again"
            ),
            notebook=key[0],
            needs_manual_grade=grade.needs_manual_grade,
        )
        items.append(graded_item(placeholder, grade, comments.get((result.student, *key), "")))
    return result.with_items(items)


def graded_item(item: ItemResult, grade: GradeRow, comment: str) -> ItemResult:
    """``item`` scored as nbgrader scores ``grade``, with the grader's comment."""
    score = round(grade.score, 6)
    extra = f" (including {grade.extra_credit:g} extra credit)" if grade.extra_credit else ""
    if grade.manual_score is not None:
        points = f"{score:g} of {grade.max_score:g} points{extra}"
        if item.hand_graded:
            message = f"graded by hand: {points}"
        else:
            message = f"score set by a grader: {points} (the automatic check said: {item.message})"
        if comment:
            message += f"; the grader wrote: {comment}"
        pending = False
    else:
        pending = grade.auto_score is None
        message = item.message + extra if not pending else item.message
        if comment:
            message += f"; the grader wrote: {comment}"
    passed = score >= grade.max_score if grade.manual_score is not None else item.passed
    return dataclasses.replace(
        item,
        score=score,
        max_score=grade.max_score,
        passed=passed and not pending,
        message=message,
        needs_manual_grade=pending,
        manual_score=grade.manual_score,
        comment=comment,
    )
