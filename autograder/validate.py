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

from .config import Course, load_assignment
from .job import GradeSettings, new_job, require_data
from .pipeline import grade_submission
from .probe import require_sandbox
from .release import source_index
from .results import SubmissionResult

INSTRUCTOR = "instructor-solution"


@dataclasses.dataclass(frozen=True)
class ValidateReport:
    """The instructor solution's result and what is wrong with it (nothing, when valid)."""

    result: SubmissionResult
    problems: tuple[str, ...]
    manual: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(
    course: Course, assignment: str, *, settings: GradeSettings | None = None
) -> ValidateReport:
    """Grade the source notebooks of ``assignment`` and report every item that fails.

    Refuses, as ``grade`` does, when the sandbox does not work here (unless
    ``settings.sandbox`` is off)."""
    settings = settings or GradeSettings()
    if settings.sandbox:
        require_sandbox()
    config = load_assignment(course, assignment)
    index = source_index(course, config)
    require_data(course, config)
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
    manual = []
    for item in result.items:
        if item.hand_graded:
            manual.append(f"{item.id}: graded by hand ({item.max_score:g} points)")
        elif not item.passed:
            problems.append(f"{item.id} ({item.kind}): {item.message}")
    return ValidateReport(result, tuple(problems), tuple(manual))
