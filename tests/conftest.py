"""Shared fixtures: a tiny pure-Python nbgrader assignment (no TensorFlow) and its variants."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.config import Course

REPO = Path(__file__).resolve().parents[1]
#: nbgrader's own test notebooks (BSD-3, see its LICENSE), vendored so a fresh clone has them.
FIXTURES = REPO / "tests" / "fixtures" / "nbgrader"
#: nbgrader's user-guide course (BSD-3, same LICENSE): ``ps1`` with two notebooks, tests,
#: written and coding answers graded by hand, a task cell and an image; students bitdiddle and
#: hacker, as nbgrader's documentation ships them.
USER_GUIDE = FIXTURES / "user-guide"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def graded(
    cell: NotebookNode, grade_id: str, *, grade=False, solution=False, locked=False, points=None
):
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
    }
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    cell.id = grade_id
    return cell


SOLUTION_SQUARES = (
    "def squares(n):\n"
    "    ### BEGIN SOLUTION\n"
    "    return [i * i for i in range(1, n + 1)]\n"
    "    ### END SOLUTION"
)
SOLUTION_TOTAL = (
    "def total(n):\n    ### BEGIN SOLUTION\n    return sum(squares(n))\n    ### END SOLUTION"
)


def tiny_source() -> NotebookNode:
    """Instructor notebook: two solution cells, two tests (one with hidden asserts), one
    answer graded by hand, a parameters cell."""
    params = new_code_cell("N = 3")
    params.metadata["tags"] = ["parameters"]
    params.id = "params"
    header = new_markdown_cell("# Tiny assignment\nWrite `squares` and `total`.")
    header.id = "header"
    cells = [
        graded(header, "header", locked=True),
        params,
        graded(new_code_cell(SOLUTION_SQUARES), "squares", solution=True),
        graded(
            new_code_cell(
                "assert squares(3) == [1, 4, 9]\n"
                "### BEGIN HIDDEN TESTS\n"
                "assert squares(1) == [1]\n"
                "### END HIDDEN TESTS"
            ),
            "test_squares",
            grade=True,
            points=2,
        ),
        graded(new_code_cell(SOLUTION_TOTAL), "total", solution=True),
        graded(new_code_cell("assert total(N) == 14"), "test_total", grade=True, points=1),
        graded(
            new_markdown_cell("YOUR ANSWER HERE"),
            "explain",
            grade=True,
            solution=True,
            points=1,
        ),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
    return nb


def write_nb(nb: NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny_course(tmp_path: Path) -> Course:
    """A course with the released 'tiny' assignment and no submissions yet."""
    return make_tiny_course(tmp_path / "course")


def tiny_job(course: Course, folder: Path, heldout: Path, settings: object, **fields: object):
    """A job of alice's for ``course``'s tiny assignment, nothing run, its submission and
    assignment files in ``folder`` and the held-out ``digits`` in ``heldout``: for tests of
    the evaluator's start and sandbox, which need a job but no notebook."""
    from autograder.config import load_assignment
    from autograder.job import GradeJob

    job_fields: dict = {
        "student": "alice",
        "config": load_assignment(course, "tiny"),
        "submission": folder,
        "autograded": folder / "autograded",
        "source": {},
        "assignment_files": folder,
        "data_dir": None,
        "heldout": {"digits": heldout},
        "fingerprint": "",
        "settings": settings,
    }
    return GradeJob(**{**job_fields, **fields})


def make_tiny_course(root: Path) -> Course:
    """Create the 'tiny' course at ``root`` (for fixtures of a wider scope than a test)."""
    from autograder.release import release

    write_nb(tiny_source(), root / "source" / "tiny" / "tiny.ipynb")
    (root / "source" / "tiny" / "assignment.toml").write_text(
        "[assignment]\ntitle = 'Tiny'\n\n[execute]\ntimeout_cell = 20\ntimeout_total = 60\n"
    )
    (root / "source" / "tiny" / "notes.txt").write_text("released with the notebook\n")
    course = Course.at(root)
    release(course, "tiny")
    return course


def released(course: Course, assignment: str = "tiny") -> NotebookNode:
    return nbformat.read(course.release(assignment) / f"{assignment}.ipynb", as_version=4)


def complete(course: Course) -> NotebookNode:
    """The released notebook with both solutions written and the answer given."""
    nb = released(course)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "squares":
            cell.source = "def squares(n):\n    return [i * i for i in range(1, n + 1)]"
        elif gid == "total":
            cell.source = "def total(n):\n    return sum(squares(n))"
        elif gid == "explain":
            cell.source = "The sum of the first n squares."
    return nb


def with_cell(nb: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
    return nb


@pytest.fixture
def submit(tiny_course: Course) -> Callable[..., Path]:
    """submit(student, notebook or bytes, name='tiny.ipynb') -> the submission folder."""

    def _submit(
        student: str, content: NotebookNode | bytes | str, name: str = "tiny.ipynb"
    ) -> Path:
        folder = tiny_course.submitted(student, "tiny")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content)
        else:
            nbformat.write(content, target)
        return folder

    return _submit


