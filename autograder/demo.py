"""``autograder demo``: the whole loop on the embedded digits, in a fresh course folder.

It prepares the digits, copies the repository's ``source/mnist-kaggle`` exercise, releases it,
submits five notebooks that show what grading does (a complete solution, the release handed
in unchanged, a solution that crashes, a file that is not a notebook, and one that snoops for
the held-out labels and the network), grades them, prints the results, and writes the
feedback pages and the leaderboard.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from .config import Course
from .console import results_table
from .datasets import prepare
from .errors import ConfigError
from .feedback import write_feedback
from .grade import Progress, grade
from .job import GradeSettings
from .leaderboard import write_leaderboard
from .probe import require_sandbox
from .release import release
from .schedule import default_workers

ASSIGNMENT = "mnist-kaggle"
#: A file in the demo folder saying it holds a demo course (so it may be replaced).
MARKER = ".autograder-demo"
#: The exercise the demo grades: the repository's own ``source/`` folder.
REPO_SOURCE = Path(__file__).resolve().parents[1] / "source"

SNOOP = """\
# Eve looks around the grading machine and tries to phone home.
import glob, os, socket
print("files seen in /root and /home:", len(glob.glob("/root/*") + glob.glob("/home/*/*")))
try:
    open("/etc/shadow").read()
    print("/etc/shadow: readable")
except OSError as exc:
    print("/etc/shadow:", type(exc).__name__)
try:
    socket.create_connection(("pypi.org", 443), timeout=3)
    print("network: reachable")
except OSError as exc:
    print("network: unreachable", type(exc).__name__)
print("grader secrets in env:", sorted(k for k in os.environ if "TOKEN" in k or "KEY" in k))
"""


def _fresh_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise ConfigError(
            f"{folder} exists and is not a demo course; choose an empty or new folder with --dir"
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by 'autograder demo'; replaced by the next demo\n")


def _grade_cells(nb: NotebookNode, kind: str) -> list[NotebookNode]:
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get(kind)]


def _submissions(course: Course) -> dict[str, NotebookNode | bytes]:
    """The demo class: student name -> notebook (or raw bytes)."""
    solution = nbformat.read(course.source(ASSIGNMENT) / f"{ASSIGNMENT}.ipynb", as_version=4)
    released = nbformat.read(course.release(ASSIGNMENT) / f"{ASSIGNMENT}.ipynb", as_version=4)
    crashing = nbformat.from_dict(solution)
    first = _grade_cells(crashing, "solution")[0]
    first.source = "raise RuntimeError('ran out of time before finishing this')"
    snooping = nbformat.from_dict(solution)
    snooping.cells.append(new_code_cell(SNOOP))
    return {
        "alice": solution,  # the instructor's solution, handed in as a student would
        "bob": released,  # the student version, unchanged
        "carol": crashing,
        "dave": b"I could not get Jupyter to start, sorry\n",
        "eve": snooping,
    }


def run_demo(
    folder: Path,
    *,
    workers: int | None = None,
    sandbox: bool = True,
    echo: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> Course:
    """Build a demo course in ``folder``, grade its class, and report; returns the course."""
    if not (REPO_SOURCE / ASSIGNMENT).is_dir():
        raise ConfigError(
            f"the demo grades {REPO_SOURCE / ASSIGNMENT}, which is missing; run the demo from a "
            "checkout of the repository (make demo)"
        )
    if sandbox:
        require_sandbox()
    folder = folder.resolve()
    _fresh_folder(folder)
    course = Course.at(folder)
    echo(f"demo course in {folder}")
    prepared = prepare("digits", course=course)
    echo(
        f"  data: embedded digits, {prepared.counts['train']:,} train / "
        f"{prepared.counts['test']:,} test images; the test labels stay grader-only"
    )
    shutil.copytree(REPO_SOURCE / ASSIGNMENT, course.source(ASSIGNMENT))
    release(course, ASSIGNMENT)
    echo(f"  released {course.release(ASSIGNMENT)} (no solutions, no hidden tests)")
    for student, content in _submissions(course).items():
        target = course.submitted(student, ASSIGNMENT)
        target.mkdir(parents=True)
        if isinstance(content, bytes):
            (target / f"{ASSIGNMENT}.ipynb").write_bytes(content)
        else:
            nbformat.write(content, target / f"{ASSIGNMENT}.ipynb")
    n_workers = workers or default_workers(())
    echo(
        f"  grading 5 submissions with {n_workers} worker(s)"
        f"{'' if sandbox else ' WITHOUT the sandbox'}; this takes a few minutes on a CPU"
    )
    report = grade(
        course,
        ASSIGNMENT,
        settings=GradeSettings(sandbox=sandbox),
        workers=n_workers,
        progress=progress,
    )
    results_table(sorted(report.graded, key=lambda r: r.student))
    pages = write_feedback(course, ASSIGNMENT)
    board = write_leaderboard(course, ASSIGNMENT)
    alice = next((p for p in pages if "alice" in p.parts), pages[0])
    echo(f"feedback pages: {len(pages)} under {folder / 'feedback'}, e.g. {alice}")
    echo(f"leaderboard: {board}")
    return course
