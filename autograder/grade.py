"""``autograder grade``: every submission sanitized, run, scored and recorded.

:func:`grade_submission` is the worker: steps 1-4 of DESIGN.md's data flow for one student,
returning a plain :class:`SubmissionResult` and never raising, so one broken submission never
stops a batch. It runs unchanged in a local process pool or on a Dask worker. :func:`grade` is
the coordinator: it finds the submissions, skips those already graded with the same
fingerprint, hands jobs to a backend and records each result as it arrives (the only writer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from nbformat import NotebookNode

from . import gradebook, prestart, release
from .config import AssignmentConfig, Course, check_name, load_assignment
from .errors import AutograderError, InvalidNotebookError
from .execute import (
    ExecutionLimits,
    ExecutionOutcome,
    KernelFactory,
    execute_notebook,
    hand_over_workdir,
    kernel_env,
)
from .notebooks import read_notebook, write_notebook
from .release import SourceNotebook
from .results import ItemResult, SubmissionResult
from .sanitize import SanitizeContext, sanitize
from .scoring import missing_items, score_notebook

#: Limits on what is copied out of a submission folder (a submission is a few notebooks and a CSV).
MAX_SUBMISSION_BYTES = 512 * 1024 * 1024
MAX_SUBMISSION_FILES = 2000
SKIPPED_DIRS = {".ipynb_checkpoints", "__pycache__", ".git"}
#: Worse statuses win when a submission's notebooks end differently.
STATUS_ORDER = ("sandbox-error", "invalid-notebook", "kernel-died", "memory", "timeout", "graded")


@dataclasses.dataclass(frozen=True)
class GradeSettings:
    """Choices of the person grading (command-line options), the same for every job."""

    sandbox: bool = True
    timeout_cell: float | None = None
    timeout_total: float | None = None
    memory_limit: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def limits(self, config: AssignmentConfig) -> ExecutionLimits:
        ex = config.execute
        memory = self.memory_limit or ex.memory_limit
        return ExecutionLimits(
            timeout_cell=self.timeout_cell or ex.timeout_cell,
            timeout_total=self.timeout_total or ex.timeout_total,
            max_output_lines=ex.max_output_lines,
            max_output_bytes=ex.max_output_bytes,
            memory_limit_text=memory,
        )

    def parameters_for(self, config: AssignmentConfig) -> dict[str, Any]:
        return {**config.execute.parameters, **self.parameters}


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


# --- the worker ---------------------------------------------------------------------------


def copy_submission(src: Path, dest: Path, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Copy the regular files of a submission; return notes on what was left out. Top-level
    entries named in ``skip`` are not copied (the released data replaces ``data``)."""
    notes: list[str] = []
    total = files = 0
    for root, dirs, names in os.walk(src, followlinks=False):
        rel_root = Path(root).relative_to(src)
        top = rel_root == Path(".")
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not (top and d in skip))
        for name in sorted(names):
            path = Path(root) / name
            rel = rel_root / name
            if path.is_symlink():
                notes.append(f"{rel} is a symbolic link and was not used")
                continue
            if not path.is_file() or (top and name in skip):
                continue
            size = path.stat().st_size
            files += 1
            total += size
            if files > MAX_SUBMISSION_FILES or total > MAX_SUBMISSION_BYTES:
                raise InvalidNotebookError(
                    f"the submission folder holds more than {MAX_SUBMISSION_FILES} files or "
                    f"{MAX_SUBMISSION_BYTES // 2**20} MB; submit only the notebook and its CSV"
                )
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target, follow_symlinks=False)
    return notes


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


def _find_notebook(
    workdir: Path, name: str, single: bool, notes: list[str], submission: Path
) -> Path:
    expected = workdir / f"{name}.ipynb"
    if expected.exists() or expected.is_symlink():
        return expected
    if (submission / expected.name).is_symlink():
        # copy_submission left the link out; "not submitted" would puzzle its author.
        raise InvalidNotebookError(
            f"{expected.name} is a symbolic link, not a notebook; submit the notebook file itself"
        )
    found = sorted(p.name for p in workdir.glob("*.ipynb"))
    if single and len(found) == 1:
        notes.append(f"{found[0]} was graded as {name}.ipynb")
        return workdir / found[0]
    listing = f" (the submission has {', '.join(found)})" if found else ""
    raise InvalidNotebookError(f"{name}.ipynb was not submitted{listing}")


