"""Time ``autograder validate`` on the two workshop notebooks with their fast parameters.

Run by hand from the repository root (results go in docs/benchmarks.md):

    python bench/bench_validate_workshop.py [--repeat 1] [--sandbox]

Each assignment's source/ and release/ are copied into a scratch course with the embedded
digits prepared, and :func:`autograder.validate.validate` grades the instructor solution there
as the CLI does: kernel start, the whole notebook with the parameters of ``assignment.toml``,
scoring, and the held-out checks. The target is under 2 minutes each on 2 CPU cores, since CI
runs both.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.config import Course
from autograder.datasets import prepare
from autograder.grade import GradeSettings
from autograder.validate import validate

REPO = Path(__file__).resolve().parents[1]
WORKSHOP = ("transfer-learning", "mnist-kaggle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sandbox", action="store_true", help="grade inside the sandbox")
    args = parser.parse_args()
    repo = Course.at(REPO)
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as scratch:
        course = Course.at(scratch)
        for name in WORKSHOP:
            shutil.copytree(repo.source(name), course.source(name))
            shutil.copytree(repo.release(name), course.release(name))
        prepare("digits", course=course)
        settings = GradeSettings(sandbox=args.sandbox)
        print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
        print("| assignment | score | wall s (median) | runs |")
        print("| --- | --- | ---: | ---: |")
        for name in WORKSHOP:
            times, score = [], ""
            for _ in range(args.repeat):
                start = time.monotonic()
                report = validate(course, name, settings=settings)
                times.append(time.monotonic() - start)
                if not report.ok:
                    print(f"{name}: validation failed: {report.problems}", file=sys.stderr)
                    return 1
                score = f"{report.result.score:g} / {report.result.max_score:g}"
            print(f"| {name} | {score} | {statistics.median(times):.1f} | {args.repeat} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
