"""``autograder grade``: the coordinator of a class's grading.

:func:`grade` finds the submissions, skips those already graded with the same fingerprint,
hands a :class:`~autograder.job.GradeJob` per student to a backend (:mod:`autograder.schedule`)
and records each result as it arrives: the only gradebook writer. What a worker does with a
job is :mod:`autograder.pipeline`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from . import gradebook
from .config import AssignmentConfig, Course, check_name, load_assignment
from .errors import AutograderError
from .job import SKIPPED_DIRS, GradeJob, GradeSettings, new_job, require_data
from .probe import require_sandbox
from .release import fingerprint as assignment_fingerprint
from .release import require_released, source_index
from .results import SubmissionResult
from .schedule import (
    DEFAULT_PER_GPU,
    check_backend,
    default_workers,
    gpu_slots,
    prestart_pays,
    run_jobs,
    warm_up,
)


def fingerprint_submission(
    folder: Path, assignment_fingerprint: str, settings: GradeSettings
) -> str:
    """Changes when the submitted files, the assignment or the grading settings change."""
    digest = hashlib.sha256()
    digest.update(assignment_fingerprint.encode())
    digest.update(repr(sorted(dataclasses.asdict(settings).items())).encode())
    if folder.is_dir():
        for root, dirs, names in os.walk(folder, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(names):
                path = Path(root) / name
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                if path.is_symlink():
                    digest.update(b"symlink:" + os.readlink(path).encode())
                elif path.is_file():
                    with open(path, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            digest.update(block)
    else:
        digest.update(b"<missing>")
    return digest.hexdigest()


class Progress(Protocol):
    """What a grading run tells whoever watches it (a progress bar, a log)."""

    def planned(self, total: int, skipped: int, workers: int) -> None:
        """``total`` jobs will run on ``workers`` kernels at once; ``skipped`` submissions are
        already graded."""

    def started(self, student: str) -> None:
        """A worker began grading ``student``."""

    def finished(self, result: SubmissionResult) -> None:
        """``result`` is recorded in the gradebook."""


class _Unwatched:
    """The default: nobody is watching."""

    def planned(self, total: int, skipped: int, workers: int) -> None:
        pass

    def started(self, student: str) -> None:
        pass

    def finished(self, result: SubmissionResult) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class GradeReport:
    """What one ``grade`` run did."""

    assignment: str
    graded: tuple[SubmissionResult, ...]
    skipped: tuple[str, ...]
    warnings: tuple[str, ...]


def discover_students(
    root: Path, assignment: str, known: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Students with a folder under ``root`` (plus ``known`` ones), and warnings on odd names."""
    warnings: list[str] = []
    students: set[str] = set(known)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                if not entry.name.startswith("."):
                    warnings.append(f"{entry} is not a student folder; ignored")
                continue
            try:
                check_name("student", entry.name)
            except AutograderError as exc:
                warnings.append(f"{entry}: {exc}; ignored")
                continue
            students.add(entry.name)
    return sorted(students), warnings


def build_jobs(
    course: Course,
    assignment: str,
    *,
    submissions: Path | None = None,
    settings: GradeSettings,
    force: bool = False,
    students: Sequence[str] | None = None,
) -> tuple[list[GradeJob], list[str], list[str], AssignmentConfig]:
    """The jobs still to do (and the students skipped as already graded, and warnings)."""
    config = load_assignment(course, assignment)
    # Every refusal the course's own files can cause comes before the gradebook is created.
    require_data(course, config)
    index = source_index(course, config)
    gradebook.register_assignment(course.gradebook_url, config, index)
    assignment_fp = assignment_fingerprint(index, config)
    root = submissions or course.submitted_root
    known_students = _gradebook_students(course.gradebook_url)
    found, warnings = discover_students(root, assignment, known_students)
    if students:
        found = [s for s in found if s in set(students)] + [s for s in students if s not in found]
    recorded = gradebook.fingerprints(course.gradebook_url, assignment)
    jobs, skipped = [], []
    for student in found:
        folder = root / student / assignment
        fp = fingerprint_submission(folder, assignment_fp, settings)
        if not force and recorded.get(student) == fp:
            skipped.append(student)
            continue
        jobs.append(
            new_job(
                course,
                config,
                index,
                student=student,
                submission=folder,
                autograded=course.autograded(student, assignment),
                fingerprint=fp,
                settings=settings,
            )
        )
    if not found:
        warnings.append(
            f"no submissions found in {root}; expected folders like "
            f"{root}/<student>/{assignment}/{config.notebooks[0] if config.notebooks else ''}.ipynb"
        )
    return jobs, skipped, warnings, config


def _gradebook_students(url: str) -> list[str]:
    with gradebook.open_gradebook(url) as gb:
        return [s.id for s in gb.students]


def grade(
    course: Course,
    assignment: str,
    *,
    submissions: Path | None = None,
    settings: GradeSettings | None = None,
    force: bool = False,
    workers: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
    gpus: Sequence[int] = (),
    per_gpu: int | None = None,
    students: Sequence[str] | None = None,
    progress: Progress | None = None,
    prestart: bool | None = None,
    allow_stale: bool = False,
) -> GradeReport:
    """Grade every new or changed submission of ``assignment`` and record the results.

    Refuses (SandboxUnavailableError, saying how to fix it) when the sandbox does not work
    here, unless ``settings.sandbox`` is off, and (ConfigError) on an unknown backend or a
    bad worker or GPU count, before the gradebook is touched. ``workers``: kernels at once
    (default: :func:`~autograder.schedule.default_workers`); ``per_gpu``: kernels sharing
    each GPU (default :data:`~autograder.schedule.DEFAULT_PER_GPU`). ``prestart``: each job
    starts its held-out evaluators, and the local pool's workers their next kernel, while a
    notebook runs; None: when that has a core to run on (see :func:`prestart_pays`). Refuses
    (ReleaseError) when ``release/`` is not what ``source/`` releases, unless
    ``allow_stale``."""
    settings = settings or GradeSettings()
    per_gpu = DEFAULT_PER_GPU if per_gpu is None else per_gpu
    if workers is None:
        workers = default_workers(gpus, per_gpu)
    check_backend(backend, workers)
    use_gpu = gpu_slots(gpus, per_gpu) != [()]
    if settings.sandbox:
        require_sandbox()
    if prestart is None:
        prestart = prestart_pays(workers, use_gpu)
    # A typo in assignment.toml or data not prepared is refused before any worker starts.
    require_data(course, load_assignment(course, assignment))
    if not allow_stale:
        require_released(course, assignment)
    warm = warm_up(backend, workers=workers, scheduler=scheduler, use_gpu=use_gpu)
    try:
        jobs, skipped, warnings, _ = build_jobs(
            course,
            assignment,
            submissions=submissions,
            settings=settings,
            force=force,
            students=students,
        )
        graded: list[SubmissionResult] = []
        watcher: Progress = progress or _Unwatched()
        watcher.planned(len(jobs), len(skipped), workers)

        def record(result: SubmissionResult) -> None:
            # What the gradebook now says, hand grades included, is what is reported.
            result = gradebook.record(course.gradebook_url, result)
            graded.append(result)
            watcher.finished(result)

        run_jobs(
            jobs,
            record=record,
            workers=workers,
            backend=backend,
            scheduler=scheduler,
            gpus=gpus,
            per_gpu=per_gpu,
            started=watcher.started,
            warm=warm,
            prestart=prestart,
            prestart_evaluator=prestart,
        )
    finally:
        warm.close()
    return GradeReport(assignment, tuple(graded), tuple(skipped), tuple(warnings))
