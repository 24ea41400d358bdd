"""What crosses the worker boundary: the settings, the job, and the results a job can end with.

The coordinator (:mod:`autograder.grade`, :mod:`autograder.validate`) builds a
:class:`GradeJob` with :func:`new_job`; a worker (:mod:`autograder.pipeline`), in this
process, a local pool or on a Dask worker, turns it into a
:class:`~autograder.results.SubmissionResult`. Both sides import this module and nothing of
each other. Everything here is plain and picklable: no open handles, no kernels.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import (
    AccuracyCheck,
    AssignmentConfig,
    Course,
    CsvCheck,
    check_notebook_for,
    parse_size,
)
from .datasets import folder_name, heldout_meta
from .errors import AutograderError
from .execute import ExecutionLimits
from .release import SourceNotebook
from .results import ItemResult, SubmissionResult
from .scoring import missing_items

#: Limits on what is copied out of a submission folder (a submission is a few notebooks and a CSV).
MAX_SUBMISSION_BYTES = 512 * 1024 * 1024
MAX_SUBMISSION_FILES = 2000
#: Folders of a submission that are neither copied nor fingerprinted.
SKIPPED_DIRS = frozenset({".ipynb_checkpoints", "__pycache__", ".git"})
#: What a backend calls in the coordinator's process with each result, as it arrives.
Record = Callable[[SubmissionResult], None]
#: What a backend calls with the student's name as each job begins.
Started = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class GradeSettings:
    """Choices of the person grading (command-line options), the same for every job."""

    sandbox: bool = True
    timeout_cell: float | None = None
    timeout_total: float | None = None
    memory_limit: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.memory_limit is not None:
            parse_size(self.memory_limit)  # says how to write a size it does not understand

    def limits(self, config: AssignmentConfig) -> ExecutionLimits:
        """The time, output, memory, disk and CPU limits of one notebook run of ``config``."""
        ex = config.execute
        memory = self.memory_limit or ex.memory_limit
        total = self.timeout_total or ex.timeout_total
        return ExecutionLimits(
            timeout_cell=self.timeout_cell or ex.timeout_cell,
            timeout_total=total,
            max_output_lines=ex.max_output_lines,
            max_output_bytes=ex.max_output_bytes,
            max_notebook_output_bytes=ex.max_notebook_output_bytes,
            memory_limit_text=memory,
            disk_limit_text=ex.disk_limit,
            max_files=ex.max_files,
            cpu_seconds=ex.cpu_limit or 4 * total,
        )

    def parameters_for(self, config: AssignmentConfig) -> dict[str, Any]:
        """The notebook parameters: the assignment's, overridden by the grader's."""
        return {**config.execute.parameters, **self.parameters}


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values read as TOML (``3``, ``true``, ``"data"``), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise AutograderError(
                f"--param {pair!r} is not KEY=VALUE with a Python name as KEY (e.g. EPOCHS=3)"
            )
        try:
            out[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw.strip()
    return out


@dataclasses.dataclass(frozen=True)
class GradeJob:
    """Everything a worker needs to grade one submission; picklable, no open handles."""

    student: str
    config: AssignmentConfig
    submission: Path
    autograded: Path
    source: dict[str, SourceNotebook]
    #: Files released with the notebooks (restored over the student's copies, as nbgrader does).
    assignment_files: Path
    #: Released data the kernel may read (mounted at ./data), or None.
    data_dir: Path | None
    #: Grader-only folders of held-out data, by data set name (never shown to the kernel).
    heldout: dict[str, Path]
    fingerprint: str
    settings: GradeSettings
    gpus: tuple[int, ...] = ()
    #: Start a spare kernel for this worker's next job while this one runs (see prestart);
    #: set by the local pool, whose workers keep one event loop and thread for all jobs.
    #: A job takes a fitting spare whether or not it starts one.
    prestart: bool = False
    #: Start this job's held-out evaluators while its notebook runs, to be handed the model
    #: at its end (see prestart); set by every backend where the kernel prestart pays.
    prestart_evaluator: bool = False


def new_job(
    course: Course,
    config: AssignmentConfig,
    source: Mapping[str, SourceNotebook],
    *,
    student: str,
    submission: Path,
    autograded: Path,
    fingerprint: str,
    settings: GradeSettings,
) -> GradeJob:
    """The job of grading ``submission`` (a folder of ``student``'s files) for ``config``,
    with the course's released files, released data and held-out data."""
    return GradeJob(
        student=student,
        config=config,
        submission=submission,
        autograded=autograded,
        source=dict(source),
        assignment_files=course.release(config.name),
        data_dir=course.data(folder_name(config.dataset)) if config.dataset else None,
        heldout={c.dataset: course.heldout(folder_name(c.dataset)) for c in config.checks},
        fingerprint=fingerprint,
        settings=settings,
    )


def require_data(course: Course, config: AssignmentConfig) -> None:
    """Raise DataError, saying how to prepare it, for any data set ``config`` needs (its
    released data, then each check's held-out set) that the course has not prepared."""
    for dataset in dict.fromkeys([config.dataset, *(c.dataset for c in config.checks)]):
        if dataset:
            heldout_meta(course, dataset)


# --- results a job can end with ---------------------------------------------------------------


def read_timestamp(folder: Path) -> str | None:
    """nbgrader's ``timestamp.txt`` as ISO 8601 UTC, or None when absent or unreadable."""
    path = folder / "timestamp.txt"
    if not path.is_file() or path.is_symlink():
        return None
    try:
        from nbgrader.utils import parse_utc

        stamp = parse_utc(path.read_text(encoding="utf-8", errors="replace")[:200].strip())
    except Exception:
        return None
    return stamp.isoformat() if stamp else None


def base_result(job: GradeJob) -> SubmissionResult:
    """The result of ``job`` before any item is scored: who, where it ran, when submitted."""
    return SubmissionResult(
        student=job.student,
        assignment=job.config.name,
        status="graded",
        items=(),
        fingerprint=job.fingerprint,
        device=",".join(f"cuda:{g}" for g in job.gpus) or "cpu",
        submitted_at=read_timestamp(job.submission),
        autograded_dir=str(job.autograded),
    )


def zero_item(check: AccuracyCheck | CsvCheck, config: AssignmentConfig, why: str) -> ItemResult:
    """No points for ``check``, and ``why``."""
    return ItemResult(
        id=check.id,
        kind=check.kind,
        score=0.0,
        max_score=check.points,
        passed=False,
        message=why,
        notebook=check_notebook_for(check, config),
    )


def zero_items(job: GradeJob, why: str, *, tests: bool = True) -> list[ItemResult]:
    """No points for any check of ``job`` (and, with ``tests``, for any graded cell), all
    with the same reason."""
    items = []
    if tests:
        for name in job.config.notebooks:
            items.extend(missing_items(job.source[name], why))
    return items + [zero_item(check, job.config, why) for check in job.config.checks]


def missing_result(job: GradeJob) -> SubmissionResult:
    """The result of a student with no submission folder."""
    return base_result(job).with_items(
        zero_items(job, "nothing was submitted"),
        status="missing",
        message=f"no submission folder {job.submission}",
    )


def failed_result(job: GradeJob, message: str, *, duration_s: float = 0.0) -> SubmissionResult:
    """The result of a submission the grader itself could not finish: every item zero, status
    ``error``, and ``message`` saying what happened (the coordinator uses it for lost workers)."""
    return base_result(job).with_items(
        zero_items(job, "the grader failed on this submission"),
        status="error",
        message=message,
        duration_s=duration_s,
    )
