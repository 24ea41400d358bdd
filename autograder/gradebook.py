"""Step 5 of grading: record results in nbgrader's gradebook (SQLite by default, or PostgreSQL).

Only the coordinator calls this module: one writer, so no two processes ever race on the
database. Every item (nbgrader test cells, and our held-out accuracy and CSV checks) is a grade
in nbgrader's own tables, so ``nbgrader export`` and formgrader show the same totals as we do.
Beside nbgrader's tables, ``autograder_results`` keeps the whole :class:`SubmissionResult`
(status, messages, details) with the fingerprint that tells an unchanged submission from a
changed one. A submission's grades and its result row are committed in one transaction. The
SQL is what SQLite and PostgreSQL both speak (SQLAlchemy's, none written for one database), and
nothing depends on a database's own order of rows.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import AssignmentConfig, Course, check_notebook_for
from .errors import ConfigError
from .pages import spreadsheet_cell
from .release import SourceNotebook
from .results import SubmissionResult
from .scores import grade_rows, grader_comments, joined


@functools.cache
def _results_table() -> Any:
    """``autograder_results`` as a SQLAlchemy table: one row per (student, assignment).

    Declared with SQLAlchemy's types rather than as SQL text, so each database gets DDL of
    its own: ``Float`` is a double on SQLite and PostgreSQL alike, where ``REAL`` would be a
    single-precision float on PostgreSQL. The key columns are as wide as nbgrader's names."""
    import sqlalchemy as sa

    return sa.Table(
        "autograder_results",
        sa.MetaData(),
        sa.Column("student", sa.String(128), primary_key=True),
        sa.Column("assignment", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("graded_at", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )


@contextmanager
def open_gradebook(url: str) -> Iterator[Any]:
    """nbgrader's Gradebook at ``url``, with our results table created if missing.

    Any SQLAlchemy URL nbgrader accepts: SQLite (the default) or PostgreSQL
    (``postgresql+psycopg://...``, the ``postgres`` extra)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    # nbgrader stamps a new database by running the 'alembic' command, which lives beside our
    # interpreter: a venv's bin/ is not on PATH when .venv/bin/autograder is run directly.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    with warnings.catch_warnings():
        # nbgrader's add_submission trips SQLAlchemy 2's autoflush notices; they are harmless.
        warnings.filterwarnings("ignore", category=SAWarning)
        gb = Gradebook(url)
        try:
            _results_table().create(gb.db.connection(), checkfirst=True)
            gb.db.commit()
            yield gb
        finally:
            gb.close()
            # nbgrader makes an engine per Gradebook and leaves its pool open: on a server
            # database every call would keep a connection until garbage collection.
            gb.engine.dispose()


def register_assignment(
    url: str, config: AssignmentConfig, index: Mapping[str, SourceNotebook]
) -> None:
    """Record the assignment's notebooks, cells and checks (nbgrader's SaveCells, extended).

    Points and sources may change at any time. Removing a graded item once submissions are
    recorded would orphan their grades, so that is refused with a message saying what to do.
    """
    from nbgrader.api import MissingEntry

    with open_gradebook(url) as gb:
        gb.update_or_create_assignment(config.name)
        for name, source in index.items():
            wanted = {c.grade_id: c for c in source.cells}
            checks = [c for c in config.checks if check_notebook_for(c, config) == name]
            try:
                notebook = gb.find_notebook(name, config.name)
            except MissingEntry:
                notebook = gb.add_notebook(
                    name, config.name, kernelspec=json.dumps(source.kernelspec)
                )
            existing = {c.name for c in notebook.grade_cells}
            removed = existing - {c.grade_id for c in source.grade_cells} - {c.id for c in checks}
            if removed and notebook.submissions:
                raise ConfigError(
                    f"{config.name}/{name}: graded item(s) {', '.join(sorted(removed))} were "
                    "removed from the source, but submissions are already recorded; put them "
                    "back, or remove the old grades with 'nbgrader db assignment remove "
                    f"{config.name}' (or delete gradebook.db) and grade again"
                )
            for cell in wanted.values():
                if cell.grade:
                    gb.update_or_create_grade_cell(
                        cell.grade_id,
                        name,
                        config.name,
                        max_score=cell.points,
                        cell_type=cell.cell_type,
                    )
                if cell.solution:
                    gb.update_or_create_solution_cell(cell.grade_id, name, config.name)
                if cell.task:
                    gb.update_or_create_task_cell(
                        cell.grade_id,
                        name,
                        config.name,
                        max_score=cell.points,
                        cell_type=cell.cell_type,
                    )
                gb.update_or_create_source_cell(
                    cell.grade_id,
                    name,
                    config.name,
                    cell_type=cell.cell_type,
                    locked=cell.locked,
                    source=cell.source,
                    checksum=cell.checksum,
                )
            for check in checks:
                gb.update_or_create_grade_cell(
                    check.id, name, config.name, max_score=check.points, cell_type="code"
                )
                gb.update_or_create_source_cell(
                    check.id,
                    name,
                    config.name,
                    cell_type="code",
                    locked=True,
                    source=f"# autograder {check.kind} check {check.id} (graded outside "
                    "the notebook)",
                    checksum=None,
                )
            if not notebook.submissions:
                for stale in removed:
                    gb.db.delete(gb.find_grade_cell(stale, name, config.name))
            gb.db.commit()


def record(url: str, result: SubmissionResult) -> SubmissionResult:
    """Write one graded submission: nbgrader grades and comments, then our result row.

    Returns the result as the gradebook now scores it (a grader's earlier hand grades kept).
    """
    import sqlalchemy as sa
    from nbgrader.api import Comment, Grade, MissingEntry

    with open_gradebook(url) as gb:
        gb.update_or_create_student(result.student)
        timestamp = result.submitted_at
        kwargs: dict[str, Any] = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(result.assignment, result.student, **kwargs)
        notebooks = {nb.notebook.name: nb for nb in submission.notebooks}
        # The first by name, as SQLite lists them; other databases list them in any order.
        default_nb = min(notebooks, default="")
        for item in result.items:
            nb_name = item.notebook or default_nb
            if nb_name not in notebooks:
                continue
            cell_name = (nb_name, result.assignment)
            try:
                grade = gb.find_grade(item.id, *cell_name, result.student)
            except MissingEntry:
                # A cell added after this submission was first recorded.
                cell = (
                    gb.find_task_cell(item.id, *cell_name)
                    if item.kind == "task"
                    else gb.find_grade_cell(item.id, *cell_name)
                )
                grade = Grade(cell_id=cell.id, notebook=notebooks[nb_name])
                gb.db.add(grade)
            # A pending manual item keeps no automatic score, exactly as nbgrader leaves it;
            # a score a grader entered (manual_score) is never touched, as nbgrader's
            # autograde keeps it, and flags the item for review.
            grade.auto_score = None if item.needs_manual_grade else item.score
            grade.needs_manual_grade = bool(
                item.needs_manual_grade or grade.manual_score is not None
            )
            if item.hand_graded:
                try:
                    comment = gb.find_comment(item.id, *cell_name, result.student)
                except MissingEntry:
                    cell = (
                        gb.find_task_cell(item.id, *cell_name)
                        if item.kind == "task"
                        else gb.find_solution_cell(item.id, *cell_name)
                    )
                    comment = Comment(cell_id=cell.id, notebook=notebooks[nb_name])
                    gb.db.add(comment)
                unanswered = item.kind == "manual" and not item.needs_manual_grade
                comment.auto_comment = "No response." if unanswered and item.score == 0 else None
        # Our row replaced in the same transaction, in SQL every database speaks (SQLite's
        # INSERT OR REPLACE is SQLite's own). One writer per submission: the coordinator.
        table = _results_table()
        row = {
            "fingerprint": result.fingerprint,
            "status": result.status,
            "score": result.score,
            "max_score": result.max_score,
            "graded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "record": json.dumps(result.to_record(), default=str),
        }
        key = {"student": result.student, "assignment": result.assignment}
        updated = gb.db.execute(
            sa.update(table)
            .where(table.c.student == result.student, table.c.assignment == result.assignment)
            .values(row)
        )
        if updated.rowcount == 0:
            gb.db.execute(sa.insert(table).values({**key, **row}))
        gb.db.commit()
        grades = grade_rows(gb, result.assignment, result.student)
        comments = grader_comments(gb, result.assignment, result.student)
    return joined(result, grades.get(result.student, {}), comments)


def fingerprints(url: str, assignment: str) -> dict[str, str]:
    """Fingerprint of the recorded result of every student of ``assignment``."""
    import sqlalchemy as sa

    table = _results_table()
    with open_gradebook(url) as gb:
        rows = gb.db.execute(
            sa.select(table.c.student, table.c.fingerprint).where(table.c.assignment == assignment)
        )
        return {student: fp for student, fp in rows}


def load_results(url: str, assignment: str) -> list[SubmissionResult]:
    """Every recorded result of ``assignment``, by student name, with its scores read from
    nbgrader's tables: what a grader entered by hand (formgrader, or nbgrader's API) overrides
    the automatic score, extra credit counts, and the grader's comments come along. Our own
    row supplies what nbgrader does not hold (status, messages, details, timings)."""
    import sqlalchemy as sa

    table = _results_table()
    with open_gradebook(url) as gb:
        rows = gb.db.execute(
            sa.select(table.c.student, table.c.record).where(table.c.assignment == assignment)
        ).fetchall()
        grades = grade_rows(gb, assignment)
        comments = grader_comments(gb, assignment)
    out = []
    # Sorted here, not by ORDER BY: a server database sorts by its collation (PostgreSQL's
    # en_US puts "bob" before "Carol"), SQLite by code point, as Python does.
    for _, record_ in sorted(rows, key=lambda row: row[0]):
        result = SubmissionResult.from_record(json.loads(record_))
        out.append(joined(result, grades.get(result.student, {}), comments))
    return out


def results(course: Course, assignment: str) -> list[SubmissionResult]:
    """Every recorded result of ``assignment`` in ``course``'s gradebook, by student name
    (what ``autograder results --json`` prints, one :class:`SubmissionResult` each)."""
    return load_results(course.gradebook_url, assignment)


def nbgrader_totals(url: str, assignment: str) -> dict[str, float]:
    """Each student's total as nbgrader itself computes it (what ``nbgrader export`` shows)."""
    with open_gradebook(url) as gb:
        return {row["student"]: float(row["score"]) for row in gb.submission_dicts(assignment)}


#: nbgrader's CSV export columns (nbgrader.plugins.export.CsvExportPlugin), in its order.
NBGRADER_EXPORT_COLUMNS = (
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
)


def export_rows(url: str, assignment: str) -> list[dict[str, str]]:
    """nbgrader's export rows for ``assignment``: one per student, as nbgrader writes them."""
    from nbgrader.api import MissingEntry

    rows = []
    with open_gradebook(url) as gb:
        try:
            record_ = gb.find_assignment(assignment)
        except MissingEntry:
            return []
        for student in sorted(gb.students, key=_name_order):
            row: dict[str, Any] = {
                "assignment": record_.name,
                "duedate": record_.duedate,
                "student_id": student.id,
                "last_name": student.last_name,
                "first_name": student.first_name,
                "email": student.email,
                "max_score": record_.max_score,
            }
            try:
                submission = gb.find_submission(assignment, student.id)
            except MissingEntry:
                row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
            else:
                penalty = submission.late_submission_penalty
                row.update(
                    timestamp=submission.timestamp,
                    raw_score=submission.score,
                    late_submission_penalty=penalty,
                    score=max(0.0, submission.score - penalty),
                )
            rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    return rows


def _name_order(student: Any) -> tuple[Any, ...]:
    """nbgrader's order of students (by last name, then first name) made the same on every
    database: SQLite puts missing names first and ties in insertion order, PostgreSQL missing
    names last and ties in any order; here missing names come first and ties go by id."""
    last, first = student.last_name, student.first_name
    return (last is not None, last or "", first is not None, first or "", student.id)


def write_csv(results: Sequence[SubmissionResult], path: Path, *, course: Course) -> None:
    """CSV with nbgrader's export columns (from the gradebook, so totals agree with
    ``nbgrader export``), then status, message and one score column per item. Every cell is
    text a spreadsheet shows as text (:func:`~autograder.pages.spreadsheet_cell`): a name or
    message that starts like a formula gets a quote before it, controls are dropped."""
    assignment = results[0].assignment if results else ""
    by_student = {r.student: r for r in results}
    item_ids: list[str] = []
    for result in results:
        for item in result.items:
            if item.id not in item_ids:
                item_ids.append(item.id)
    rows = export_rows(course.gradebook_url, assignment) if assignment else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        head = [*NBGRADER_EXPORT_COLUMNS, "status", "message", *item_ids]
        writer.writerow([spreadsheet_cell(v) for v in head])
        for row in rows:
            found = by_student.get(row["student_id"])
            scores = {i.id: f"{i.score:g}" for i in found.items} if found else {}
            cells = [
                *(row[c] for c in NBGRADER_EXPORT_COLUMNS),
                found.status if found else "missing",
                found.message if found else "no submission recorded",
                *(scores.get(i, "") for i in item_ids),
            ]
            writer.writerow([spreadsheet_cell(v) for v in cells])
