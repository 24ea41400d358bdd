"""How long feedback pages and the leaderboard take for a class (run by hand).

Builds the tiny test assignment, grades one submission for real (one kernel, not timed), then
records the same result for N students with a 10-class confusion matrix, a 20-epoch history
and a scored CSV, copies the executed notebook to each, and times write_feedback and
write_leaderboard. Results go in docs/benchmarks.md.

    PYTHONPATH=. python bench/bench_pages.py --students 60 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import conftest

from autograder import gradebook
from autograder.config import Course, load_assignment
from autograder.feedback import write_feedback
from autograder.grade import GradeSettings, grade
from autograder.leaderboard import write_leaderboard
from autograder.release import release, source_index
from autograder.results import ItemResult


def build(root: Path, students: int) -> Course:
    conftest.write_nb(conftest.tiny_source(), root / "source" / "tiny" / "tiny.ipynb")
    toml = root / "source" / "tiny" / "assignment.toml"
    toml.write_text("[execute]\ntimeout_cell = 20\n")
    course = Course.at(root)
    release(course, "tiny")
    conftest.write_nb(conftest.complete(course), course.submitted("s000", "tiny") / "tiny.ipynb")
    (first,) = grade(course, "tiny", settings=GradeSettings(sandbox=False), backend="inline").graded
    toml.write_text(
        toml.read_text() + '\n[[checks]]\nkind = "accuracy"\nid = "acc"\npoints = 2\n'
        'threshold = 0.9\n\n[[checks]]\nkind = "csv"\nid = "csv"\npoints = 1\n'
    )
    config = load_assignment(course, "tiny")
    gradebook.register_assignment(course.gradebook_url, config, source_index(course, config))
    matrix = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
    for n in range(students):
        student = f"s{n:03d}"
        if n:
            shutil.copytree(course.autograded("s000", "tiny"), course.autograded(student, "tiny"))
        acc = ItemResult(
            "acc",
            "accuracy",
            2.0,
            2.0,
            True,
            "held-out accuracy 0.909 meets 0.900",
            notebook="tiny",
            details={
                "accuracy": 0.909,
                "correct": 900,
                "total": 990,
                "threshold": 0.9,
                "classes": [str(c) for c in range(10)],
                "confusion_matrix": matrix,
            },
        )
        csv = ItemResult(
            "csv",
            "csv",
            1.0,
            1.0,
            True,
            "valid",
            notebook="tiny",
            details={"public": 0.9 + n / 1000, "private": 0.8, "overall": 0.85, "rows": 280},
        )
        history = {k: [1.0 / (e + 1) for e in range(20)] for k in ("loss", "val_loss")}
        result = first.with_items(
            [*first.items, acc, csv],
            student=student,
            submitted_at=f"2026-11-25T10:{n % 60:02d}:00+00:00",
            details={"history": history},
        )
        gradebook.record(course.gradebook_url, result)
    return course


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pages-")) / "course"
    try:
        course = build(root, args.students)
        feedback, board = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            paths = write_feedback(course, "tiny")
            feedback.append(time.perf_counter() - t)
            t = time.perf_counter()
            page = write_leaderboard(course, "tiny")
            board.append(time.perf_counter() - t)
        size = statistics.median(p.stat().st_size for p in paths)
        print(f"{args.students} students, median of {args.repeat}")
        print(
            f"write_feedback:    {statistics.median(feedback):.2f} s "
            f"({1000 * statistics.median(feedback) / args.students:.0f} ms/student, "
            f"page {size / 1024:.0f} KiB)"
        )
        print(
            f"write_leaderboard: {statistics.median(board):.2f} s "
            f"(page {page.stat().st_size / 1024:.0f} KiB)"
        )
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
