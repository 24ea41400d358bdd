"""`autograder demo` (the README's first command): the whole loop on the embedded digits."""

from __future__ import annotations

import json

import pytest

from autograder import gradebook
from autograder.demo import ASSIGNMENT, run_demo
from autograder.errors import ConfigError


def test_a_folder_that_is_not_a_demo_course_is_never_replaced(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError) as err:
        run_demo(tmp_path, sandbox=False)
    assert str(err.value) == (
        f"{tmp_path} exists and is not a demo course; choose an empty or new folder with --dir"
    )
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


@pytest.mark.slow
@pytest.mark.sandbox
def test_the_demo_grades_its_class_in_the_sandbox_and_writes_the_pages(tmp_path):
    lines: list[str] = []
    course = run_demo(tmp_path / "demo", workers=2, echo=lines.append)
    results = {r.student: r for r in gradebook.load_results(course.gradebook_url, ASSIGNMENT)}
    assert {s: (r.status, r.score) for s, r in results.items()} == {
        "alice": ("graded", 14.0),
        "bob": ("graded", 0.0),
        "carol": ("graded", results["carol"].score),
        "dave": ("invalid-notebook", 0.0),
        "eve": ("graded", 14.0),
    }
    assert 0 < results["carol"].score < 14
    # Eve's snooping cell found nothing and reached nothing.
    nb = json.loads((course.autograded("eve", ASSIGNMENT) / f"{ASSIGNMENT}.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for o in nb["cells"][-1]["outputs"])
    assert printed == (
        "files seen in /root and /home: 0\n"
        "/etc/shadow: PermissionError\n"
        "network: unreachable gaierror\n"
        "grader secrets in env: []\n"
    )
    assert lines[-1] == f"leaderboard: {course.root / 'leaderboard.html'}"
    assert lines[-2].startswith("feedback pages: 5 under ")
    assert lines[-2].endswith(str(course.feedback("alice", ASSIGNMENT) / "index.html"))
    assert (course.feedback("alice", ASSIGNMENT) / "index.html").is_file()