def make_user_guide_course(root: Path) -> Course:
    """nbgrader's user-guide course at ``root``: source/ps1 and the two submissions."""
    for part in ("source", "submitted"):
        shutil.copytree(USER_GUIDE / part, root / part)
    return Course.at(root)


@pytest.fixture(scope="session")
def graded_user_guide(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """The user-guide course graded once by us (no sandbox: nbgrader's own notebooks)."""
    from autograder.grade import GradeSettings, grade

    course = make_user_guide_course(tmp_path_factory.mktemp("user-guide") / "course")
    # nbgrader's course has no release/ of ours: graded from source/ as nbgrader does.
    grade(course, "ps1", settings=GradeSettings(sandbox=False), backend="inline", allow_stale=True)
    return course


@pytest.fixture
def user_guide_course(graded_user_guide: Course, tmp_path: Path) -> Course:
    """A copy of the graded user-guide course that a test may change (hand grades...)."""
    shutil.copytree(graded_user_guide.root, tmp_path / "user-guide")
    return Course.at(tmp_path / "user-guide")


#: Hand grades as a grader enters them (formgrader calls the same Gradebook API): student,
#: notebook, cell, manual score, extra credit, comment.
HAND_GRADES = [
    ("hacker", "problem1", "sum_of_squares_equation", 1.0, None, "Right: the sum of i squared."),
    ("hacker", "problem1", "sum_of_squares_application", 1.5, 0.5, "Nice use case [/] <b>bold</b>"),
    ("hacker", "problem1", "cell-938593c4a215c6cc", 3.0, None, "Geometric sum only."),
    # A test cell has no comment in nbgrader; its score can still be overridden.
    ("hacker", "problem1", "correct_squares", 0.0, None, None),
    ("hacker", "problem2", "part-a", 1.0, None, None),
    ("bitdiddle", "problem2", "part-b", 2.0, None, "Correct."),
]


def enter_hand_grades(url: str) -> None:
    """Enter :data:`HAND_GRADES` in the gradebook at ``url`` through nbgrader's API."""
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        for student, notebook, cell, score, extra, comment in HAND_GRADES:
            grade = gb.find_grade(cell, notebook, "ps1", student)
            grade.manual_score, grade.extra_credit = score, extra
            grade.needs_manual_grade = False
            if comment is not None:
                gb.find_comment(cell, notebook, "ps1", student).manual_comment = comment
        gb.db.commit()


def copy_fixture(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / name, dest)
    return dest


# PostgreSQL: one server for the whole session (tests/pgserver.py), a new database per test.


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the session's own, started on first use (a second or two) and
    stopped at the end: ``.url`` is the SQLAlchemy URL of its database ``autograder``,
    ``.create_database(name=None, template=None)`` makes another and returns its URL. Skips,
    saying what to install, where PostgreSQL or psycopg is missing."""
    import pgserver

    pytest.importorskip(
        "psycopg", reason="psycopg is not installed; install it: pip install -e '.[postgres]'"
    )
    if pgserver.find_bindir() is None:
        pytest.skip(f"PostgreSQL is not installed; install it: {pgserver.INSTALL}")
    server = pgserver.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The SQLAlchemy URL of a new, empty PostgreSQL database (``--gradebook URL``)."""
    return postgres_server.create_database()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the gpu tests on machines without a CUDA device, and the sandbox tests where
    bubblewrap or user namespaces do not work, each with the reason."""
    from autograder.schedule import detect_gpus

    if not detect_gpus():
        skip = pytest.mark.skip(reason="no CUDA device on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    sandboxed = [item for item in items if item.get_closest_marker("sandbox") is not None]
    if sandboxed:
        status = sandbox_status()
        if not status.ok:
            skip = pytest.mark.skip(reason=f"no sandbox here: {status.reason} ({status.fix})")
            for item in sandboxed:
                item.add_marker(skip)


def sandbox_status():
    """The probe's SandboxStatus(ok, reason, fix): whether bubblewrap and user namespaces work
    here (for the hook above and the benchmarks)."""
    from autograder.probe import probe

    return probe()


def host_processes(marker: str) -> list[tuple[int, str]]:
    """Live host processes (pid, command line) whose command line contains ``marker``, this
    test process excluded (pgrep -f, without procps)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append((int(entry.name), cmdline.decode(errors="replace")))
    return found


def _sandboxed(comm: str) -> bool:
    return comm in {"bwrap", "unshare", "prlimit", "setpriv", "sh"}


def grader_memory(root: int, pids: set[int] | None = None) -> int:
    """Resident bytes of ``root`` and its descendants, sandboxes (and what leads to them) left
    out: the grader's own processes (added to ``pids``)."""
    parents: dict[int, int] = {}
    comms: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            head, _, rest = stat.rpartition(")")
            comms[int(entry.name)] = head.split("(", 1)[1]
            parents[int(entry.name)] = int(rest.split()[1])
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        pid = stack.pop()
        if pid != root and _sandboxed(comms.get(pid, "")):
            continue
        if pids is not None:
            pids.add(pid)
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        stack.extend(kids.get(pid, []))
    return total
