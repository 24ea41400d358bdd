"""A hostile class, graded end to end in the sandbox: every attack ends the way it should.

One class of submissions on the tiny assignment is graded once, with the sandbox on, two
workers and small limits; each test reads one submission's exact outcome (status, scores,
message, notes) and the class's honest students check that nobody else was harmed.
Processes a submission leaves behind carry a token in their argv[0], so the host can look
for them in /proc after grading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import complete, host_processes, make_tiny_course, released, with_cell
from nbformat import NotebookNode

from autograder import gradebook
from autograder.config import Course
from autograder.grade import GradeSettings, grade
from autograder.outputcap import TRUNCATED
from autograder.results import SubmissionResult

pytestmark = pytest.mark.sandbox

TOKEN = uuid.uuid4().hex[:12]
SETTINGS = GradeSettings(sandbox=True, timeout_cell=5, timeout_total=40, memory_limit="512M")
SQUARES = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"
WRONG = "def squares(n):\n    return [0]\n"
HONEST = ("alice", "zoe")
KERNEL_DIED = (
    "the Python kernel stopped in cell [2] (it crashed, exited or was killed); the cells after "
    "it were not run"
)
MISSING_CELL = (
    "this graded cell is missing from the submission; start from the released notebook and "
    "keep its cells"
)
ATTEMPT = '''
def attempt(action):
    """'ok' or the OSError's class and errno: the exact outcome of one action."""
    try:
        action()
    except OSError as exc:
        return f"{type(exc).__name__} {exc.errno}"
    return "ok"
