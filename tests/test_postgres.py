"""The gradebook on PostgreSQL: a class graded there scores as on SQLite, and what reads or
writes the gradebook (results, feedback, leaderboard, hand grades, a forced regrade, writers
at once) works on a real server of the session's own (``postgres_server`` in conftest.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner
from conftest import complete, make_tiny_course, released

from autograder import gradebook
from autograder.cli import cli
from autograder.config import Course, load_assignment
from autograder.grade import GradeSettings, grade
from autograder.release import source_index
from autograder.results import SubmissionResult

UNSAFE = GradeSettings(sandbox=False)
#: The class: a complete notebook, the released one untouched, a file that is not a notebook
#: and an empty one (two kernels in all).
STUDENTS = {"alice": 3.0, "bob": 0.0, "dave": 0.0, "erin": 0.0}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a gradebook says right after the class was graded into it."""

    url: str
    graded: tuple[SubmissionResult, ...]
    results: list[SubmissionResult]
    totals: dict[str, float]
    export: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class Graded:
    """The tiny class graded twice, into SQLite and into PostgreSQL (the template of the
    databases the tests that change it copy)."""

    course: Course
    sqlite: Snapshot
    postgres: Snapshot
    server: Any

    def on_postgres(self) -> Course:
        """The course with a fresh copy of its PostgreSQL gradebook, for a test to change."""
        url = self.server.create_database(template="graded")
        return dataclasses.replace(self.course, gradebook=url)


