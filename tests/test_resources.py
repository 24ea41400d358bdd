"""A class that attacks the grader's own resources, graded end to end in the sandbox.

One class of the tiny assignment, with small limits (a 2 MB output budget per notebook, a
64 MiB disk quota of 2,000 files, 6 CPU seconds, 512M of memory), is graded once by two
workers while a thread samples the memory of the grader's own processes (this process and
its workers, not the sandboxes) and the disk the work folders' file systems take. Output
floods come through every kind of message; disk floods through every way of taking space;
the CPU flood through a subprocess and threads. Each test reads one submission's outcome;
the honest students check that nobody else was harmed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import complete, grader_memory, make_tiny_course, with_cell
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from autograder.config import Course
from autograder.grade import GradeSettings, grade
from autograder.quota import IMAGE_SUFFIX
from autograder.release import release
from autograder.results import SubmissionResult

pytestmark = pytest.mark.sandbox

SQUARES = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"
WRONG = "def squares(n):\n    return [0]\n"
BUDGET = 2_000_000
DISK = 64 * 2**20
FILES = 2000
CPU = 6
TOML = f"""[assignment]
title = "Tiny"

[execute]
timeout_cell = 60
timeout_total = 120
memory_limit = "512M"
max_notebook_output_bytes = {BUDGET}
disk_limit = "64M"
max_files = {FILES}
cpu_limit = {CPU}
"""
SETTINGS = GradeSettings(sandbox=True)
HONEST = ("alice", "zoe")
FULL = {"test_squares": 2.0, "test_total": 1.0, "explain": 0.0}
NONE = {"test_squares": 0.0, "test_total": 0.0, "explain": 0.0}
#: The kernel's session, to send messages of any type as a hostile kernel can.
RAW = "k = get_ipython().kernel\nparent = k.get_parent('shell')\n"

OUTPUT_FLOODS = {
    # 300 outputs under one display id, then 900 kB updates: one object in memory, but one
    # copy per output (270 MB) when the executed notebook is written.
    "onedisplay": "from IPython.display import display, update_display, HTML\n"
    "for _ in range(300):\n    display(HTML('s'), display_id='x')\n"
    "for i in range(5):\n    update_display(HTML('u' * 900_000 + str(i)), display_id='x')\n",
    # 100 display ids, each updated with 500 kB: 50 MB kept through updates.
    "updates": "from IPython.display import display, update_display, HTML\n"
    "for i in range(100):\n    display(HTML('s'), display_id=f'x{i}')\n"
    "for i in range(100):\n    update_display(HTML('u' * 500_000), display_id=f'x{i}')\n",
    # Error messages with a 1 MB value and a 6 MB traceback, sent as the kernel sends them.
    "errors": RAW + "tb = ['t' * 3000] * 2000\nfor _ in range(10):\n"
    "    k.session.send(k.iopub_socket, 'error', {'ename': 'E' * 10**5, 'evalue': 'e' * 2**20,"
    " 'traceback': tb}, parent=parent)\n",
    "results": "import sys\nclass R:\n    def __repr__(self):\n        return 'r' * 500_000\n"
    "for _ in range(100):\n    sys.displayhook(R())\n",
    "thread": "import sys, threading\ndef spam():\n    for _ in range(40_000):\n"
    "        sys.stdout.write('x' * 500 + '\\n')\n"
    "t = threading.Thread(target=spam)\nt.start()\nt.join()\n",
    "redisplay": "from IPython.display import display, clear_output, HTML\n"
    "for i in range(100):\n    clear_output(wait=True)\n    display(HTML('z' * 500_000))\n",
    # Widget state, which nbclient keeps for the notebook's metadata.
    "comm": RAW + "for i in range(100):\n"
    "    k.session.send(k.iopub_socket, 'comm_msg', {'comm_id': f'c{i}', 'data': "
    "{'state': {'v': 'w' * 500_000}}}, parent=parent)\n",
    # One message of 150 frames of 8 MiB, three times (3.6 GB, zero-copy in the kernel):
    # ZMQ holds a whole message before anyone can read it.
    "multipart": RAW + "b = memoryview(b'm' * 8 * 2**20)\nfor _ in range(3):\n"
    "    k.session.send(k.iopub_socket, 'display_data', {'data': {}, 'metadata': {}}, "
    "parent=parent, buffers=[b] * 150)\nimport time\ntime.sleep(5)\n",
    "bigmessage": "from IPython.display import display, HTML\ndisplay(HTML('b' * 40_000_000))\n",
}
DISK_FLOODS = {
    "bigfile": "chunk = b'd' * 2**20\nwith open('big.bin', 'wb') as f:\n"
    "    for _ in range(12 * 1024):\n        f.write(chunk)\n",
    "smallfiles": "import os\nos.makedirs('many')\nfor i in range(50_000):\n"
    "    open(f'many/{i}', 'w').close()\n",
    "fallocate": "import os\nfor i in range(200):\n"
    "    fd = os.open(f'fa{i}', os.O_WRONLY | os.O_CREAT)\n"
    "    try:\n        os.posix_fallocate(fd, 0, 10 * 2**20)\n"
    "    except OSError:\n        pass\n    os.close(fd)\n",
    "deleted": "import os, time\nf = open('gone.bin', 'wb')\nos.unlink('gone.bin')\n"
    "for _ in range(1024):\n    f.write(b'g' * 2**20)\nf.flush()\ntime.sleep(5)\n",
    # Files of 60 MiB (no file may pass 64M): /tmp is a tmpfs of 512 MiB, memory.
    "tmp": "for i in range(16):\n    with open(f'/tmp/fill{i}', 'wb') as f:\n"
    "        for _ in range(60):\n            f.write(b't' * 2**20)\n",
}
# Within the quota: a sparse file (only allocated blocks count), hard links (counted once), a
# file past the size limit refused, /dev/shm full: graded in full, each outcome printed.
WITHIN = (
    SQUARES + "import os\nwith open('sparse.bin', 'wb') as f:\n    f.truncate(60 * 2**20)\n"
    "with open('data.bin', 'wb') as f:\n    f.write(b'h' * 40 * 2**20)\n"
    "for i in range(50):\n    os.link('data.bin', f'link{i}')\n"
    "try:\n    open('huge.bin', 'wb').truncate(10 * 2**30)\nexcept OSError as exc:\n"
    "    print('huge', exc.errno)\n"
    "try:\n    with open('/dev/shm/fill', 'wb') as f:\n        for _ in range(1024):\n"
    "            f.write(b's' * 2**20)\nexcept OSError as exc:\n    print('shm', exc.errno)\n"
)
SPINNER = (
    "import subprocess, sys, threading\n"
    "def spin():\n    while True:\n        pass\n"
    "for _ in range(2):\n    threading.Thread(target=spin, daemon=True).start()\n"
    "subprocess.run([sys.executable, '-c', 'while True: pass'])\n"
)


@dataclasses.dataclass
class Batch:
    course: Course
    results: dict[str, SubmissionResult]
    #: Peak growth of the resident memory of the grader's processes while grading.
    grader_peak: int
    #: Largest disk a work folder's image took.
    disk_peak: int
    leftovers: list[str]


def _images(pids: set[int]) -> list[Path]:
    """The images of work folders with a file system of their own made by ``pids``."""
    found = Path(tempfile.gettempdir()).glob(f"autograder-*{IMAGE_SUFFIX}*")
    return [p for p in found if p.name.rsplit("-", 1)[-1] in {str(pid) for pid in pids}]


class Sampler:
    """Samples, every 0.1 s, the grader's memory and the disk the work folders' images take."""

    def __init__(self) -> None:
        #: Every pid of the grader's processes seen while it ran.
        self.pids: set[int] = set()
        self.base = grader_memory(os.getpid(), self.pids)
        self.memory = self.base
        self.disk = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self.memory = max(self.memory, grader_memory(os.getpid(), self.pids))
            for image in _images(self.pids):
                with contextlib.suppress(OSError):
                    self.disk = max(self.disk, image.stat().st_blocks * 512)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _submissions(course: Course) -> dict[str, NotebookNode]:
    subs = {student: complete(course) for student in HONEST}
    for name, attack in OUTPUT_FLOODS.items():
        subs[name] = with_cell(complete(course), "squares", SQUARES + attack)
    # The budget spent, a failing test must still fail, with its reason.
    subs["spentwrong"] = with_cell(
        complete(course), "squares", WRONG + "print('p' * 900_000)\n" * 3
    )
    cells = with_cell(complete(course), "squares", SQUARES)
    for _ in range(60):  # each under the cell's cap, together 15 times the budget
        cells.cells.insert(1, new_code_cell("print('c' * 500_000)"))
    subs["cells"] = cells
    for name, attack in DISK_FLOODS.items():
        # Refused or not, the notebook waits: the watchdog's stop lands in this cell.
        held = "try:\n" + textwrap.indent(attack, "    ") + "except OSError:\n    pass\n"
        held += "import time\ntime.sleep(3)\n"
        subs[name] = with_cell(complete(course), "squares", held + SQUARES)
    subs["within"] = with_cell(complete(course), "squares", WITHIN)
    subs["spinner"] = with_cell(complete(course), "squares", SPINNER + SQUARES)
    return subs


def grade_resource_class(root: Path) -> Batch:
    """Build the class in a new course at ``root`` and grade it once (the tests here and
    bench/bench_flood.py)."""
    course = make_tiny_course(root)
    (course.source("tiny") / "assignment.toml").write_text(TOML)
    release(course, "tiny")
    for student, nb in _submissions(course).items():
        folder = course.submitted(student, "tiny")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "tiny.ipynb")
    sampler = Sampler()
    try:
        report = grade(course, "tiny", settings=SETTINGS, backend="local", workers=2)
    finally:
        sampler.stop()
    leftovers = [str(p) for p in _images(sampler.pids)]
    points = [f" {tempfile.gettempdir()}/autograder-{s}-" for s in _submissions(course)]
    leftovers += [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if any(point in line for point in points)
    ]  # fmt: skip
    return Batch(
        course=course,
        results={r.student: r for r in report.graded},
        grader_peak=sampler.memory - sampler.base,
        disk_peak=sampler.disk,
        leftovers=leftovers,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return grade_resource_class(tmp_path_factory.mktemp("resources") / "course")


def _scores(result: SubmissionResult) -> dict[str, float]:
    return {i.id: i.score for i in result.items}


def _autograded(batch: Batch, student: str) -> NotebookNode:
    return nbformat.read(batch.course.autograded(student, "tiny") / "tiny.ipynb", as_version=4)


def _kept(batch: Batch, student: str) -> int:
    """Bytes of output the executed notebook holds, in every cell together."""
    nb = _autograded(batch, student)
    return sum(len(json.dumps(cell.get("outputs", []))) for cell in nb.cells)


def _cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _budget_note(result: SubmissionResult) -> list[str]:
    return [n for n in result.details["notes"] if "bytes the grader keeps" in n]


def test_honest_students_in_the_class_are_graded_in_full(batch: Batch) -> None:
    for student in HONEST:
        result = batch.results[student]
        assert (result.status, result.message, _scores(result)) == ("graded", "", FULL)
        assert result.details["notes"] == []
    assert len(batch.results) == len(_submissions(batch.course))


def test_the_graders_own_memory_stays_bounded(batch: Batch) -> None:
    # Unbounded, the floods above would have the grader hold more than 4 GB (the multipart
    # one alone 3.6 GB); its processes (this one, the fork server, two workers) grew by less
    # than 1 GiB in all, the workers' start included.
    assert batch.grader_peak < 2**30, f"{batch.grader_peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "student", ["onedisplay", "updates", "errors", "results", "thread", "redisplay", "comm"]
)
def test_output_floods_keep_the_notebook_within_its_budget(batch: Batch, student: str) -> None:
    result = batch.results[student]
    assert (result.status, result.message, _scores(result)) == ("graded", "", FULL)
    # What the notebook kept: its budget, the notes and stubs (a few kB per cell) at most.
    assert _kept(batch, student) < BUDGET + 50_000
    if student not in ("redisplay", "results"):  # these stay within it (replaced, capped)
        assert len(_budget_note(result)) == 1
        assert _budget_note(result)[0].startswith(
            "the notebook's output passed the 2,000,000 bytes the grader keeps; "
        )


def test_the_note_says_where_output_was_dropped(batch: Batch) -> None:
    nb = _autograded(batch, "thread")
    texts = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])]
    note = (
        "\n... the rest of this notebook's output was dropped by the autograder (limit "
        "2,000,000 bytes for the whole notebook) ...\n"
    )
    assert texts.count(note) == 1


def test_thousands_of_cells_under_their_caps_share_one_budget(batch: Batch) -> None:
    result = batch.results["cells"]
    assert (result.status, result.message, _scores(result)) == ("graded", "", FULL)
    assert _kept(batch, "cells") < BUDGET + 60 * 1_500
    assert len(_budget_note(result)) == 1


def test_a_failing_test_still_fails_after_the_budget_is_spent(batch: Batch) -> None:
    result = batch.results["spentwrong"]
    assert result.status == "graded"
    assert _scores(result) == {"test_squares": 0.0, "test_total": 0.0, "explain": 0.0}
    assert result.item("test_squares").message.startswith(
        "the test failed at `assert squares(3) == [1, 4, 9]`: AssertionError"
    )
    assert len(_budget_note(result)) == 1


def test_messages_past_what_the_grader_accepts_stop_the_notebook(batch: Batch) -> None:
    multipart = batch.results["multipart"]
    assert (multipart.status, multipart.message, _scores(multipart)) == (
        "memory",
        "the notebook sent the grader more output than it accepts and was stopped in cell "
        "[2]; print and display less",
        NONE,
    )
    big = batch.results["bigmessage"]
    assert (big.status, big.message, _scores(big)) == (
        "memory",
        "the notebook sent the grader one output larger than it accepts (32 MiB) and was "
        "stopped in cell [2]; display smaller outputs",
        NONE,
    )


@pytest.mark.parametrize("student", ["bigfile", "fallocate", "deleted"])
def test_writing_past_the_disk_quota_stops_with_status_disk(batch: Batch, student: str) -> None:
    result = batch.results[student]
    assert (result.status, result.message, _scores(result)) == (
        "disk",
        "the notebook wrote more into its folder than allowed (64M) and was stopped in cell "
        "[2]; save fewer or smaller files (one model, no checkpoints)",
        NONE,
    )


def test_too_many_files_stop_with_status_disk(batch: Batch) -> None:
    result = batch.results["smallfiles"]
    assert (result.status, result.message, _scores(result)) == (
        "disk",
        "the notebook made more files in its folder than allowed (2,000) and was stopped in "
        "cell [2]; write fewer, larger files",
        NONE,
    )


def test_the_disk_never_holds_much_more_than_the_quota(batch: Batch) -> None:
    # The file system is the quota, 1/32 and 16 MiB larger, plus its inode tables.
    assert 0 < batch.disk_peak <= DISK + DISK // 32 + 16 * 2**20 + 3000 * 256
    assert batch.leftovers == []


def test_files_in_tmp_are_memory(batch: Batch) -> None:
    result = batch.results["tmp"]
    assert (result.status, result.message, _scores(result)) == (
        "memory",
        "the notebook used more memory than allowed (512M) and was stopped in cell [2]; use "
        "fewer images at once or a smaller batch size",
        NONE,
    )


def test_sparse_files_hard_links_and_shm_within_limits_are_graded(batch: Batch) -> None:
    result = batch.results["within"]
    assert (result.status, result.message, _scores(result)) == ("graded", "", FULL)
    cell = _cell(_autograded(batch, "within"), "squares")
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert text == "huge 27\nshm 27\n"  # EFBIG: no file past 64M, in /dev/shm (128M) too


def test_cpu_seconds_are_limited_across_threads_and_subprocesses(batch: Batch) -> None:
    result = batch.results["spinner"]
    assert (result.status, result.message, _scores(result)) == (
        "timeout",
        "the notebook used more than its 6 CPU seconds (all its processes and threads "
        "together) and was stopped in cell [2]; the cells after it were not run",
        NONE,
    )


# --- without a file system of its own: the watched folder --------------------------------

WATCHED_FALLOCATE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("raw", os.O_WRONLY | os.O_CREAT)
print("fallocate", libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(2**30)), ctypes.get_errno())
print("io_uring_setup", libc.syscall(425, 8, None), ctypes.get_errno(), flush=True)
for i in range(12):  # 12 GiB, 1 GiB a file: glibc writes the blocks when fallocate fails
    fd = os.open(f"fa{i}", os.O_WRONLY | os.O_CREAT)
    os.posix_fallocate(fd, 0, 2**30)
"""


