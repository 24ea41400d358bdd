"""Grading a class end to end on the tiny assignment: scores, statuses, bad input, reruns."""

from __future__ import annotations

import contextlib
import json
import sys

import nbformat
import pytest
from click.testing import CliRunner
from conftest import complete, released, with_cell

from autograder import gradebook
from autograder.cli import cli
from autograder.grade import GradeSettings, grade
from autograder.results import ItemResult, SubmissionResult

UNSAFE = GradeSettings(sandbox=False)


def by_student(report):
    return {r.student: r for r in report.graded}


def test_a_class_with_good_and_broken_submissions_is_graded_whole(tiny_course, submit):
    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    submit("carol", with_cell(complete(tiny_course), "squares", "raise ValueError('stuck')"))
    submit("dave", b"this is not a notebook\n")
    submit("erin", b"")
    submit("frank", b'{"cells": [')
    (tiny_course.submitted_root / "gina").mkdir(parents=True)  # folder, but no tiny/ in it

    results = by_student(grade(tiny_course, "tiny", settings=UNSAFE, backend="inline"))

    assert set(results) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina"}
    alice = results["alice"]
    assert alice.status == "graded"
    assert [(i.id, i.score) for i in alice.items] == [
        ("test_squares", 2.0),
        ("test_total", 1.0),
        ("explain", 0.0),
    ]
    assert alice.item("explain").needs_manual_grade
    assert alice.item("explain").message == "answered; waiting for a grader"

    bob = results["bob"]
    assert bob.status == "graded"
    assert bob.score == 0
    assert bob.item("test_squares").message == (
        "the test failed at `assert squares(3) == [1, 4, 9]`: NotImplementedError (a solution "
        "cell still raises NotImplementedError: write your code there)"
    )
    assert bob.item("explain").message == (
        "no answer: the cell is unchanged from the released notebook"
    )

    carol = results["carol"]
    assert carol.status == "graded"
    assert carol.item("test_squares").score == 0
    assert carol.item("test_total").message.startswith("the test failed at `assert total(N) == 14`")

    assert results["dave"].status == "invalid-notebook"
    assert results["dave"].message == (
        "tiny.ipynb is not valid notebook JSON (line 1, column 1: Expecting value); download "
        "the notebook again from Jupyter (File > Download) and submit that file"
    )
    assert results["erin"].status == "invalid-notebook"
    assert results["erin"].message == (
        "tiny.ipynb is empty; save the notebook in Jupyter (File > Save) and submit it again"
    )
    assert results["frank"].message.startswith(
        "tiny.ipynb is not valid notebook JSON (it ends too early (the file is truncated))"
    )
    assert results["gina"].status == "missing"
    for student in ("dave", "erin", "frank", "gina"):
        assert results[student].score == 0
        assert results[student].max_score == 4
        assert all(i.message for i in results[student].items)


def test_a_notebook_of_another_assignment_is_named_as_such(tiny_course, submit, tmp_path):
    from conftest import copy_fixture

    folder = submit("hal", complete(tiny_course))
    copy_fixture("test.ipynb", folder / "tiny.ipynb")
    (result,) = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline").graded
    assert result.status == "invalid-notebook"
    assert result.message == (
        "tiny.ipynb has none of this assignment's graded cells: it looks like a notebook of "
        "another assignment; submit your copy of the released tiny.ipynb"
    )


def test_a_lone_notebook_with_another_name_is_graded_with_a_note(tiny_course, submit):
    submit("ivan", complete(tiny_course), name="tiny (1).ipynb")
    (result,) = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline").graded
    assert result.status == "graded"
    assert result.score == 3
    assert "tiny (1).ipynb was graded as tiny.ipynb" in result.details["notes"]


def test_rerun_skips_unchanged_and_regrades_changed_submissions(tiny_course, submit):
    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    first = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline")
    assert len(first.graded) == 2

    again = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline")
    assert again.graded == ()
    assert sorted(again.skipped) == ["alice", "bob"]

    submit("bob", complete(tiny_course))  # bob resubmits, fixed
    third = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline")
    assert [r.student for r in third.graded] == ["bob"]
    assert third.graded[0].score == 3

    forced = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline", force=True)
    assert sorted(r.student for r in forced.graded) == ["alice", "bob"]
    # One result row and one nbgrader submission per student, however often graded.
    assert [r.student for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")] == [
        "alice",
        "bob",
    ]
    assert gradebook.nbgrader_totals(tiny_course.gradebook_url, "tiny") == {
        "alice": 3.0,
        "bob": 3.0,
    }


