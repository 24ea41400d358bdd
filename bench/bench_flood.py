"""Peak memory of the grader's own processes while a class floods it with output.

Run by hand from the repository root (results go in docs/benchmarks.md):

    python bench/bench_flood.py [--scale 1.0] [--workers 2] [--code DIR]
    python bench/bench_flood.py --disk

The class: the tiny test assignment, two honest students and eight floods through every
kind of message (display updates to a thousand ids, a thousand outputs of one display id
updated, error messages of 7 MB, results, widget state, 500 cells each under the cell's cap,
clear-and-redisplay, one multipart message of 150 frames of 8 MiB three times), graded with
the sandbox on, a 4G memory limit and the assignment's default output limits. Measured
every 0.1 s: the resident memory of the grader's processes (this one, the fork server, the
workers; the sandboxes left out). ``--scale`` scales every flood; ``--code DIR`` grades with
the ``autograder`` package of another checkout (e.g. the main branch, to compare). Goal:
under 1 GiB at ``--scale 1``.

``--disk``: writers that try to put 12 GiB (or a million files) into a work folder with a
1 GiB quota, once on a file system of its own (as root) and once in a watched folder (the
mechanism without root), and what is left in the folder when the watchdog stopped them.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RAW = "k = get_ipython().kernel\nparent = k.get_parent('shell')\n"
SQUARES = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"


def floods(scale: float) -> dict[str, str]:
    """The attacks, each put before the solution of the first graded cell."""

    def n(count: int) -> int:
        return max(1, int(count * scale))

    return {
        "updates": "from IPython.display import display, update_display, HTML\n"
        f"for i in range({n(1000)}):\n    display(HTML('s'), display_id=f'x{{i}}')\n"
        f"for i in range({n(1000)}):\n"
        "    update_display(HTML('u' * 10**6), display_id=f'x{i}')\n",
        "onedisplay": "from IPython.display import display, update_display, HTML\n"
        f"for _ in range({n(1000)}):\n    display(HTML('s'), display_id='x')\n"
        "update_display(HTML('u' * 10**6), display_id='x')\n",
        "errors": RAW + f"tb = ['t' * 3000] * 2000\nfor _ in range({n(100)}):\n"
        "    k.session.send(k.iopub_socket, 'error', {'ename': 'E', 'evalue': 'e' * 2**20, "
        "'traceback': tb}, parent=parent)\n",
        "results": "import sys\nclass R:\n    def __repr__(self):\n        return 'r' * 900_000\n"
        f"for _ in range({n(1000)}):\n    sys.displayhook(R())\n",
        "comm": RAW + f"for i in range({n(1000)}):\n"
        "    k.session.send(k.iopub_socket, 'comm_msg', {'comm_id': f'c{i}', 'data': "
        "{'state': {'v': 'w' * 900_000}}}, parent=parent)\n",
        "redisplay": "from IPython.display import display, clear_output, HTML\n"
        f"for _ in range({n(500)}):\n"
        "    clear_output(wait=True)\n    display(HTML('z' * 900_000))\n",
        "multipart": RAW + "b = memoryview(b'm' * 8 * 2**20)\nfor _ in range(3):\n"
        "    k.session.send(k.iopub_socket, 'display_data', {'data': {}, 'metadata': {}}, "
        f"parent=parent, buffers=[b] * {n(150)})\nimport time\ntime.sleep(5)\n",
    }


def grade_class(scale: float, workers: int) -> tuple[dict[str, str], int, int, float]:
    """(status and executed notebook's size by student, peak of the grader's memory, its
    start, seconds)."""
    import nbformat
    from conftest import complete, grader_memory, make_tiny_course, with_cell
    from nbformat.v4 import new_code_cell

    from autograder.grade import GradeSettings, grade

    with tempfile.TemporaryDirectory(prefix="bench-flood-") as scratch:
        course = make_tiny_course(Path(scratch) / "course")
        subs = {s: complete(course) for s in ("alice", "zoe")}
        for name, attack in floods(scale).items():
            subs[name] = with_cell(complete(course), "squares", attack + SQUARES)
        cells = with_cell(complete(course), "squares", SQUARES)
        for _ in range(max(1, int(500 * scale))):
            cells.cells.insert(1, new_code_cell("print('c' * 999_000)"))
        subs["cells"] = cells
        for student, nb in subs.items():
            folder = course.submitted(student, "tiny")
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / "tiny.ipynb")
        base = grader_memory(os.getpid())
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], grader_memory(os.getpid()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        settings = GradeSettings(sandbox=True, memory_limit="4G", timeout_cell=300)
        try:
            report = grade(course, "tiny", settings=settings, backend="local", workers=workers)
        finally:
            done.set()
            sampler.join()
        seconds = time.monotonic() - started
        statuses = {}
        for r in report.graded:
            written = course.autograded(r.student, "tiny") / "tiny.ipynb"
            size = written.stat().st_size if written.exists() else 0
            statuses[r.student] = f"{r.status}, executed notebook {size / 2**20:,.1f} MiB"
    return statuses, peak[0], base, seconds


WRITERS = {
    "dd (1 MiB writes)": "with open('big', 'wb') as f:\n    for _ in range(12 * 1024):\n"
    "        f.write(b'd' * 2**20)\n",
    "fallocate (12 x 1 GiB)": "import os\nfor i in range(12):\n"
    "    fd = os.open(f'fa{i}', os.O_WRONLY | os.O_CREAT)\n    os.posix_fallocate(fd, 0, 2**30)\n",
    "small files": "for i in range(10**6):\n    open(str(i), 'w').close()\n",
}


def disk_margins(quota_bytes: int, files: int) -> list[tuple[str, str, str, float, int, int]]:
    """Each writer against each mechanism: (writer, mechanism, stopped for, seconds, bytes
    and entries left in the folder)."""
    from autograder.quota import folder_usage, make_workdir, remove_workdir
    from autograder.sandbox import SandboxPolicy, run_sandboxed

    rows = []
    for mechanism in ("own file system", "watched folder"):
        for writer, code in WRITERS.items():
            limit = quota_bytes if mechanism == "own file system" else None
            workdir = make_workdir("autograder-bench-", limit=limit, files=files)
            policy = SandboxPolicy(
                workdir=workdir, memory_bytes=2**30, file_size_bytes=2 * 2**30,
                disk_bytes=quota_bytes, disk_files=files,
            )  # fmt: skip
            try:
                started = time.monotonic()
                done = run_sandboxed([sys.executable, "-c", code], policy=policy, timeout=120)
                seconds = time.monotonic() - started
                used, count = folder_usage(workdir, 2**50, 10**9)
            finally:
                remove_workdir(workdir)
            rows.append((writer, mechanism, str(done.stopped_for), seconds, used, count))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--code", type=Path, help="checkout whose autograder package to use")
    parser.add_argument(
        "--disk", action="store_true", help="measure the disk quota's margin instead (1G)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(args.code or REPO))
    os.environ["PYTHONPATH"] = str(args.code or REPO)
    os.chdir(args.code or REPO)  # the fork server's `python -c` puts its folder first
    import autograder

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, autograder from {Path(autograder.__file__).parent}"
    )
    if args.disk:
        quota_bytes, files = 2**30, 100_000
        print(f"quota {quota_bytes / 2**20:,.0f} MiB, {files:,} files")
        for writer, mechanism, why, secs, used, count in disk_margins(quota_bytes, files):
            print(
                f"  {writer:24} {mechanism:16} stopped for {why:6} after {secs:5.1f} s: "
                f"{used / 2**20:7,.0f} MiB ({(used - quota_bytes) / 2**20:+,.0f}), "
                f"{count:,} entries"
            )
        return 0
    statuses, peak, base, seconds = grade_class(args.scale, args.workers)
    print(
        f"scale {args.scale}: {len(statuses)} submissions in {seconds:.0f} s; grader's "
        f"processes peak {peak / 2**20:,.0f} MiB (at start {base / 2**20:,.0f} MiB, "
        f"growth {(peak - base) / 2**20:,.0f} MiB)"
    )
    print("statuses:", dict(collections.Counter(s.split(",")[0] for s in statuses.values())))
    for student, status in sorted(statuses.items()):
        print(f"  {student}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