def _watched(tmp_path: Path, code: str) -> tuple[Any, Path]:
    from autograder.quota import own_filesystem
    from autograder.sandbox import SandboxPolicy, run_sandboxed

    workdir = tmp_path / "watched"
    workdir.mkdir()
    assert not own_filesystem(workdir)
    policy = SandboxPolicy(
        workdir=workdir, memory_bytes=512 * 2**20, file_size_bytes=2**30, disk_bytes=DISK,
        disk_files=FILES, tmp_bytes=64 * 2**20,
    )  # fmt: skip
    return run_sandboxed([sys.executable, "-c", code], policy=policy, timeout=60), workdir


def test_a_watched_folder_denies_fallocate_and_stops_a_fast_writer(tmp_path: Path) -> None:
    from autograder.quota import folder_usage

    done, workdir = _watched(tmp_path, WATCHED_FALLOCATE)
    assert done.stdout.decode().splitlines()[:2] == ["fallocate -1 95", "io_uring_setup -1 38"]
    assert (done.stopped_for, done.returncode, done.timed_out) == ("disk", 128 + 9, False)
    used, _ = folder_usage(workdir, 2**40, 10**9)
    # Past the quota by what was written between two looks: far from the 12 GiB tried
    # (docs/benchmarks.md has the margin measured on an idle machine).
    assert DISK < used < DISK + 2**30


def test_a_watched_folder_counts_files(tmp_path: Path) -> None:
    code = "import os\nfor i in range(50_000):\n    open(str(i), 'w').close()\n"
    done, _ = _watched(tmp_path, code)
    assert (done.stopped_for, done.returncode) == ("files", 128 + 9)