def _kernel_factory(job: GradeJob, workdir: Path) -> KernelFactory:
    if not job.settings.sandbox:
        from .execute import plain_kernel_factory

        return plain_kernel_factory
    from . import sandbox

    return sandbox.kernel_factory_for(job=job, workdir=workdir)


def _kernel_key(job: GradeJob, workdir: Path) -> tuple[Any, ...]:
    """Everything a kernel of ``job`` in ``workdir`` is started with: a spare kernel started
    for another job serves this one only if its key is the same."""
    from . import sandbox

    policy = sandbox.job_policy(job=job, workdir=workdir) if job.settings.sandbox else None
    env = kernel_env(workdir, gpus=job.gpus)
    return (job.settings.sandbox, policy, env, tuple(job.config.execute.prestart_imports))


def _spare_kernel(job: GradeJob, workdir: Path) -> tuple[Any, dict[str, str], tuple[Any, ...]]:
    """A not yet started kernel for whichever job comes next, under ``job``'s policy."""
    env = kernel_env(workdir, gpus=job.gpus)
    km = _kernel_factory(job, workdir)(workdir=workdir, env=env)
    return km, env, _kernel_key(job, workdir)


async def _when_ready(job: GradeJob) -> None:
    """Once a job's kernel answers: start the next spare while this notebook runs."""
    await prestart.start_spare(
        lambda workdir: _spare_kernel(job, workdir), job.config.execute.prestart_imports
    )


def _prepare_workdir(job: GradeJob, workdir: Path, notes: list[str]) -> None:
    # The released data replaces a submitted data/ (the sandbox mounts it read-only at ./data,
    # whose mount point may be there already: a prestarted kernel's sandbox made it).
    skip = frozenset({"data"}) if job.data_dir is not None else frozenset()
    notes.extend(copy_submission(job.submission, workdir, skip=skip))
    if job.assignment_files.is_dir():
        for path in job.assignment_files.rglob("*"):
            rel = path.relative_to(job.assignment_files)
            if path.is_file() and path.suffix != ".ipynb" and rel.parts[0] not in skip:
                target = workdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                shutil.copyfile(path, target)
    if job.data_dir is not None:
        submitted = job.submission / "data"
        if submitted.exists() and not submitted.is_symlink():
            notes.append("the submitted data/ folder was replaced by the released data")
        if not job.settings.sandbox:
            # The sandbox mounts the data read-only; without it, a copy keeps the course safe.
            shutil.copytree(job.data_dir, workdir / "data")
    (workdir / "outbox").mkdir(exist_ok=True)


def _run_notebook(
    job: GradeJob,
    workdir: Path,
    name: str,
    notes: list[str],
    collect: Sequence[str],
    spare: prestart.Spare | None = None,
) -> tuple[NotebookNode | None, ExecutionOutcome | None, SanitizeContext, list[ItemResult]]:
    source = job.source[name]
    ctx = SanitizeContext(source=source, parameters=job.settings.parameters_for(job.config))
    path = _find_notebook(workdir, name, len(job.config.notebooks) == 1, notes, job.submission)
    nb = sanitize(read_notebook(path), ctx)
    if source.grade_cells and len(ctx.missing) == len(source.grade_cells):
        raise InvalidNotebookError(
            f"{path.name} has none of this assignment's graded cells: it looks like a notebook "
            f"of another assignment; submit your copy of the released {name}.ipynb"
        )
    factory = _kernel_factory(job, workdir)
    env = kernel_env(workdir, gpus=job.gpus)
    outcome = execute_notebook(
        nb,
        workdir=workdir,
        limits=job.settings.limits(job.config),
        kernel_factory=factory,
        env=env,
        collect=collect,
        km=spare.km if spare is not None else None,
        on_ready=(lambda: _when_ready(job)) if job.prestart else None,
        runner=prestart.run if job.prestart or spare else asyncio.run,
    )
    items = score_notebook(outcome.nb, source, ctx, outcome)
    return outcome.nb, outcome, ctx, items


