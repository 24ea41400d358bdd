"""``autograder validate``: the instructor's solution, graded as a submission, must pass everything.

The source notebooks (solutions and hidden tests in) are submitted by a pseudo-student and run
through exactly the worker students go through (sandbox, limits, checks), without touching the
gradebook. Every test cell and every check must pass; answer cells graded by hand are listed
but do not fail validation.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from .config import AccuracyCheck, AssignmentConfig, Course, CsvCheck, load_assignment
from .job import GradeSettings, new_job, require_data
from .pipeline import grade_submission
from .probe import require_sandbox
from .release import require_released, source_index
from .results import ItemResult, SubmissionResult

INSTRUCTOR = "instructor-solution"


@dataclasses.dataclass(frozen=True)
class ValidateReport:
    """The instructor solution's result and what is wrong with it (nothing, when valid)."""

    result: SubmissionResult
    problems: tuple[str, ...]
    manual: tuple[str, ...]
    #: One line per item: its figure against what it needs (``ok``, ``FAIL`` or ``hand``
    #: first), so a threshold can be chosen from what the solution reaches.
    figures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(
    course: Course,
    assignment: str,
    *,
    settings: GradeSettings | None = None,
    allow_stale: bool = False,
) -> ValidateReport:
    """Grade the source notebooks of ``assignment`` and report every item that fails.

    Refuses, as ``grade`` does, when the sandbox does not work here (unless
    ``settings.sandbox`` is off), and when ``release/`` is not what ``source/`` releases
    (unless ``allow_stale``)."""
    settings = settings or GradeSettings()
    if settings.sandbox:
        require_sandbox()
    config = load_assignment(course, assignment)
    require_data(course, config)
    if not allow_stale:
        require_released(course, assignment)
    index = source_index(course, config)
    scratch = Path(tempfile.mkdtemp(prefix="autograder-validate-"))
    try:
        submission = scratch / "submission"
        shutil.copytree(course.source(assignment), submission)
        (submission / "assignment.toml").unlink(missing_ok=True)
        job = new_job(
            course,
            config,
            index,
            student=INSTRUCTOR,
            submission=submission,
            autograded=scratch / "autograded" / assignment,
            fingerprint="",
            settings=settings,
        )
        result = grade_submission(job)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    problems = []
    if result.status != "graded":
        problems.append(f"the notebook did not run cleanly ({result.status}): {result.message}")
    manual, figures = [], []
    for item in result.items:
        if item.hand_graded:
            manual.append(f"{item.id}: graded by hand ({item.max_score:g} points)")
            figures.append(f"hand  {item.id} ({item.kind}): {item.max_score:g} points, by hand")
            continue
        figure = item_figure(item, config)
        if item.passed:
            figures.append(f"ok    {item.id} ({item.kind}): {figure}")
        else:
            why = for_instructor(item, config)
            problems.append(f"{item.id} ({item.kind}): {why}")
            figures.append(f"FAIL  {item.id} ({item.kind}): {figure}: {why}")
    return ValidateReport(result, tuple(problems), tuple(manual), tuple(figures))


def _check(item: ItemResult, config: AssignmentConfig) -> AccuracyCheck | CsvCheck | None:
    return next((c for c in config.checks if c.id == item.id), None)


def item_figure(item: ItemResult, config: AssignmentConfig) -> str:
    """What the solution reached on ``item``, beside what it needs: the points of a test,
    the held-out accuracy against the threshold, the public CSV score against min_score."""
    check = _check(item, config)
    details = item.details or {}
    if isinstance(check, AccuracyCheck) and "accuracy" in details:
        return (
            f"held-out accuracy {details['accuracy']:.3f}, threshold {check.threshold:.3f} "
            f"({details['correct']:,} of {details['total']:,} correct)"
        )
    if isinstance(check, CsvCheck) and "public" in details:
        needs = "no min_score"
        if check.min_score is not None:
            needs = f"min_score {check.min_score:.3f}"
        return (
            f"public score {details['public']:.3f}, {needs} (private {details['private']:.3f}, "
            "which decides only at the final reveal)"
        )
    if check is not None:
        return "no figure"
    return f"{item.score:g} / {item.max_score:g} points"


def for_instructor(item: ItemResult, config: AssignmentConfig) -> str:
    """``item``'s reason, said to the instructor: what to change in the solution or in
    ``assignment.toml`` (the participant's sentence asks them to change their notebook)."""
    check = _check(item, config)
    where = f"source/{config.name}/assignment.toml"
    code = (item.details or {}).get("code")
    if isinstance(check, AccuracyCheck) and code == "missing-model":
        return (
            f"the solution leaves no keras.Model in {check.variable!r}; name the variable "
            f"that holds its trained model in check {check.id!r} of {where} "
            f"(variable = ...), or assign it in the solution"
        )
    if isinstance(check, CsvCheck) and item.message.startswith("the notebook did not write"):
        return (
            f"the solution does not write {check.file} ({item.message}); make it write that "
            f"file, or name the file it writes in check {check.id!r} of {where} (file = ...)"
        )
    if isinstance(check, AccuracyCheck) and "accuracy" in (item.details or {}):
        return f"lower threshold in check {check.id!r} of {where}, or train the solution longer"
    if isinstance(check, CsvCheck) and "public" in (item.details or {}):
        return f"lower min_score in check {check.id!r} of {where}, or improve the solution"
    return item.message
