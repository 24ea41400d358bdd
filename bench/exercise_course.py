"""The workshop's real exercise as a class to grade, for the benchmarks (not a test fixture).

:func:`build` copies ``source/mnist-kaggle`` and ``release/mnist-kaggle`` into a scratch course,
prepares the embedded digits, registers the assignment in the gradebook (before any clock
starts: a new gradebook costs ~3 s) and hands in ``copies`` copies of the instructor's
solution, as ``validate`` grades it. Each copy is also written as the notebook our grader
runs (sanitized, the parameters of ``assignment.toml`` injected after the parameters cell),
with the released data beside it, for bare nbclient; and as the submission nbgrader grades
(the same notebook, its data folder inside, since nbgrader has no data mount).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from autograder.config import Course, load_assignment
from autograder.datasets import prepare
from autograder.gradebook import register_assignment
from autograder.notebooks import read_notebook
from autograder.release import source_index
from autograder.sanitize import SanitizeContext, sanitize

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "mnist-kaggle"


@dataclasses.dataclass(frozen=True)
class Exercise:
    course: Course
    students: tuple[str, ...]
    #: The notebooks as our grader runs them, one folder each with data/ beside it.
    bare: tuple[Path, ...]
    #: An nbgrader course (the same source/), its submissions carrying data/ and the
    #: injected parameters.
    nbgrader_root: Path
    #: The solution's full score, checks included.
    max_score: float


def build(root: Path, copies: int) -> Exercise:
    """The exercise course at ``root`` with ``copies`` submissions of the solution."""
    course = Course.at(root)
    shutil.copytree(REPO / "source" / ASSIGNMENT, course.source(ASSIGNMENT))
    shutil.copytree(REPO / "release" / ASSIGNMENT, course.release(ASSIGNMENT))
    prepare("digits", course=course)
    config = load_assignment(course, ASSIGNMENT)
    index = source_index(course, config)
    register_assignment(course.gradebook_url, config, index)
    solution = course.source(ASSIGNMENT) / f"{ASSIGNMENT}.ipynb"
    students = tuple(f"s{n:03d}" for n in range(copies))
    data = course.data("digits")
    nbgrader_root = root.parent / f"{root.name}-nbgrader"
    shutil.copytree(course.source(ASSIGNMENT), nbgrader_root / "source" / ASSIGNMENT)
    (nbgrader_root / "source" / ASSIGNMENT / "assignment.toml").unlink()
    bare = []
    for student in students:
        folder = course.submitted(student, ASSIGNMENT)
        folder.mkdir(parents=True)
        shutil.copyfile(solution, folder / f"{ASSIGNMENT}.ipynb")
        ctx = SanitizeContext(source=index[ASSIGNMENT], parameters=dict(config.execute.parameters))
        ran = sanitize(read_notebook(solution), ctx)
        target = root.parent / f"{root.name}-bare" / student
        shutil.copytree(data, target / "data")
        bare.append(target / f"{ASSIGNMENT}.ipynb")
        nbformat.write(ran, bare[-1])
        theirs = nbgrader_root / "submitted" / student / ASSIGNMENT
        shutil.copytree(data, theirs / "data")
        nbformat.write(ran, theirs / f"{ASSIGNMENT}.ipynb")
    max_score = sum(c.points for c in config.checks) + sum(
        cell.points or 0 for cell in index[ASSIGNMENT].scored_cells
    )
    return Exercise(course, students, tuple(bare), nbgrader_root, float(max_score))


# --- the benchmark: `python bench/bench_grading.py --exercise` ---------------------------------

#: Bare nbclient over the notebooks given, ``--parallel`` at a time (a pool of processes, each
#: running one notebook after another), each in its own folder, as nbgrader runs them.
BARE = """
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run(path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()


parallel, paths = int(sys.argv[1]), sys.argv[2:]
with ProcessPoolExecutor(parallel) as pool:
    list(pool.map(run, paths))
"""


def contenders(both: bool) -> list[tuple[str, str, list[str]]]:
    """(label, kind, options): kind ``bare`` (options: how many at a time), ``nbgrader`` or
    ``ours`` (options: of ``autograder grade``). ``both``: ours also with the prestart (of
    the next kernel and of the evaluator) all off for each worker count, and all on for 2."""
    out = [
        ("bare nbclient, serial", "bare", ["1"]),
        ("bare nbclient, two at a time", "bare", ["2"]),
        ("nbgrader autograde", "nbgrader", []),
        ("ours, 1 worker", "ours", ["--workers", "1"]),
        ("ours, 2 workers", "ours", ["--workers", "2"]),
    ]
    if both:
        out += [
            ("ours, 1 worker, --no-prestart", "ours", ["--workers", "1", "--no-prestart"]),
            ("ours, 2 workers, --prestart", "ours", ["--workers", "2", "--prestart"]),
            ("ours, 2 workers, --no-prestart", "ours", ["--workers", "2", "--no-prestart"]),
        ]
    return out


def bench(
    args: Any,
    env: Callable[[], dict],
    measure: Callable[[list[str], Path, dict[str, str]], tuple[float, int, float]],
) -> None:
    """Grade ``args.students`` copies of the solution with each contender, ``args.repeat``
    rounds; print the medians, the peak memory and the ratios against their targets.
    ``env``: the commands' environment; ``measure``: bench_grading's, for one command."""
    import os
    import platform
    import statistics
    import subprocess
    import sys
    import tempfile

    from autograder.gradebook import load_results

    def same_kernels() -> dict[str, str]:
        # Our kernels draw figures with Agg and show none (execute.kernel_env); a kernel's
        # default, inline, renders each as a PNG: about 4 CPU s more per copy of this
        # notebook. Every contender does the same work.
        return {**env(), "MPLBACKEND": "Agg"}

    tmp = Path(tempfile.mkdtemp(prefix="bench-exercise-"))
    template = tmp / "template"
    exercise = build(template / "course", args.students)
    py = sys.executable
    rows: dict[str, list[tuple[float, int, float]]] = {}
    loads = [os.getloadavg()]
    for round_ in range(args.repeat):
        for label, kind, options in contenders(args.both_prestart):
            run = tmp / "run"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(template, run, symlinks=True)
            course_dir = run / "course"
            if kind == "bare":
                paths = [str(run / p.relative_to(template)) for p in exercise.bare]
                result = measure([py, "-c", BARE, options[0], *paths], run, same_kernels())
            elif kind == "nbgrader":
                root = run / exercise.nbgrader_root.name
                nbg = [py, "-m", "nbgrader"]
                # Its gradebook and release before the clock, as ours (a new gradebook: ~3 s).
                for prep in (
                    ["db", "assignment", "add", ASSIGNMENT],
                    ["generate_assignment", ASSIGNMENT, "--force"],
                ):
                    subprocess.run(
                        [*nbg, *prep], cwd=root, check=True, capture_output=True, env=same_kernels()
                    )
                argv = [*nbg, "autograde", ASSIGNMENT, "--Execute.timeout=240"]
                result = measure(argv, root, same_kernels())
            else:
                argv = [py, "-m", "autograder", "grade", ASSIGNMENT, *options]
                result = measure(argv, course_dir, same_kernels())
                scores = [
                    r.score for r in load_results(Course.at(course_dir).gradebook_url, ASSIGNMENT)
                ]
                if scores != [exercise.max_score] * args.students:
                    raise SystemExit(f"{label}: unexpected scores {scores}")
            rows.setdefault(label, []).append(result)
            loads.append(os.getloadavg())
            print(
                f"[{round_ + 1}] {label:<34} {result[0]:7.2f} s  {result[1] / 2**20:6.0f} MiB"
                f"  {result[2]:7.1f} CPU s  (load {loads[-1][0]:.2f})",
                flush=True,
            )
    shutil.rmtree(tmp, ignore_errors=True)

    med = {label: statistics.median(r[0] for r in runs) for label, runs in rows.items()}
    peak = {label: max(r[1] for r in runs) for label, runs in rows.items()}
    cpu = {label: statistics.median(r[2] for r in runs) for label, runs in rows.items()}
    n = args.students
    one_min = [load[0] for load in loads]
    print(
        f"\nthe real exercise ({ASSIGNMENT}, both checks), {n} copies of the solution, sandbox "
        f"on, medians of {args.repeat}; {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; 1-minute load {min(one_min):.2f}-{max(one_min):.2f}"
    )
    print(
        "| what | wall s | per submission s | CPU s | rounds, wall s | peak RSS MiB |\n"
        "|---|---:|---:|---:|---|---:|"
    )
    for label in med:
        rounds = ", ".join(f"{r[0]:.1f}" for r in rows[label])
        print(
            f"| {label} | {med[label]:.2f} | {med[label] / n:.2f} | {cpu[label]:.1f} | "
            f"{rounds} | {peak[label] / 2**20:.0f} |"
        )

    def ratio(a: str, b: str) -> str:
        if a not in med or b not in med:
            return "n/a | n/a"
        return f"{med[a] / med[b]:.2f} | {cpu[a] / cpu[b]:.2f}"

    print("\n| ratio | wall | CPU | target (wall) |\n|---|---:|---:|---:|")
    one, two = "ours, 1 worker", "ours, 2 workers"
    print(f"| ours 1 worker / bare serial | {ratio(one, 'bare nbclient, serial')} | <= 1.05 |")
    print(
        f"| ours 2 workers / bare two at a time | "
        f"{ratio('ours, 2 workers', 'bare nbclient, two at a time')} | <= 1.05 |"
    )
    print(f"| ours 2 workers / nbgrader autograde | {ratio(two, 'nbgrader autograde')} | <= 0.70 |")
    print(
        f"| bare two at a time / bare serial (the machine's own 2-way floor) | "
        f"{ratio('bare nbclient, two at a time', 'bare nbclient, serial')} | |"
    )
    if args.both_prestart:
        # The defaults follow schedule.prestart_pays: on 2 cores, 1 worker prestarts both the
        # next kernel and the evaluator, 2 workers neither (so the second row then measures
        # the same command twice: the machine's own noise).
        for a, b in (
            ("ours, 1 worker, --no-prestart", "ours, 1 worker"),
            ("ours, 2 workers, --no-prestart", "ours, 2 workers"),
            ("ours, 2 workers, --prestart", "ours, 2 workers"),
        ):
            gain, work = (med[a] - med[b]) / n, (cpu[a] - cpu[b]) / n
            print(
                f"| prestart: `{a}` minus `{b}`, per submission | {gain:+.2f} s | {work:+.1f} s | |"
            )