'''


@dataclasses.dataclass
class Batch:
    course: Course
    results: dict[str, SubmissionResult]
    seconds: float
    #: Host-side facts taken before and right after grading.
    hashes_before: dict[str, str]
    connections: int
    leftovers_at_end: list[str]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_token(argv: str) -> list[str]:
    """Command lines of live host processes that carry ``argv`` (a marker with the token)."""
    return [cmdline for _pid, cmdline in host_processes(argv)]


def _host_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses (what the sandbox must not reach)."""
    try:
        out = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return []
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def _cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _snoop(course: Course) -> str:
    root = course.root
    targets = [
        root,
        root / "gradebook.db",
        root / ".autograder" / "heldout" / "digits" / "labels.csv",
        root / "source" / "tiny" / "tiny.ipynb",
        course.submitted("alice", "tiny") / "tiny.ipynb",
        course.autograded("alice", "tiny"),
    ]
    return (
        SQUARES
        + f"""
import json, os, sys
targets = {[str(t) for t in targets]!r}
found = [t for t in targets if os.path.exists(t)]
skip = {{"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}}
names = {{"gradebook.db", "labels.csv", "alice", "zoe", "heldout", "submitted"}}
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in dirs + files:
        path = os.path.join(root, name)
        if name in names or (name.endswith(".ipynb") and root != os.getcwd()):
            found.append(path)
print("FOUND", json.dumps(found))
"""
    )


def _network(port: int, hosts: list[str]) -> str:
    lines = [ATTEMPT, "import socket"]
    for host in ["127.0.0.1", *hosts]:
        lines.append(
            f"print({host!r}, attempt(lambda: socket.create_connection(({host!r}, {port}), 2)))"
        )
    lines += [
        "try:\n    socket.getaddrinfo('pypi.org', 443)\n    print('dns ok')\n"
        "except socket.gaierror as exc:\n    print('dns', type(exc).__name__)",
        "print(socket.if_nameindex())",
    ]
    return SQUARES + "\n".join(lines)


RUN_CELL_CHEAT = (
    WRONG
    + """
ip = get_ipython()
async def _nothing(*args, **kwargs):
    return await type(ip).run_cell_async(ip, "pass", store_history=False)
ip.run_cell_async = _nothing
ip.run_cell = lambda *args, **kwargs: type(ip).run_cell(ip, "pass")
ip.should_run_async = lambda *args, **kwargs: True
"""
)


def _submissions(course: Course, port: int) -> dict[str, NotebookNode | bytes]:
    done = complete(course)
    subs: dict[str, NotebookNode | bytes] = {
        "alice": done,
        "zoe": complete(course),
        "snoop": with_cell(complete(course), "squares", _snoop(course)),
        "net": with_cell(complete(course), "squares", _network(port, _host_addresses())),
        "looper": with_cell(complete(course), "squares", "while True:\n    pass\n" + SQUARES),
        "sleeper": with_cell(
            complete(course), "squares", SQUARES + "import time\ntime.sleep(10**6)"
        ),
        "stubborn": with_cell(
            complete(course),
            "squares",
            SQUARES + "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True:\n    pass",
        ),
        "heap": with_cell(
            complete(course),
            "squares",
            "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))\n" + SQUARES,
        ),
        "shm": with_cell(
            complete(course),
            "squares",
            "import mmap, time\nm = mmap.mmap(-1, 2**30)\nchunk = b'x' * 2**20\n"
            "for i in range(0, 2**30, 2**20):\n    m[i:i + 2**20] = chunk\ntime.sleep(10)\n"
            + SQUARES,
        ),
        "forker": with_cell(
            complete(course),
            "squares",
            SQUARES + "import os\ntry:\n    for _ in range(5000):\n"
            "        if os.fork() == 0:\n"
            f"            os.execv('/bin/sleep', ['forkbomb-{TOKEN}', '600'])\n"
            "except OSError as exc:\n    print(type(exc).__name__, exc.errno)",
        ),
        "daemon": with_cell(
            complete(course),
            "squares",
            SQUARES + "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv('/bin/sh', ['daemon-{TOKEN}', '-c', "
            f"'sleep 2; echo late > late-{TOKEN}.txt; sleep 600'])\n"
            "    os._exit(0)\nos.wait()",
        ),
        "flood": with_cell(
            complete(course), "squares", SQUARES + "for i in range(200_000):\n    print(i)"
        ),
        "exiter": with_cell(complete(course), "squares", "import os\nos._exit(0)"),
        "parricide": with_cell(
            complete(course), "squares", SQUARES + "import os\nos.kill(os.getppid(), 9)"
        ),
        "killall": with_cell(complete(course), "squares", SQUARES + "import os\nos.kill(-1, 9)"),
        "segfault": with_cell(complete(course), "squares", "import ctypes\nctypes.string_at(0)"),
        "writer": with_cell(
            complete(course),
            "squares",
            SQUARES
            + ATTEMPT
            + "import os\n"
            + "".join(
                f"print(attempt(lambda: open({str(p)!r}, 'w').write('x')))\n"
                for p in (
                    course.root / "gradebook.db",
                    course.root / "source" / "tiny" / "tiny.ipynb",
                    course.submitted("alice", "tiny") / "tiny.ipynb",
                    course.root / f"evil-{TOKEN}.txt",
                    Path("/etc/passwd"),
                    Path(f"/evil-{TOKEN}"),
                )
            )
            + f"os.makedirs({str(course.root)!r}, exist_ok=True)\n"
            + f"print(attempt(lambda: open({str(course.root / f'evil-{TOKEN}.txt')!r}, 'w')"
            ".write('x')))\n",
        ),
        "hider": with_cell(
            complete(course),
            "squares",
            WRONG + "get_ipython().showtraceback = lambda *args, **kwargs: None",
        ),
        "swallower": with_cell(
            complete(course),
            "squares",
            WRONG + "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)",
        ),
        "builtins": with_cell(
            complete(course),
            "squares",
            WRONG + "import builtins, io, sys\nbuiltins.AssertionError = None\n"
            "builtins.NameError = None\nsys.stderr = io.StringIO()",
        ),
        "runcell": with_cell(complete(course), "squares", RUN_CELL_CHEAT),
    }
    # Cell tampering.
    edited = with_cell(complete(course), "squares", WRONG)
    with_cell(edited, "test_squares", "assert True")
    subs["edited"] = edited
    deleted = complete(course)
    deleted.cells.remove(_cell(deleted, "test_total"))
    subs["deleted"] = deleted
    duplicated = with_cell(complete(course), "squares", WRONG)
    copy = nbformat.from_dict(json.loads(json.dumps(_cell(duplicated, "test_squares"))))
    copy.source = "assert True"
    copy.id = "test-squares-again"
    duplicated.cells.append(copy)
    subs["duplicated"] = duplicated
    points = complete(course)
    _cell(points, "test_total").metadata.nbgrader["points"] = 100
    forged = nbformat.v4.new_code_cell("print('free points')")
    forged.metadata["nbgrader"] = {
        "grade": True, "grade_id": "bonus", "locked": False, "points": 50,
        "schema_version": 3, "solution": False,
    }  # fmt: skip
    points.cells.append(forged)
    subs["points"] = points
    other_language = complete(course)
    other_language.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    subs["rkernel"] = other_language
    other_kernel = complete(course)
    other_kernel.metadata["kernelspec"] = {
        "name": "evil",
        "display_name": "E",
        "language": "python",
    }
    subs["evilkernel"] = other_kernel
    # Broken files.
    subs["notjson"] = b"this is not a notebook\n"
    subs["truncated"] = nbformat.writes(complete(course)).encode()[:300]
    subs["empty"] = b""
    subs["v3"] = nbformat.writes(nbformat.convert(complete(course), 3), version=3).encode()
    subs["binary"] = bytes(range(256)) * 4
    subs["huge"] = b'{"cells": [], "metadata": {}, "pad": "' + b"x" * (60 * 10**6) + b'"}'
    return subs


def grade_hostile_class(root: Path) -> Batch:
    """Build the hostile class in a new course at ``root`` and grade it once, with the sandbox
    on and two workers (the tests here and bench/bench_hostile.py)."""
    course = make_tiny_course(root)
    heldout = course.root / ".autograder" / "heldout" / "digits"
    heldout.mkdir(parents=True)
    (heldout / "labels.csv").write_text("ImageId,Label\n1,7\n")
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    for student, content in _submissions(course, port).items():
        folder = course.submitted(student, "tiny")
        folder.mkdir(parents=True)
        if isinstance(content, bytes):
            (folder / "tiny.ipynb").write_bytes(content)
        else:
            nbformat.write(content, folder / "tiny.ipynb")
    linked = course.submitted("linker", "tiny")
    linked.mkdir(parents=True)
    (linked / "tiny.ipynb").symlink_to(course.submitted("alice", "tiny") / "tiny.ipynb")
    watched = [
        course.root / "source" / "tiny" / "tiny.ipynb",
        course.submitted("alice", "tiny") / "tiny.ipynb",
        Path("/etc/passwd"),
    ]
    before = {str(p): _sha(p) for p in watched}
    started = time.monotonic()
    try:
        report = grade(course, "tiny", settings=SETTINGS, backend="local", workers=2)
        seconds = time.monotonic() - started
        leftovers = _with_token(TOKEN)
        connections = 0
        while True:
            try:
                server.accept()[0].close()
                connections += 1
            except BlockingIOError:
                break
    finally:
        server.close()
    return Batch(
        course=course,
        results={r.student: r for r in report.graded},
        seconds=seconds,
        hashes_before=before,
        connections=connections,
        leftovers_at_end=leftovers,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return grade_hostile_class(tmp_path_factory.mktemp("hostile") / "course")


def _autograded(batch: Batch, student: str) -> NotebookNode:
    return nbformat.read(batch.course.autograded(student, "tiny") / "tiny.ipynb", as_version=4)


def _stdout(batch: Batch, student: str, grade_id: str = "squares") -> str:
    cell = _cell(_autograded(batch, student), grade_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _scores(result: SubmissionResult) -> dict[str, float]:
    return {i.id: i.score for i in result.items}


FULL = {"test_squares": 2.0, "test_total": 1.0, "explain": 0.0}
NONE = {"test_squares": 0.0, "test_total": 0.0, "explain": 0.0}


def _graded_in_full(result: SubmissionResult) -> None:
    assert (result.status, result.message, _scores(result)) == ("graded", "", FULL)


def test_honest_students_in_a_hostile_class_are_graded_in_full(batch: Batch) -> None:
    for student in HONEST:
        _graded_in_full(batch.results[student])
        assert batch.results[student].details["notes"] == []
    # Every submission has exactly one result, and every run ended: nothing hung the batch.
    stored = gradebook.load_results(batch.course.gradebook_url, "tiny")
    assert sorted(r.student for r in stored) == sorted(batch.results)
    assert "error" not in {r.status for r in stored}
    assert "sandbox-error" not in {r.status for r in stored}


def test_the_grader_files_are_out_of_sight(batch: Batch) -> None:
    _graded_in_full(batch.results["snoop"])
    # Held-out labels, gradebook, source notebooks, other students' and autograded folders.
    assert _stdout(batch, "snoop") == "FOUND []\n"


def test_the_network_is_out_of_reach(batch: Batch) -> None:
    _graded_in_full(batch.results["net"])
    hosts = "".join(f"{h} OSError 101\n" for h in _host_addresses())
    assert _stdout(batch, "net") == (
        "127.0.0.1 ConnectionRefusedError 111\n"  # the sandbox's own, empty loopback
        + hosts  # ENETUNREACH: no route to the host's own interfaces
        + "dns gaierror\n[(1, 'lo')]\n"
    )
    assert batch.connections == 0  # nothing reached the host's server


def test_an_infinite_loop_is_interrupted_and_the_rest_runs(batch: Batch) -> None:
    looper = batch.results["looper"]
    assert (looper.status, looper.message) == (
        "timeout",
        "cell [2] ran past its 5 s limit and was interrupted; the other cells were run",
    )
    assert _scores(looper) == NONE
    # The cell holds hidden tests: the exception's message is not repeated (it could be any).
    assert looper.item("test_squares").message == (
        "the test failed at `assert squares(3) == [1, 4, 9]`: NameError (a name the test uses is "
        "not defined: check that the cell defining it ran without an error)"
    )
    sleeper = batch.results["sleeper"]
    assert (sleeper.status, sleeper.message, _scores(sleeper)) == (
        "timeout",
        "cell [2] ran past its 5 s limit and was interrupted; the other cells were run",
        FULL,
    )


def test_a_loop_that_ignores_interrupts_is_stopped(batch: Batch) -> None:
    stubborn = batch.results["stubborn"]
    message = (
        "cell [2] ran past its 5 s limit and did not stop when interrupted; the cells after it "
        "were not run"
    )
    assert (stubborn.status, stubborn.message, _scores(stubborn)) == ("timeout", message, NONE)
    assert stubborn.item("test_total").message == f"this test did not run: {message}"


def test_memory_bombs_stop_with_status_memory(batch: Batch) -> None:
    heap = batch.results["heap"]
    assert (heap.status, heap.message, _scores(heap)) == (
        "memory",
        "cell [2] ran out of memory (512M); use fewer images at once or a smaller batch size",
        NONE,
    )
    shm = batch.results["shm"]
    message = (
        "the notebook used more memory than allowed (512M) and was stopped in cell [2]; use "
        "fewer images at once or a smaller batch size"
    )
    assert (shm.status, shm.message, _scores(shm)) == ("memory", message, NONE)
    assert shm.item("test_squares").message == f"this test did not run: {message}"


def test_a_fork_bomb_hits_the_process_limit_and_leaves_nothing(batch: Batch) -> None:
    _graded_in_full(batch.results["forker"])
    assert _stdout(batch, "forker") == "BlockingIOError 11\n"
    assert not [c for c in batch.leftovers_at_end if f"forkbomb-{TOKEN}" in c]


def test_a_detached_daemon_dies_with_its_sandbox(batch: Batch) -> None:
    _graded_in_full(batch.results["daemon"])
    assert not [c for c in batch.leftovers_at_end if f"daemon-{TOKEN}" in c]
    time.sleep(2.5)  # past the daemon's "sleep 2": it would have written its file by now
    assert _with_token(TOKEN) == []
    late = [p for p in Path("/tmp").glob(f"autograder-*/late-{TOKEN}.txt")]
    assert late + list(batch.course.root.rglob(f"late-{TOKEN}.txt")) == []
    # The copies the kernels ran in are all gone.
    assert [p for s in batch.results for p in Path("/tmp").glob(f"autograder-{s}-*")] == []


def test_an_output_flood_is_capped(batch: Batch) -> None:
    _graded_in_full(batch.results["flood"])
    text = _stdout(batch, "flood")
    limit = "1,000 lines, 1,000,000 bytes"
    assert text == "\n".join(str(i) for i in range(1000)) + TRUNCATED.format(limit=limit)


def test_a_kernel_that_exits_or_crashes_is_kernel_died(batch: Batch) -> None:
    for student in ("exiter", "segfault"):
        result = batch.results[student]
        assert (result.status, result.message, _scores(result)) == (
            "kernel-died",
            KERNEL_DIED,
            NONE,
        )
        assert result.item("test_squares").message == f"this test did not run: {KERNEL_DIED}"


def test_killing_the_parent_or_everything_reaches_only_the_sandbox(batch: Batch) -> None:
    # The kernel's parent is the sandbox's init, which ignores signals from inside; kill(-1)
    # reaches only the sandbox's own processes.
    _graded_in_full(batch.results["parricide"])
    _graded_in_full(batch.results["killall"])


def test_writes_outside_the_copy_change_nothing(batch: Batch) -> None:
    _graded_in_full(batch.results["writer"])
    assert _stdout(batch, "writer") == (
        "FileNotFoundError 2\n" * 4  # the course is not there at all
        + "OSError 30\n" * 2  # the system is read-only (EROFS)
        + "ok\n"  # a folder made at the course's path lives in the sandbox's private /tmp
    )
    assert {p: _sha(Path(p)) for p in batch.hashes_before} == batch.hashes_before
    assert not (batch.course.root / f"evil-{TOKEN}.txt").exists()
    assert not Path(f"/evil-{TOKEN}").exists()


def test_hiding_errors_does_not_hide_failures(batch: Batch) -> None:
    # nbgrader's showtraceback cheat, a custom exception handler, and patched builtins: each
    # changes how IPython runs code, so the tests after it score 0 and the result says why
    # (tests/test_kernelwatch.py has the rest of that class).
    changed = {
        "hider": "a method of IPython's shell (showtraceback)",
        "swallower": "IPython's custom exception handler",
        "builtins": "a built-in (AssertionError), a built-in (NameError), sys.stderr",
    }
    for student, words in changed.items():
        result = batch.results[student]
        assert (result.status, _scores(result)) == ("graded", NONE)
        assert result.item("test_squares").message == (
            f"scored 0: the notebook changed {words} before or while this test ran; a test "
            "counts only when it runs as the assignment wrote it"
        )
        assert result.flags == [
            f"tiny.ipynb changed how IPython runs code ({words}); the 2 test(s) that ran after "
            "it score 0"
        ]


def test_a_patched_run_cell_earns_nothing(batch: Batch) -> None:
    # Replacing the shell's run_cell so test cells run "pass" wedges the kernel instead.
    result = batch.results["runcell"]
    assert (result.status, _scores(result)) == ("timeout", NONE)
    assert result.message == (
        "cell [3] ran past its 5 s limit and did not stop when interrupted; the cells after it "
        "were not run"
    )


def test_tampered_cells_are_restored_and_said_so(batch: Batch) -> None:
    edited = batch.results["edited"]
    assert (edited.status, _scores(edited)) == ("graded", NONE)
    assert edited.details["notes"] == [
        "read-only cell 'test_squares' was edited; the original was restored before grading"
    ]
    assert _cell(_autograded(batch, "edited"), "test_squares").source.startswith(
        "assert squares(3) == [1, 4, 9]"
    )

    deleted = batch.results["deleted"]
    assert (deleted.status, _scores(deleted)) == ("graded", {**FULL, "test_total": 0.0})
    assert deleted.item("test_total").message == MISSING_CELL

    duplicated = batch.results["duplicated"]
    assert (duplicated.status, _scores(duplicated)) == ("graded", NONE)
    assert duplicated.details["notes"] == [
        "cell id 'test_squares' appears more than once; only its last copy was graded",
        "read-only cell 'test_squares' was edited; the original was restored before grading",
    ]

    points = batch.results["points"]
    assert (points.status, _scores(points), points.max_score) == ("graded", FULL, 4.0)
    assert points.details["notes"] == ["cell 'test_total' claimed 100 points; it is worth 1"]

    _graded_in_full(batch.results["evilkernel"])  # run on our Python kernel all the same
    rkernel = batch.results["rkernel"]
    message = (
        "the notebook is written for the 'R' kernel; this assignment is Python: open the "
        "released notebook with a Python kernel, copy your answers over and submit that"
    )
    assert (rkernel.status, rkernel.message, _scores(rkernel)) == (
        "invalid-notebook",
        message,
        NONE,
    )


BROKEN = {
    "notjson": "tiny.ipynb is not valid notebook JSON (line 1, column 1: Expecting value); "
    "download the notebook again from Jupyter (File > Download) and submit that file",
    "truncated": "tiny.ipynb is not valid notebook JSON (it ends too early (the file is "
    "truncated)); download the notebook again from Jupyter (File > Download) and submit that "
    "file",
    "empty": "tiny.ipynb is empty; save the notebook in Jupyter (File > Save) and submit it again",
    "binary": "tiny.ipynb is a UTF-16 or binary file, not a notebook; submit the .ipynb file as "
    "Jupyter saves it",
    "linker": "tiny.ipynb is a symbolic link, not a notebook; submit the notebook file itself",
    "huge": "tiny.ipynb is 60 MB, over the 52 MB limit; clear the outputs (Kernel > Restart & "
    "Clear Output) and submit again",
}


@pytest.mark.parametrize("student", sorted(BROKEN))
def test_broken_files_are_invalid_notebooks_with_the_reason(batch: Batch, student: str) -> None:
    result = batch.results[student]
    assert (result.status, result.message, _scores(result)) == (
        "invalid-notebook",
        BROKEN[student],
        NONE,
    )
    assert {i.message for i in result.items} == {BROKEN[student]}


def test_an_nbformat_3_notebook_is_converted_and_graded(batch: Batch) -> None:
    _graded_in_full(batch.results["v3"])


@pytest.mark.slow
def test_every_submission_of_the_whole_hostile_class_has_a_result(batch: Batch) -> None:
    # Its wall time (target: under three minutes on 2 cores) is bench/bench_hostile.py's.
    assert len(batch.results) == 34


def test_a_benign_notebook_scores_the_same_inside_and_outside_the_sandbox(
    tiny_course: Course, submit: Any
) -> None:
    submit("alice", complete(tiny_course))
    submit("bob", with_cell(complete(tiny_course), "total", "def total(n):\n    return 0"))
    submit("carol", released(tiny_course))
    runs = {}
    for sandboxed in (True, False):
        report = grade(
            tiny_course,
            "tiny",
            settings=dataclasses.replace(SETTINGS, sandbox=sandboxed),
            backend="inline",
            force=True,
        )
        runs[sandboxed] = {
            r.student: (r.status, [(i.id, i.score, i.message) for i in r.items])
            for r in report.graded
        }
    assert runs[True] == runs[False]
    assert runs[True]["alice"][1] == [
        ("test_squares", 2.0, "passed"),
        ("test_total", 1.0, "passed"),
        ("explain", 0.0, "answered; waiting for a grader"),
    ]
    assert runs[True]["bob"][1][1] == (
        "test_total",
        0.0,
        "the test failed at `assert total(N) == 14`: AssertionError",
    )


def test_links_to_the_instructors_files_are_never_graded_as_a_submission(tmp_path):
    import os

    course = make_tiny_course(tmp_path / "course")
    solution = course.source("tiny") / "tiny.ipynb"
    root = course.submitted_root
    # The assignment folder a link to source/; the student folder a link to another
    # student's folder holding the solution; the notebook a symbolic or a hard link to it.
    (root / "mallory").mkdir(parents=True)
    os.symlink(course.source("tiny"), root / "mallory" / "tiny")
    (tmp_path / "elsewhere" / "tiny").mkdir(parents=True)
    os.link(solution, tmp_path / "elsewhere" / "tiny" / "tiny.ipynb")
    os.symlink(tmp_path / "elsewhere", root / "oscar")
    for name, make in (("sym", os.symlink), ("hard", os.link)):
        (root / name / "tiny").mkdir(parents=True)
        make(solution, root / name / "tiny" / "tiny.ipynb")
    report = grade(course, "tiny", settings=GradeSettings(sandbox=False), backend="inline")
    results = {r.student: r for r in report.graded}
    assert set(results) >= {"mallory", "sym", "hard"}
    for result in results.values():
        assert result.score == 0, (result.student, result.message)
        assert result.status == "invalid-notebook", result.student
    assert "symbolic link, not a submission" in results["mallory"].message