def _base_result(job: GradeJob) -> SubmissionResult:
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


def failed_result(job: GradeJob, message: str, *, duration_s: float = 0.0) -> SubmissionResult:
    """The result of a submission the grader itself could not finish: every item zero, status
    ``error``, and ``message`` saying what happened (the coordinator uses it for lost workers)."""
    reason = "the grader failed on this submission"
    items = [
        item for name in job.config.notebooks for item in missing_items(job.source[name], reason)
    ] + _zero_check_items(job.config, reason)
    return _base_result(job).with_items(
        items, status="error", message=message, duration_s=duration_s
    )


def grade_submission(job: GradeJob) -> SubmissionResult:
    """Grade one submission (steps 1-4); never raises: failures become a status and messages."""
    started = time.monotonic()
    base = _base_result(job)
    if not job.submission.is_dir():
        items = [
            *(
                item
                for name in job.config.notebooks
                for item in missing_items(job.source[name], "nothing was submitted")
            ),
            *_zero_check_items(job.config, "nothing was submitted"),
        ]
        return base.with_items(
            items, status="missing", message=f"no submission folder {job.submission}"
        )
    # A spare kernel this worker started during its last job, if it fits this one.
    spare = prestart.take(lambda folder: _kernel_key(job, folder))
    if spare is not None:
        workdir = spare.workdir
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"autograder-{job.student}-"))
    try:
        return _grade_in(job, workdir, base, started, spare)
    except Exception as exc:  # the batch must go on; the message says what happened
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return failed_result(
            job,
            f"grading failed unexpectedly ({detail}); ask the instructor to look at it",
            duration_s=time.monotonic() - started,
        )
    finally:
        if spare is not None:
            prestart.discard(spare)  # a no-op once the notebook used it; not if it never ran
        shutil.rmtree(workdir, ignore_errors=True)


def _zero_check_items(config: AssignmentConfig, why: str) -> list[ItemResult]:
    return [
        ItemResult(
            id=check.id,
            kind=check.kind,
            score=0.0,
            max_score=check.points,
            passed=False,
            message=why,
            notebook=gradebook.check_notebook_for(check, config),
        )
        for check in config.checks
    ]


def _grade_in(
    job: GradeJob,
    workdir: Path,
    base: SubmissionResult,
    started: float,
    spare: prestart.Spare | None = None,
) -> SubmissionResult:
    from . import checks

    notes: list[str] = []
    statuses: list[tuple[str, str]] = []
    items: list[ItemResult] = []
    outcomes: dict[str, ExecutionOutcome] = {}
    try:
        _prepare_workdir(job, workdir, notes)
        if spare is not None:
            # The spare's sandbox user gets the copy, as a kernel started now would have.
            hand_over_workdir(spare.km)
    except InvalidNotebookError as exc:
        statuses.append(("invalid-notebook", exc.message))
    out_dir = Path(tempfile.mkdtemp(prefix=".autograded-", dir=_ensure(job.autograded.parent)))
    for name in job.config.notebooks if not statuses else ():
        collect = checks.collect_snippets(job.config, name, workdir)
        try:
            nb, outcome, ctx, nb_items = _run_notebook(job, workdir, name, notes, collect, spare)
            spare = None  # a kernel serves one notebook; the next one starts its own
        except InvalidNotebookError as exc:
            statuses.append(("invalid-notebook", exc.message))
            items.extend(missing_items(job.source[name], exc.message))
            continue
        notes.extend(ctx.notes)
        items.extend(nb_items)
        if outcome is not None:
            outcomes[name] = outcome
            statuses.append((outcome.status, outcome.message))
        if nb is not None:
            write_notebook(nb, out_dir / f"{name}.ipynb")
    if statuses and all(s == "invalid-notebook" for s, _ in statuses):
        if not items:
            for name in job.config.notebooks:
                items.extend(missing_items(job.source[name], statuses[0][1]))
        items.extend(_zero_check_items(job.config, statuses[0][1]))
    else:
        items.extend(checks.run_checks(job, workdir, outcomes, out_dir))
    status, message = _worst(statuses)
    _publish(out_dir, job.autograded)
    details: dict[str, Any] = {"notes": notes}
    history = checks.read_history(workdir)
    if history:
        details["history"] = history
    return base.with_items(
        items,
        status=status,
        message=message,
        duration_s=time.monotonic() - started,
        details=details,
    )


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(tmp: Path, final: Path) -> None:
    """Swap the freshly written autograded folder into place (readers never see half)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _worst(statuses: Sequence[tuple[str, str]]) -> tuple[str, str]:
    if not statuses:
        return "graded", ""
    ranked = sorted(statuses, key=lambda s: STATUS_ORDER.index(s[0]) if s[0] in STATUS_ORDER else 0)
    status, message = ranked[0]
    return status, message


# --- the coordinator --------------------------------------------------------------------------


def prestart_pays(workers: int, use_gpu: bool) -> bool:
    """Whether starting the next kernel during a notebook hides time: when a CPU core is left
    over (fewer workers than cores, as by default) or the notebooks mostly wait on GPUs.
    With a worker per core, the spare's start competes with the notebooks for the same
    cores (docs/benchmarks.md: 0.06 s lost per submission on 2 cores, 0.22 s won with one
    worker)."""
    return use_gpu or workers < (os.cpu_count() or 1)


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values read as TOML (``3``, ``true``, ``"data"``), else as text."""
    import tomllib

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