def _snapshot(course: Course, graded: tuple[SubmissionResult, ...]) -> Snapshot:
    url = course.gradebook_url
    return Snapshot(
        url,
        graded,
        gradebook.load_results(url, "tiny"),
        gradebook.nbgrader_totals(url, "tiny"),
        gradebook.export_rows(url, "tiny"),
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Graded:
    course = make_tiny_course(tmp_path_factory.mktemp("postgres") / "course")
    for student, content in {
        "alice": complete(course),
        "bob": released(course),
        "dave": b"not json",
        "erin": b"",
    }.items():
        folder = course.submitted(student, "tiny")
        folder.mkdir(parents=True)
        if isinstance(content, bytes):
            (folder / "tiny.ipynb").write_bytes(content)
        else:
            nbformat.write(content, folder / "tiny.ipynb")
    snapshots = []
    for url in (course.gradebook_url, postgres_server.create_database("graded")):
        on = dataclasses.replace(course, gradebook=url)
        report = grade(on, "tiny", settings=UNSAFE, backend="local", workers=2)
        snapshots.append(_snapshot(on, report.graded))
    return Graded(course, *snapshots, server=postgres_server)


def _comparable(result: SubmissionResult) -> SubmissionResult:
    return dataclasses.replace(result, duration_s=0.0)


def test_a_class_graded_on_postgresql_scores_as_on_sqlite(graded):
    sqlite, postgres = graded.sqlite, graded.postgres
    assert postgres.url.startswith("postgresql+psycopg://")
    assert {r.student: r.score for r in postgres.graded} == STUDENTS
    assert [r.student for r in postgres.results] == sorted(STUDENTS)
    assert [_comparable(r) for r in postgres.results] == [_comparable(r) for r in sqlite.results]
    by_student = {r.student: r for r in postgres.results}
    assert [(i.id, i.score, i.max_score) for i in by_student["alice"].items] == [
        ("test_squares", 2.0, 2.0),
        ("test_total", 1.0, 1.0),
        ("explain", 0.0, 1.0),
    ]
    assert by_student["alice"].item("explain").needs_manual_grade
    assert by_student["dave"].status == "invalid-notebook"
    assert postgres.totals == sqlite.totals == STUDENTS
    assert postgres.export == sqlite.export
    assert [row["student_id"] for row in postgres.export] == sorted(STUDENTS)


def test_nbgrader_stamps_a_new_postgresql_gradebook_with_its_alembic_head(graded):
    import sqlalchemy as sa

    def stamp_and_score_type(url: str) -> tuple[list[str], str]:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                stamps = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                versions = [v for (v,) in stamps]
            columns = sa.inspect(engine).get_columns("autograder_results")
            return versions, next(str(c["type"]) for c in columns if c["name"] == "score")
        finally:
            engine.dispose()

    versions, score_type = stamp_and_score_type(graded.postgres.url)
    assert versions == stamp_and_score_type(graded.sqlite.url)[0]
    assert len(versions) == 1 and versions[0]
    assert score_type == "DOUBLE PRECISION"  # not REAL, single precision on PostgreSQL


def test_results_and_feedback_read_a_postgresql_gradebook(graded):
    runner = CliRunner()
    base = ["--course-dir", str(graded.course.root)]
    outputs = {}
    for name, url in (("sqlite", graded.sqlite.url), ("postgres", graded.postgres.url)):
        shown = runner.invoke(cli, [*base, "results", "tiny", "--json", "--gradebook", url])
        assert shown.exit_code == 0, shown.output
        pages = runner.invoke(cli, [*base, "feedback", "tiny", "--gradebook", url])
        assert pages.exit_code == 0, pages.output
        feedback = graded.course.feedback("alice", "tiny") / "index.html"
        page = re.sub(r"graded in [\d.]+ s", "graded in ? s", feedback.read_text())
        outputs[name] = (json.loads(shown.stdout), page)
    assert [(r["student"], r["score"]) for r in outputs["postgres"][0]] == list(STUDENTS.items())
    for entry in (*outputs["sqlite"][0], *outputs["postgres"][0]):
        entry.pop("duration_s")
    assert outputs["postgres"] == outputs["sqlite"]


def test_the_leaderboard_ranks_a_postgresql_gradebook_as_a_sqlite_one(graded, tmp_path):
    from test_feedback import CHECKS, csv_item

    # The class's gradebooks (copies), with a CSV check added and three results that have one.
    course = Course.at(tmp_path / "course")
    shutil.copytree(graded.course.source("tiny"), course.source("tiny"))
    toml = course.source("tiny") / "assignment.toml"
    toml.write_text(toml.read_text() + CHECKS)
    config = load_assignment(course, "tiny")
    shutil.copyfile(graded.course.gradebook_path, course.gradebook_path)
    alice = next(r for r in graded.postgres.results if r.student == "alice")
    pages = []
    for url in (course.gradebook_url, graded.on_postgres().gradebook_url):
        gradebook.register_assignment(url, config, source_index(course, config))
        for student, public, when in [
            ("ann", 0.91, "2025-05-01T10:05:00+00:00"),
            ("ben", 0.97, "2025-05-01T10:20:00+00:00"),
            ("cat", 0.91, "2025-05-01T10:01:00+00:00"),
        ]:
            items = (*alice.items, csv_item(public, public - 0.1))
            result = dataclasses.replace(alice, student=student, items=items, submitted_at=when)
            gradebook.record(url, result)
        output = tmp_path / f"leaderboard-{len(pages)}.html"
        ranked = CliRunner().invoke(
            cli,
            ["--course-dir", str(course.root), "leaderboard", "tiny", "--gradebook", url,
             "--output", str(output)],
        )  # fmt: skip
        assert ranked.exit_code == 0, ranked.output
        pages.append(output.read_text())
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>(\w+)</td>", pages[1])
    assert rows == [("1", "ben"), ("2", "cat"), ("3", "ann")]
    assert pages[1] == pages[0]


def _enter_hand_grade(url: str) -> None:
    """Alice's answer graded by hand through nbgrader's API, as formgrader does."""
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        grade_ = gb.find_grade("explain", "tiny", "tiny", "alice")
        grade_.manual_score, grade_.extra_credit = 1.0, 0.5
        grade_.needs_manual_grade = False
        gb.find_comment("explain", "tiny", "tiny", "alice").manual_comment = "Well put."
        gb.db.commit()
    gb.engine.dispose()


HAND_GRADED = (
    "graded by hand: 1.5 of 1 points (including 0.5 extra credit); the grader wrote: Well put."
)


def test_a_hand_grade_entered_through_nbgrader_shows_in_the_results(graded):
    url = graded.on_postgres().gradebook_url
    _enter_hand_grade(url)
    alice = next(r for r in gradebook.load_results(url, "tiny") if r.student == "alice")
    assert alice.item("explain").score == 1.5
    assert alice.item("explain").message == HAND_GRADED
    assert alice.score == 4.5
    assert gradebook.nbgrader_totals(url, "tiny") == {**STUDENTS, "alice": 4.5}
    assert gradebook.export_rows(url, "tiny")[0]["score"] == "4.5"


def _nbgrader_rows(url: str) -> dict[str, tuple[int, int, int]]:
    """Per student: nbgrader submissions, submitted notebooks and grades (duplicates show)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT sa.student_id, COUNT(DISTINCT sa.id), COUNT(DISTINCT sn.id), "
                    "COUNT(g.id) FROM submitted_assignment sa JOIN submitted_notebook sn ON "
                    "sn.assignment_id = sa.id JOIN grade g ON g.notebook_id = sn.id "
                    "GROUP BY sa.student_id"
                )
            )
            counts = {student: (a, n, g) for student, a, n, g in rows}
            ours = conn.execute(sa.text("SELECT student FROM autograder_results")).fetchall()
    finally:
        engine.dispose()
    assert sorted(s for (s,) in ours) == sorted(counts)  # one result row each, no more
    return counts


def test_a_forced_regrade_keeps_one_row_per_student_and_the_hand_grade(graded):
    course = graded.on_postgres()
    url = course.gradebook_url
    _enter_hand_grade(url)
    again = grade(course, "tiny", settings=UNSAFE, backend="local", workers=2, force=True)
    assert sorted(r.student for r in again.graded) == sorted(STUDENTS)
    assert _nbgrader_rows(url) == {s: (1, 1, 3) for s in STUDENTS}
    alice = next(r for r in again.graded if r.student == "alice")
    assert alice.item("explain").message == HAND_GRADED
    assert gradebook.nbgrader_totals(url, "tiny") == {**STUDENTS, "alice": 4.5}
    skipped = grade(course, "tiny", settings=UNSAFE, backend="inline")
    assert (skipped.graded, sorted(skipped.skipped)) == ((), sorted(STUDENTS))


def test_records_from_several_threads_at_once_all_land(graded):
    url = graded.on_postgres().gradebook_url
    alice = next(r for r in graded.postgres.results if r.student == "alice")
    results = [dataclasses.replace(alice, student=f"s{i}") for i in range(8)]

    def record_all() -> list[BaseException]:
        start, errors = threading.Barrier(len(results)), []

        def record(result: SubmissionResult) -> None:
            start.wait()
            try:
                gradebook.record(url, result)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=record, args=(r,)) for r in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return errors

    assert record_all() == []  # new students: nbgrader's rows and ours inserted at once
    assert record_all() == []  # the same students again: updated at once
    stored = {r.student: r.score for r in gradebook.load_results(url, "tiny")}
    everyone = {**STUDENTS, **{r.student: 3.0 for r in results}}
    assert stored == everyone
    assert gradebook.nbgrader_totals(url, "tiny") == everyone
    assert _nbgrader_rows(url) == {s: (1, 1, 3) for s in everyone}


def test_the_server_fixture_gives_each_test_an_empty_database(postgres_url, postgres_server):
    import sqlalchemy as sa

    assert postgres_url != postgres_server.url
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