def test_results_json_follows_the_design_schema(tiny_course, submit):
    submit("alice", complete(tiny_course))
    submit("dave", b"not json")
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "--course-dir",
            str(tiny_course.root),
            "grade",
            "tiny",
            "--unsafe-no-sandbox",
            "--backend",
            "inline",
        ],
    )
    assert out.exit_code == 0, out.output
    res = runner.invoke(cli, ["--course-dir", str(tiny_course.root), "results", "tiny", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [d["student"] for d in data] == ["alice", "dave"]
    for entry in data:
        assert {"student", "assignment", "status", "score", "max_score", "items"} <= set(entry)
        for item in entry["items"]:
            assert set(item) == {"id", "kind", "score", "max_score", "passed", "message"}
            assert item["kind"] in {"test", "manual", "task", "accuracy", "csv"}
        assert entry["notebooks"] == [
            {"name": "tiny", "score": entry["score"], "max_score": entry["max_score"]}
        ]
    assert data[0]["status"] == "graded"
    assert data[0]["score"] == 3.0
    assert data[1]["status"] == "invalid-notebook"


def test_the_results_table_prints_submission_text_as_text(capsys):
    from autograder.console import results_table

    hostile = "ValueError: [/] [bold red]x[/bold red] \x1b[2J\x1b]0;title\x07 done\r"
    result = SubmissionResult(
        student="eve",
        assignment="tiny",
        status="graded",
        items=(ItemResult("t", "test", 0.0, 1.0, False, hostile, notebook="tiny"),),
    )
    results_table([result])  # rich would raise MarkupError on "[/]" read as markup
    out = capsys.readouterr().out
    assert "[/] [bold red]x[/bold red]" in out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "\\x1b[2J" in out and "\\x07" in out


def test_csv_export_agrees_with_nbgrader_totals(tiny_course, submit, tmp_path):
    import csv

    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    grade(tiny_course, "tiny", settings=UNSAFE, backend="inline")
    path = tmp_path / "grades.csv"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["--course-dir", str(tiny_course.root), "results", "tiny", "--csv", str(path)]
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(path.open()))
    assert [r["student_id"] for r in rows] == ["alice", "bob"]
    assert [float(r["score"]) for r in rows] == [3.0, 0.0]
    assert rows[0]["max_score"] == "4.0"
    assert rows[0]["status"] == "graded"
    assert rows[0]["test_squares"] == "2"

    # The same file nbgrader's own exporter writes has the same totals.
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(tiny_course.root)
    api = NbGraderAPI(config=config)
    nbgrader_rows = {s["student"]: s["score"] for s in api.get_submissions("tiny")}
    assert nbgrader_rows == {"alice": 3.0, "bob": 0.0}


@pytest.mark.parametrize("workers", [2])
def test_local_pool_grades_in_worker_processes(tiny_course, submit, workers):
    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    submit("carol", b"")
    results = by_student(
        grade(tiny_course, "tiny", settings=UNSAFE, backend="local", workers=workers)
    )
    assert {s: r.score for s, r in results.items()} == {"alice": 3, "bob": 0, "carol": 0}


def test_workers_see_the_environment_of_the_grade_call_not_of_the_fork_server(
    tiny_course, submit, monkeypatch
):
    from autograder import schedule

    schedule.warm_up("local")  # the fork server keeps the environment it started with
    monkeypatch.setenv("TZ", "Etc/GMT+3")  # one of the variables a kernel is given
    solution = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"
    check = 'import os\nassert os.environ["TZ"] == "Etc/GMT+3", os.environ.get("TZ")\n'
    submit("alice", with_cell(complete(tiny_course), "squares", check + solution))
    results = by_student(grade(tiny_course, "tiny", settings=UNSAFE, backend="local", workers=2))
    assert results["alice"].score == 3, results["alice"]


def test_a_submission_that_kills_its_worker_is_recorded_and_the_class_goes_on(tiny_course, submit):
    # Without the sandbox the kernel can see its parent, the worker; the OOM killer does the same.
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
    submit("mallory", with_cell(complete(tiny_course), "squares", killer))
    for student in ("alice", "bob", "carol"):
        submit(student, complete(tiny_course))
    results = by_student(grade(tiny_course, "tiny", settings=UNSAFE, backend="local", workers=2))

    assert {s: r.score for s, r in results.items() if s != "mallory"} == {
        "alice": 3,
        "bob": 3,
        "carol": 3,
    }
    mallory = results["mallory"]
    assert mallory.status == "error"
    assert mallory.score == 0
    assert mallory.message == (
        "the grading worker process was killed while grading this submission (twice: the system "
        "stops processes that use too much memory); grade it again alone with "
        "`autograder grade tiny --student mallory --workers 1`"
    )
    stored = {r.student: r for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")}
    assert stored["mallory"].status == "error"


def _recorded(db) -> dict[str, str]:
    """Each student's stored result row (read-only, so the grader is never blocked)."""
    import sqlite3

    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            rows = conn.execute("SELECT student, graded_at || record FROM autograder_results")
            return dict(rows.fetchall())
        except sqlite3.OperationalError:  # the table does not exist yet
            return {}


def _nbgrader_rows(db) -> dict[str, tuple[int, int, int]]:
    """Per student: nbgrader submissions, submitted notebooks and grades (duplicates show)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT sa.student_id, COUNT(DISTINCT sa.id), COUNT(DISTINCT sn.id), COUNT(g.id) "
            "FROM submitted_assignment sa JOIN submitted_notebook sn ON sn.assignment_id = sa.id "
            "JOIN grade g ON g.notebook_id = sn.id GROUP BY sa.student_id"
        )
        return {student: (a, n, g) for student, a, n, g in rows}


@pytest.mark.slow
def test_a_grader_killed_mid_class_loses_nothing_and_regrades_nothing(tiny_course, submit):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    students = [f"s{i}" for i in range(6)]
    slow = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\nimport time\n"
    for student in students:
        submit(student, with_cell(complete(tiny_course), "squares", slow + "time.sleep(1.5)"))
    db = tiny_course.root / "gradebook.db"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "autograder", "--course-dir", str(tiny_course.root)]
    command += ["grade", "tiny", "--workers", "1", "--unsafe-no-sandbox"]

    def run(*extra: str) -> str:
        done = subprocess.run(
            [*command, *extra], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _recorded(db) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the coordinator and its workers at once
        first.wait()
    before = _recorded(db)
    assert 1 <= len(before) < len(students), "the kill must land mid-class"

    out = run()
    assert f"{len(students) - len(before)} graded, {len(before)} unchanged" in out
    after = _recorded(db)
    assert sorted(after) == students  # each exactly once (the table's key is the student)
    assert {s: after[s] for s in before} == before  # same time, same record: not regraded
    assert _nbgrader_rows(db) == {s: (1, 1, 3) for s in students}
    assert {
        r.student: r.score for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")
    } == {s: 3.0 for s in students}

    assert f"{len(students)} graded, 0 unchanged;" in run("--force")
    assert _nbgrader_rows(db) == {s: (1, 1, 3) for s in students}

    submit("s3", with_cell(complete(tiny_course), "total", "def total(n):\n    return 0"))
    again = run()
    assert f"1 graded, {len(students) - 1} unchanged (--force grades them again)" in again
    results = {
        r.student: r.score for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")
    }
    assert results == {**{s: 3.0 for s in students}, "s3": 2.0}
    assert _nbgrader_rows(db) == {s: (1, 1, 3) for s in students}


def test_grading_without_a_sandbox_is_refused_unless_asked(tiny_course, submit, monkeypatch):
    from autograder import probe

    submit("alice", complete(tiny_course))
    monkeypatch.setattr(probe, "TOOL_PATH", "/nonexistent")  # as if bwrap were not installed
    monkeypatch.setattr(probe, "_cached_probe", probe.probe)
    runner = CliRunner()
    out = runner.invoke(cli, ["--course-dir", str(tiny_course.root), "grade", "tiny"])
    assert out.exit_code == 2
    assert out.stderr == (
        "error: the sandbox for untrusted notebooks is not available: bubblewrap (bwrap) is not "
        "installed; install it: apt-get install bubblewrap (Debian/Ubuntu) or dnf install "
        "bubblewrap; or, for trusted notebooks only, pass --unsafe-no-sandbox\n"
    )
    assert gradebook.load_results(tiny_course.gradebook_url, "tiny") == []
    assert not tiny_course.autograded("alice", "tiny").exists()

    args = ["--course-dir", str(tiny_course.root), "grade", "tiny", "--unsafe-no-sandbox"]
    out = runner.invoke(cli, [*args, "--backend", "inline"])
    assert out.exit_code == 0, out.output
    assert [r.score for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")] == [3.0]


def test_gradebook_option_after_the_command(tiny_course, submit, tmp_path):
    submit("alice", complete(tiny_course))
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    runner = CliRunner()
    base = ["--course-dir", str(tiny_course.root)]
    graded = runner.invoke(
        cli, [*base, "grade", "tiny", "--backend", "inline", "--unsafe-no-sandbox",
              "--gradebook", url],
    )  # fmt: skip
    assert graded.exit_code == 0, graded.output
    assert gradebook.load_results(tiny_course.gradebook_url, "tiny") == []
    shown = runner.invoke(cli, [*base, "results", "tiny", "--json", "--gradebook", url])
    assert [(r["student"], r["score"]) for r in json.loads(shown.stdout)] == [("alice", 3.0)]
    same = runner.invoke(cli, [*base, "--gradebook", url, "results", "tiny", "--json"])
    assert same.stdout == shown.stdout


def _no_sandbox_here(monkeypatch):
    from autograder import probe

    monkeypatch.setattr(probe, "TOOL_PATH", "/nonexistent")  # as if bwrap were not installed
    monkeypatch.setattr(probe, "_cached_probe", probe.probe)


def test_the_library_refuses_to_grade_without_a_sandbox_as_the_cli_does(
    tiny_course, submit, monkeypatch
):
    import autograder
    from autograder.errors import SandboxUnavailableError

    submit("alice", complete(tiny_course))
    _no_sandbox_here(monkeypatch)
    for call in (
        lambda: autograder.grade(tiny_course, "tiny", backend="inline"),
        lambda: autograder.validate(tiny_course, "tiny"),
    ):
        with pytest.raises(SandboxUnavailableError) as info:
            call()
        assert "bubblewrap (bwrap) is not installed" in info.value.message
        assert info.value.message.endswith("pass --unsafe-no-sandbox")
    assert not (tiny_course.root / "gradebook.db").exists()  # no sandbox-error per student
    assert not tiny_course.autograded("alice", "tiny").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--backend", "dusk"],
            "error: no backend named 'dusk'; choose one of inline, local, dask",
        ),
        (["--workers", "0"], "error: --workers must be at least 1, got 0"),
        (["--per-gpu", "0"], "error: --per-gpu must be at least 1, got 0"),
    ],
)
def test_a_typo_in_the_grading_options_is_refused_before_the_gradebook_is_touched(
    tiny_course, submit, options, message
):
    submit("alice", complete(tiny_course))
    base = ["--course-dir", str(tiny_course.root), "grade", "tiny", "--unsafe-no-sandbox"]
    out = CliRunner().invoke(cli, [*base, *options])
    assert (out.exit_code, out.stderr) == (2, message + "\n")
    assert not (tiny_course.root / "gradebook.db").exists()


def test_the_library_picks_the_worker_count_the_cli_shows(tiny_course, submit, monkeypatch):
    import autograder
    from autograder import schedule

    seen = {}
    real = schedule.run_jobs

    def spy(jobs, **kwargs):
        seen.update(kwargs)
        return real(jobs, **kwargs)

    monkeypatch.setattr(sys.modules["autograder.grade"], "run_jobs", spy)
    submit("alice", complete(tiny_course))
    report = autograder.grade(tiny_course, "tiny", settings=UNSAFE, backend="inline")
    assert [r.score for r in report.graded] == [3.0]
    assert (seen["workers"], seen["per_gpu"]) == (schedule.default_workers(()), 1)
    shown = CliRunner().invoke(
        cli, ["--course-dir", str(tiny_course.root), "grade", "tiny", "--unsafe-no-sandbox",
              "--backend", "inline", "--force"],
    )  # fmt: skip
    assert f"grading tiny with {schedule.default_workers(())} worker(s)" in shown.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[execute]\ntimeout_cel = 5\n", "unknown key(s) timeout_cel"),
        (
            "[[checks]]\nid = 'acc'\nkind = 'accuracy'\npoints = 1\nthreshold = 0.5\n",
            "data set 'digits' is not prepared",
        ),
    ],
)
def test_a_config_or_data_error_is_refused_before_workers_or_the_gradebook(
    tiny_course, submit, toml, message
):
    submit("alice", complete(tiny_course))
    (tiny_course.source("tiny") / "assignment.toml").write_text(toml)
    base = ["--course-dir", str(tiny_course.root), "grade", "tiny", "--unsafe-no-sandbox"]
    out = CliRunner().invoke(cli, [*base, "--backend", "inline"])
    assert out.exit_code == 2 and message in out.stderr, out.output
    assert "worker" not in out.stdout
    assert not (tiny_course.root / "gradebook.db").exists()


def test_the_results_table_fits_100_columns_with_one_line_per_student(capsys):
    from autograder.console import results_table

    crash = "the Python kernel stopped in cell [5] (it crashed, exited or was killed)"
    items = tuple(
        ItemResult(f"test_{n}", "test", 0.0, 1.0, False, crash, notebook="tiny") for n in range(6)
    )
    results = [
        SubmissionResult(student=name, assignment="tiny", status=status, message=msg, items=items)
        for name, status, msg in [
            ("a-participant-with-a-long-name", "kernel-died", crash),
            ("bo", "graded", ""),
        ]
    ]
    results_table(results)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(results)
    assert max(len(line) for line in lines) <= 100
    assert [line.count("the Python kernel stopped") for line in lines[2:]] == [1, 0]
    assert lines[3].startswith("bo ") and "test_0, test_1, test_2" in lines[3]


def _change_source_after_release(course) -> None:
    """The instructor edits a test cell and its points in source/ without releasing."""
    import nbformat
    from conftest import write_nb

    path = course.source("tiny") / "tiny.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "test_total":
            cell.source = "assert total(N) == 14\nassert total(1) == 1"
            meta["points"] = 2
    write_nb(nb, path)


def test_grade_and_validate_refuse_a_stale_release(tiny_course, submit):
    submit("alice", complete(tiny_course))
    _change_source_after_release(tiny_course)
    base = ["--course-dir", str(tiny_course.root)]
    for command in (["grade", "tiny", "--backend", "inline"], ["validate", "tiny"]):
        out = CliRunner().invoke(cli, [*base, *command, "--unsafe-no-sandbox"])
        assert out.exit_code == 2, out.output
        assert out.stderr == (
            "error: source/tiny changed since it was released: release/tiny/tiny.ipynb is "
            "stale (source/ changed since the last release); run 'autograder release tiny' "
            "first (participants need the new version), or pass --allow-stale to grade "
            "against the new source anyway\n"
        )
    assert not (tiny_course.root / "gradebook.db").exists()


def test_with_allow_stale_nobody_is_told_they_edited_what_the_instructor_changed(
    tiny_course, submit
):
    import autograder

    submit("alice", complete(tiny_course))
    _change_source_after_release(tiny_course)
    report = autograder.grade(tiny_course, "tiny", settings=UNSAFE, backend="inline",
                              allow_stale=True)  # fmt: skip
    alice = report.graded[0]
    assert alice.details["notes"] == []
    assert alice.item("test_total").max_score == 2


def test_another_assignments_notebook_whose_grade_ids_collide_is_named_as_such(tiny_course, submit):
    from conftest import graded as with_meta
    from nbformat.v4 import new_code_cell, new_notebook

    # Another assignment's notebook: one test shares this one's id, three are its own.
    cells = [
        with_meta(new_code_cell("raise NotImplementedError()"), "build", solution=True),
        with_meta(new_code_cell("assert build()"), "test_squares", grade=True, points=2),
        *(
            with_meta(new_code_cell("assert True"), f"test_other_{n}", grade=True, points=1)
            for n in range(3)
        ),
    ]
    folder = submit("ivy", complete(tiny_course))
    nbformat.write(new_notebook(cells=cells), folder / "tiny.ipynb")
    (result,) = grade(tiny_course, "tiny", settings=UNSAFE, backend="inline").graded
    assert result.status == "invalid-notebook"
    assert result.message == (
        "tiny.ipynb looks like a notebook of another assignment: its graded cells "
        "'test_other_0', 'test_other_1', 'test_other_2' are not this assignment's, and "
        "'test_total', 'explain' of this one are missing; submit your copy of the released "
        "tiny.ipynb"
    )
    assert not any("NotImplementedError" in i.message for i in result.items)