class Progress(Protocol):
    """What a grading run tells whoever watches it (a progress bar, a log)."""

    def planned(self, total: int, skipped: int) -> None:
        """``total`` jobs will run; ``skipped`` submissions are already graded."""

    def started(self, student: str) -> None:
        """A worker began grading ``student``."""

    def finished(self, result: SubmissionResult) -> None:
        """``result`` is recorded in the gradebook."""


class _Unwatched:
    """The default: nobody is watching."""

    def planned(self, total: int, skipped: int) -> None:
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
    from .datasets import folder_name, heldout_meta

    config = load_assignment(course, assignment)
    index = release.source_index(course, config)
    gradebook.register_assignment(course.gradebook_url, config, index)
    assignment_fp = release.fingerprint(index, config)
    root = submissions or course.submitted_root
    known_students = _gradebook_students(course.gradebook_url)
    found, warnings = discover_students(root, assignment, known_students)
    if students:
        found = [s for s in found if s in set(students)] + [s for s in students if s not in found]
    recorded = gradebook.fingerprints(course.gradebook_url, assignment)
    data_dir = None
    if config.dataset:
        heldout_meta(course, config.dataset)  # says how to prepare it when missing
        data_dir = course.data(folder_name(config.dataset))
    heldout = {c.dataset: course.heldout(folder_name(c.dataset)) for c in config.checks}
    for dataset in heldout:
        heldout_meta(course, dataset)
    jobs, skipped = [], []
    for student in found:
        folder = root / student / assignment
        fp = fingerprint_submission(folder, assignment_fp, settings)
        if not force and recorded.get(student) == fp:
            skipped.append(student)
            continue
        jobs.append(
            GradeJob(
                student=student,
                config=config,
                submission=folder,
                autograded=course.autograded(student, assignment),
                source=index,
                assignment_files=course.release(assignment),
                data_dir=data_dir,
                heldout=heldout,
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
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    gpus: Sequence[int] = (),
    per_gpu: int = 1,
    students: Sequence[str] | None = None,
    progress: Progress | None = None,
    prestart: bool | None = None,
) -> GradeReport:
    """Grade every new or changed submission of ``assignment`` and record the results.

    ``prestart``: the local pool's workers start their next kernel while a notebook runs;
    None: when that has a core to run on (see :func:`prestart_pays`)."""
    from .schedule import gpu_slots, run_jobs, warm_up

    settings = settings or GradeSettings()
    use_gpu = gpu_slots(gpus, per_gpu) != [()]
    if prestart is None:
        prestart = prestart_pays(workers, use_gpu)
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
        watcher.planned(len(jobs), len(skipped))

        def record(result: SubmissionResult) -> None:
            gradebook.record(course.gradebook_url, result)
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
        )
    finally:
        warm.close()
    return GradeReport(assignment, tuple(graded), tuple(skipped), tuple(warnings))
