"""Checks score what the sandbox produced: attacks through the files of a hand-in, graded end
to end in the sandbox.

One class on the tiny assignment with a CSV check on the embedded digits (``min_score``
0.85) and ``[submission] files = ["helpers.py", "cache/*.csv"]`` is graded once, two workers;
every test cell is solved, so the CSV item alone tells what an attack gained. A perfect CSV
(built here from the held-back labels, which no participant can reach) is handed in beside
the notebook, under the scored name, under another name the notebook copies, with a future
mtime, as a link to the labels; a ``data/`` folder, hidden files and nested folders try to
reach the work folder. Only what the notebook writes while it is graded counts: an answer
embedded in the notebook, or copied from a file the assignment names, is the participant's
own (they predicted well elsewhere) and scores.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from conftest import complete, make_tiny_course
from nbformat.v4 import new_code_cell

from autograder.config import Course
from autograder.csvcheck import read_labels
from autograder.datasets import prepare
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.results import SubmissionResult

pytestmark = pytest.mark.sandbox

SETTINGS = GradeSettings(sandbox=True, timeout_cell=20, timeout_total=90, memory_limit="1G")
TOML = """\
[assignment]
title = "Tiny"
dataset = "digits"

[execute]
timeout_cell = 20
timeout_total = 90

[submission]
files = ["helpers.py", "cache/*.csv"]

