"""Profile one submission of the real exercise end to end: where the time goes (run by hand).

One copy of the ``mnist-kaggle`` solution (bench/exercise_course.py) is graded by ``grade``
on the ``inline`` backend, sandbox on, so the worker's stages run in this process and can be
timed from inside: each stage of ``pipeline.STAGES``, and within them the kernel start, the
cells, the collection snippets, the kernel's shutdown, the held-out evaluator (its start,
its own timings of the Keras import, load and predict), the CSV check, the copies, and the
coordinator's recording in the gradebook; then the feedback page the service writes after
it. ``--prestart`` / ``--no-prestart`` (both by default, one after the other) is the
evaluator started while the notebook runs, or after it.

    PYTHONPATH=. python bench/profile_submission.py [--repeat 1] [--no-prestart|--prestart]

Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import exercise_course
from bench_grading import tree_usage

from autograder import checks, execute, gradebook, pipeline
from autograder.grade import GradeSettings, grade


class Clock:
    """Seconds spent in each named phase, and the moments phases began and ended."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.notes: dict[str, Any] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.marks.setdefault(f"{name} began", start)
        try:
            yield
        finally:
            end = time.perf_counter()
            self.spent[name] += end - start
            self.marks[f"{name} ended"] = end


def timed(clock: Clock, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio_function(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with clock.phase(name):
                return await fn(*args, **kwargs)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with clock.phase(name):
            return fn(*args, **kwargs)

    return run


def asyncio_function(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


@contextlib.contextmanager
def instrumented(clock: Clock) -> Iterator[None]:
    """Patch the functions the grading of one submission goes through with timers."""
    saved: list[tuple[Any, str, Any]] = []

    stages = pipeline.STAGES
    pipeline.STAGES = tuple(timed(clock, f"stage {s.__name__}", s) for s in stages)
    for owner, name, label in (
        (execute, "_run_cells", "cells"),
        (execute, "_collect", "collection snippets (in the kernel)"),
        (execute, "shutdown_kernel", "kernel shutdown"),
        (pipeline, "score_notebook", "test cells scored"),
        (pipeline, "write_notebook", "executed notebook written"),
        (pipeline, "_swap", "autograded/ swapped in"),
        (checks, "read_history", "history read"),
        (checks, "accuracy_check", "accuracy check"),
        (checks, "csv_check", "CSV check"),
        (checks, "check_csv", "CSV read and validated"),
        (checks, "score_csv", "CSV scored"),
        (checks, "start_evaluators", "evaluator started (launch)"),
        (gradebook, "record", "recorded in the gradebook"),
    ):
        original = getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, timed(clock, label, original))
    original_eval = checks.evaluate_model

    def evaluate_model(**kwargs: Any) -> Any:
        waiting = kwargs.get("evaluator")
        if waiting is not None:
            clock.notes["waited_s"] = time.monotonic() - waiting.started
            clock.notes["waiting_rss"] = tree_usage(waiting.process.pid)[0]
        with clock.phase("evaluator (handover to predictions)"):
            outcome = original_eval(**kwargs)
        clock.notes["evaluator"] = dict(outcome.details)
        return outcome

    checks.evaluate_model = evaluate_model
    saved.append((checks, "evaluate_model", original_eval))
    try:
        yield
    finally:
        pipeline.STAGES = stages
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def profile_once(root: Path, prestart: bool) -> tuple[Clock, float]:
    exercise = exercise_course.build(root, 1)
    clock = Clock()
    settings = GradeSettings(sandbox=True)
    with instrumented(clock):
        start = time.perf_counter()
        report = grade(
            exercise.course,
            exercise_course.ASSIGNMENT,
            settings=settings,
            backend="inline",
            prestart=prestart,
        )
        total = time.perf_counter() - start
    (result,) = report.graded
    if result.score != exercise.max_score:
        raise SystemExit(f"scored {result.score} of {exercise.max_score}: {result.message}")
    from autograder.feedback import write_feedback

    with clock.phase("feedback page written"):
        write_feedback(exercise.course, exercise_course.ASSIGNMENT, students=["s000"])
    clock.notes["start"] = start
    return clock, total


def report(runs: list[tuple[Clock, float]], prestart: bool) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    names = list(dict.fromkeys(name for clock, _ in runs for name in clock.spent))
    print(f"\n### evaluator {'prestarted' if prestart else 'started after the notebook'}")
    print(f"whole grade() call: {med([t for _, t in runs]):.2f} s (median of {len(runs)})\n")
    print("| phase | s |\n|---|---:|")
    for name in names:
        print(f"| {name} | {med([c.spent.get(name, 0.0) for c, _ in runs]):.3f} |")
    ends = [c.marks.get("cells ended") for c, _ in runs]
    done = [c.marks.get("recorded in the gradebook ended") for c, _ in runs]
    after = [d - e for e, d in zip(ends, done, strict=True) if e is not None and d is not None]
    print(f"| **notebook ended (last cell) -> recorded** | **{med(after):.3f}** |")
    timings = [c.notes.get("evaluator", {}).get("timings", {}) for c, _ in runs]
    for key in ("import_s", "load_s", "predict_s"):
        values = [t[key] for t in timings if key in t]
        if values:
            print(f"| evaluator's own {key[:-2]} | {med(values):.3f} |")
    waited = [c.notes["waited_s"] for c, _ in runs if "waited_s" in c.notes]
    rss = [c.notes["waiting_rss"] for c, _ in runs if "waiting_rss" in c.notes]
    if waited:
        print(f"| (the evaluator waited, started -> handover) | {med(waited):.2f} |")
        print(f"| (RSS of the waiting evaluator, MiB) | {med(rss) / 2**20:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--prestart", dest="modes", action="store_const", const=[True])
    choice.add_argument("--no-prestart", dest="modes", action="store_const", const=[False])
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for prestart in args.modes or [False, True]:
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
                runs.append(profile_once(Path(scratch) / "course", prestart))
        report(runs, prestart)
    load = os.getloadavg()
    print(f"\nload after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