[[checks]]
id = "kaggle-csv"
kind = "csv"
file = "submission.csv"
min_score = 0.85
points = 2
"""
NOT_WRITTEN = "the notebook did not write submission.csv; run the cell that saves the predictions"
HINT = (
    " (the submission.csv handed in beside the notebook is checked but never scored: a CSV "
    "counts only when the notebook writes it while it is graded)"
)
LEFT_OUT = (
    "; only the notebook and the files the assignment names are taken from a submission, and "
    "a CSV counts only when the notebook writes it while it is graded"
)
CHECKED = (
    "submission.csv, handed in beside the notebook, was checked but not scored (a CSV counts "
    "only when the notebook writes it while it is graded): "
)


@dataclasses.dataclass
class Batch:
    course: Course
    results: dict[str, SubmissionResult]
    perfect: str
    rows: int


def _perfect(course: Course) -> str:
    labels = read_labels(course.heldout("digits") / "test-labels.csv")
    return "ImageId,Label\n" + "".join(f"{i},{label}\n" for i, (label, _) in sorted(labels.items()))


def _with(course: Course, *sources: str) -> nbformat.NotebookNode:
    nb = complete(course)
    nb.cells.extend(new_code_cell(source) for source in sources)
    return nb


def _hand_in(course: Course, student: str, nb: nbformat.NotebookNode, files: dict) -> Path:
    folder = course.submitted(student, "tiny")
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "tiny.ipynb")
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


LISTING = """\
import os
seen = sorted(
    os.path.relpath(os.path.join(root, name))
    for root, dirs, names in os.walk(".")
    for name in dirs + names
    if not root.startswith(("./data", "./outbox"))
)
print("LISTING", json.dumps(seen))
print("DATA", sorted(os.listdir("data")), open("data/train.csv").readline()[:20])
"""
#: Every CSV file the sandbox can read, by content: is the handed-in answer anywhere?
FINDER = """\
import hashlib, json, os, sys
skip = {"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}
found = []
for root, dirs, names in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in names:
        path = os.path.join(root, name)
        try:
            if os.path.getsize(path) < 10**6 and name.endswith(".csv"):
                if hashlib.sha256(open(path, "rb").read()).hexdigest() == WANTED:
                    found.append(path)
        except OSError:
            pass
print("FOUND", json.dumps(found))
"""


def _batch(root: Path) -> Batch:
    course = make_tiny_course(root)
    (course.source("tiny") / "assignment.toml").write_text(TOML)
    release(course, "tiny")
    prepare("digits", course=course)
    perfect = _perfect(course)
    wanted = hashlib.sha256(perfect.encode()).hexdigest()
    embedded = base64.b64encode(perfect.encode()).decode()
    labels = course.heldout("digits") / "test-labels.csv"
    invalid = "ImageId,Label\n1,x\n"
    submissions = {
        # The baseline: the same notebook, nothing handed in, no CSV written.
        "plain": (_with(course), {}),
        "beside": (_with(course), {"submission.csv": perfect}),
        "future": (_with(course), {"submission.csv": perfect}),
        "copier": (
            _with(course, "import shutil\nshutil.copy('my.csv', 'submission.csv')"),
            {"my.csv": perfect},
        ),
        "finder": (
            _with(course, f"import json\nWANTED = {wanted!r}\n" + FINDER),
            {"submission.csv": perfect, "my.csv": perfect, "deep/er/x.csv": perfect},
        ),
        "embedded": (
            _with(
                course,
                "import base64\n"
                f"open('submission.csv', 'wb').write(base64.b64decode({embedded!r}))",
            ),
            {},
        ),
        "named": (
            _with(
                course,
                "import shutil, helpers\nshutil.copy('cache/preds.csv', 'submission.csv')\n"
                "print('HELPER', helpers.X)",
            ),
            {"helpers.py": "X = 42\n", "cache/preds.csv": perfect},
        ),
        "nested": (
            _with(course, "import json\n" + LISTING),
            {
                "data/train.csv": "label,pixel0\n9,9\n",
                "data/extra.txt": "mine",
                ".env": "TOKEN=1",
                ".hidden/x.py": "",
                "extra/sub/deep.txt": "",
                "notes.md": "",
                "helpers.py": "X = 1\n",
            },
        ),
        "writes-invalid": (
            _with(course, "open('submission.csv', 'w').write('ImageId,Label\\n1,3\\n')"),
            {"submission.csv": perfect},
        ),
        "invalid-beside": (_with(course), {"submission.csv": invalid}),
        "linked": (
            _with(course, "import os\nprint('OPEN', os.path.exists('submission.csv'))"),
            {},
        ),
    }
    for student, (nb, files) in submissions.items():
        _hand_in(course, student, nb, files)
    future = course.submitted("future", "tiny") / "submission.csv"
    os.utime(future, (time.time() + 86400, time.time() + 86400))
    # The grader's own labels, linked under the scored name: never followed, never read.
    (course.submitted("linked", "tiny") / "submission.csv").symlink_to(labels)
    report = grade(course, "tiny", settings=SETTINGS, backend="local", workers=2)
    results = {r.student: r for r in report.graded}
    assert set(results) == set(submissions)
    return Batch(course, results, perfect, perfect.count("\n") - 1)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return _batch(tmp_path_factory.mktemp("files") / "course")


def _csv(result: SubmissionResult):
    return result.item("kaggle-csv")


def _printed(batch: Batch, student: str, marker: str) -> str:
    nb = nbformat.read(batch.course.autograded(student, "tiny") / "tiny.ipynb", as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith(marker + " "):
                    return line[len(marker) + 1 :]
    raise AssertionError(f"{student} printed no {marker} line")


def test_every_test_cell_passed_so_the_csv_item_alone_shows_what_an_attack_gained(batch):
    for student, result in batch.results.items():
        assert result.status == "graded", (student, result.message)
        tests = [i for i in result.items if i.kind == "test"]
        assert all(i.passed for i in tests), (student, [i.message for i in tests])
    plain = _csv(batch.results["plain"])
    assert (plain.score, plain.message) == (0.0, NOT_WRITTEN)


@pytest.mark.parametrize("student", ["beside", "future"])
def test_a_perfect_csv_handed_in_beside_the_notebook_is_checked_never_scored(batch, student):
    result = batch.results[student]
    item = _csv(result)
    assert (item.score, item.passed) == (0.0, False)
    assert item.message == NOT_WRITTEN + HINT
    assert item.details["handed_in"]["valid"] is True
    assert item.details["handed_in"]["path"] == "submission.csv"  # no server path
    assert (
        f"{CHECKED}it is a valid digits submission of {batch.rows} rows" in result.details["notes"]
    )
    assert result.score == batch.results["plain"].score
    # The participant's page shows the note; so does results --json.
    assert f"{CHECKED}it is a valid digits submission" in result.to_json()["notes"][0]


def test_a_csv_the_notebook_copies_from_a_file_not_named_is_not_there(batch):
    result = batch.results["copier"]
    item = _csv(result)
    assert item.score == 0
    # After the hidden tests ran, the exception is named, its message (the notebook's text)
    # is not shown (redact.py).
    assert item.message == (
        "the notebook did not write submission.csv: cell [6], which writes it, raised "
        "FileNotFoundError; fix that cell"
    )
    assert f"not used for grading: my.csv{LEFT_OUT}" in result.details["notes"]


def test_the_handed_in_answer_is_nowhere_the_sandbox_can_read(batch):
    assert json.loads(_printed(batch, "finder", "FOUND")) == []
    notes = batch.results["finder"].details["notes"]
    assert f"not used for grading: deep/ (1 file), my.csv{LEFT_OUT}" in notes


def test_an_answer_the_notebook_writes_while_graded_is_scored_embedded_or_named(batch):
    # What remains: a participant can carry a precomputed answer in (embedded in the
    # notebook, or in a file the assignment names); the labels are never reachable, so it
    # is an answer they predicted well elsewhere.
    for student in ("embedded", "named"):
        item = _csv(batch.results[student])
        assert (item.score, item.passed) == (2.0, True), (student, item.message)
        assert item.message == "submission.csv is valid; its public score is 1.000 (required 0.850)"
        assert "handed_in" not in item.details
    assert _printed(batch, "named", "HELPER") == "42"
    assert batch.results["named"].details["notes"] == []


def test_nested_hidden_and_data_folders_never_reach_the_work_folder(batch):
    listing = json.loads(_printed(batch, "nested", "LISTING"))
    assert "helpers.py" in listing  # named, so taken
    for name in (".env", ".hidden", "extra", "notes.md"):
        assert not any(path.split("/")[0] == name for path in listing), (name, listing)
    data = _printed(batch, "nested", "DATA")
    released = sorted(p.name for p in batch.course.data("digits").iterdir())
    assert data.startswith(str(released)) and "extra.txt" not in data
    assert "label,pixel0,pixel1" in data  # the released train.csv, not the handed-in one
    assert batch.results["nested"].details["notes"] == [
        f"not used for grading: .env, .hidden/ (1 file), extra/ (1 file), notes.md{LEFT_OUT}",
        "the submitted data/ folder was replaced by the released data",
    ]


def test_the_file_the_notebook_writes_is_scored_not_the_one_handed_in(batch):
    result = batch.results["writes-invalid"]
    item = _csv(result)
    assert item.score == 0
    assert item.message.startswith("submission.csv is not a valid digits submission (")
    assert HINT not in item.message
    assert (
        f"{CHECKED}it is a valid digits submission of {batch.rows} rows" in result.details["notes"]
    )


def test_an_invalid_csv_handed_in_gets_its_report_named_by_rule_and_line(batch):
    result = batch.results["invalid-beside"]
    item = _csv(result)
    assert item.message == NOT_WRITTEN + HINT
    report = item.details["handed_in"]
    assert report["valid"] is False and report["problems"]
    (note,) = [n for n in result.details["notes"] if n.startswith(CHECKED)]
    assert note.startswith(CHECKED + "it is not a valid digits submission (")
    assert "line 2: " in note


def test_a_link_to_the_graders_labels_is_never_followed(batch):
    result = batch.results["linked"]
    assert _printed(batch, "linked", "OPEN") == "False"
    item = _csv(result)
    assert item.score == 0 and item.details["handed_in"]["valid"] is False
    (note,) = [n for n in result.details["notes"] if n.startswith(CHECKED)]
    assert note == (
        CHECKED + "it is not a valid digits submission (1 problem): the file is a symbolic link; "
        "submit the file itself"
    )
    assert "Public" not in json.dumps(item.details)  # nothing of the labels file was read


@pytest.mark.slow
def test_the_service_takes_a_csv_beside_the_notebook_and_reports_it(batch, tmp_path):
    from servicekit import LiveService, auth, wait_for

    with LiveService(batch.course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        token = live.token("uploader")
        path = tmp_path / "tiny.ipynb"
        nbformat.write(_with(batch.course), path)
        files = [
            ("files", ("tiny.ipynb", path.read_bytes(), "application/x-ipynb+json")),
            ("files", ("predictions.csv", batch.perfect.encode(), "text/csv")),
        ]
        r = client.post(
            "/api/submissions", data={"assignment": "tiny"}, files=files, headers=auth(token)
        )
        assert r.status_code == 202, r.text
        done = wait_for(client, r.json()["url"], token)
        assert done["status"] == "graded"
        (item,) = [i for i in done["items"] if i["id"] == "kaggle-csv"]
        assert (item["score"], item["message"]) == (0.0, NOT_WRITTEN + HINT)
        page = client.get(done["feedback_url"], headers=auth(token)).text
        assert "handed in beside the notebook, was checked but not scored" in page
        assert f"it is a valid digits submission of {batch.rows} rows" in page
