"""The worker: one submission through the grading stages, in the order they run.

:func:`grade_submission` takes a :class:`~autograder.job.GradeJob` and returns a plain
:class:`~autograder.results.SubmissionResult`, never raising, so one broken submission never
stops a batch. It runs unchanged in the coordinator (``inline``), a local pool or on a Dask
worker. The stages are :data:`STAGES`, each a function of the :class:`Work` in progress:

1. :func:`prepare`: copy the notebooks (and the files the assignment names) into a fresh
   work folder, with the released files;
2. :func:`sanitize_notebooks`: find each notebook, restore its locked and graded cells from
   the source (DESIGN.md's step 1);
3. :func:`execute_notebooks`: run each one in its sandboxed kernel; the collection snippets
   (save the model, the training history) run in the same kernel after its last cell;
4. :func:`collect`: what the kernels left: executed notebooks, test-cell scores, history;
5. :func:`check`: the held-out accuracy and CSV checks, outside the kernel;
6. :func:`publish`: the executed notebooks swapped into ``autograded/``, the result built.

A submission that cannot be read stops at the stage that finds out (its items then score
zero with the reason); the later stages see it and do only what is left to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from . import checks, prestart
from .errors import InvalidNotebookError
from .execute import ExecutionOutcome, execute_notebook, hand_over_workdir, kernel_env
from .handin import scored_files, take_submission
from .job import (
    MAX_SUBMISSION_BYTES,
    MAX_SUBMISSION_FILES,
    SKIPPED_DIRS,
    GradeJob,
    base_result,
    failed_result,
    missing_result,
    zero_items,
)
from .notebooks import read_notebook, write_notebook
from .policy import kernel_factory, kernel_key, new_workdir, spare_kernel
from .quota import remove_workdir
from .redact import hidden_from, redact_checks, redact_tests
from .results import ItemResult, SubmissionResult
from .sanitize import SanitizeContext, released_cells, sanitize
from .scoring import missing_items, score_notebook

#: Worse statuses win when a submission's notebooks end differently.
STATUS_ORDER = (
    "sandbox-error", "invalid-notebook", "kernel-died", "disk", "memory", "timeout", "graded"
)  # fmt: skip


@dataclasses.dataclass
class NotebookRun:
    """One notebook of the submission on its way through the stages."""

    name: str
    #: The sanitized notebook, executed in place by :func:`execute_notebooks`.
    nb: NotebookNode | None = None
    ctx: SanitizeContext | None = None
    outcome: ExecutionOutcome | None = None
    #: ``invalid-notebook`` and why, when the notebook could not be graded at all.
    invalid: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    items: list[ItemResult] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Work:
    """A submission in progress: what each stage reads and adds to."""

    job: GradeJob
    workdir: Path
    started: float
    #: A kernel this worker started during its last job, for this job's first notebook.
    spare: prestart.Spare | None = None
    #: Evaluators started for this job's checks while its notebooks run.
    evaluators: prestart.Evaluators = dataclasses.field(default_factory=prestart.Evaluators)
    #: Where the executed notebooks are written, swapped into place by :func:`publish`.
    out_dir: Path | None = None
    #: Why the submission folder could not be used at all ("" when it could).
    unusable: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    runs: list[NotebookRun] = dataclasses.field(default_factory=list)
    items: list[ItemResult] = dataclasses.field(default_factory=list)
    history: dict[str, list[float]] | None = None
    #: What the instructor should look at (a notebook that changed how IPython runs code).
    flags: list[str] = dataclasses.field(default_factory=list)
    #: Files handed in under a name a check scores: validated and reported, never scored.
    handed_in: dict[str, Path] = dataclasses.field(default_factory=dict)
    result: SubmissionResult | None = None

    def statuses(self) -> list[tuple[str, str]]:
        """How each part ended, in order: the folder, then each notebook."""
        out = [("invalid-notebook", self.unusable)] if self.unusable else []
        for run in self.runs:
            if run.invalid:
                out.append(("invalid-notebook", run.invalid))
            elif run.outcome is not None:
                out.append((run.outcome.status, run.outcome.message))
        return out


# --- the stages, in order ---------------------------------------------------------------------


def prepare(work: Work) -> None:
    """Copy the notebooks and the files the assignment names into the work folder, with the
    released files over them (as nbgrader does) and an empty outbox; make the folder the
    executed notebooks go to."""
    job = work.job
    work.out_dir = Path(tempfile.mkdtemp(prefix=".autograded-", dir=_ensure(job.autograded.parent)))
    try:
        work.handed_in = _fill_workdir(job, work.workdir, work.notes)
        if work.spare is not None:
            # The spare's sandbox user gets the copy, as a kernel started now would have.
            hand_over_workdir(work.spare.km)
    except InvalidNotebookError as exc:
        work.unusable = exc.message
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        work.unusable = (
            f"the submission does not fit in the {job.config.execute.disk_limit} its work "
            "folder may hold; hand in only the notebook and the files it needs"
        )


def _released_cells(path: Path) -> dict[str, tuple[str, Any]]:
    """The graded cells of the released notebook (the instructor's, so trusted), if any."""
    try:
        return released_cells(nbformat.read(path, as_version=4))
    except Exception:  # no release (a course graded with --allow-stale), or unreadable
        return {}


def _of_another_assignment(ctx: SanitizeContext, graded: int) -> bool:
    """More graded cells foreign than this assignment's, and at least half of its missing."""
    present = graded - len(ctx.missing)
    return bool(ctx.unknown) and len(ctx.unknown) > present and 2 * len(ctx.missing) >= graded


def _names(ids: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def sanitize_notebooks(work: Work) -> None:
    """Find each notebook of the assignment in the work folder and restore its locked and
    graded cells from the source; a notebook that is not one of this assignment's is
    marked invalid, its cells scoring zero with the reason."""
    if work.unusable:
        return
    job = work.job
    single = len(job.config.notebooks) == 1
    for name in job.config.notebooks:
        run = NotebookRun(name)
        work.runs.append(run)
        source = job.source[name]
        run.ctx = SanitizeContext(
            source=source,
            parameters=job.settings.parameters_for(job.config),
            released=_released_cells(job.assignment_files / f"{name}.ipynb"),
        )
        try:
            path = _find_notebook(work.workdir, name, single, run.notes, job.submission)
            run.nb = sanitize(read_notebook(path), run.ctx)
            if source.grade_cells and len(run.ctx.missing) == len(source.grade_cells):
                raise InvalidNotebookError(
                    f"{path.name} has none of this assignment's graded cells: it looks like a "
                    f"notebook of another assignment; submit your copy of the released "
                    f"{name}.ipynb"
                )
            if _of_another_assignment(run.ctx, len(source.grade_cells)):
                # Some grade ids may collide (two assignments with a 'test_training'), but
                # most are foreign: grading it would fail this assignment's tests on another
                # one's code, with no word of why.
                raise InvalidNotebookError(
                    f"{path.name} looks like a notebook of another assignment: its graded cells "
                    f"{_names(run.ctx.unknown)} are not this assignment's, and "
                    f"{_names(run.ctx.missing)} of this one are missing; submit your copy of "
                    f"the released {name}.ipynb"
                )
        except InvalidNotebookError as exc:
            run.nb, run.invalid = None, exc.message
            run.items = missing_items(source, exc.message)


def execute_notebooks(work: Work) -> None:
    """Run each sanitized notebook in a kernel of its own (the spare kernel for the first),
    then, in the same kernel, the snippets that save what the checks need."""
    job = work.job
    for run in work.runs:
        if run.nb is None:
            continue
        spare, work.spare = work.spare, None  # a kernel serves one notebook
        run.outcome = execute_notebook(
            run.nb,
            workdir=work.workdir,
            limits=job.settings.limits(job.config),
            kernel_factory=kernel_factory(job, work.workdir),
            env=kernel_env(work.workdir, gpus=job.gpus),
            collect=checks.collect_snippets(job.config, run.name, work.workdir),
            km=spare.km if spare is not None else None,
            on_ready=_start_ahead(work, run.name),
            runner=prestart.run if job.prestart or spare else asyncio.run,
        )


def collect(work: Work) -> None:
    """What the kernels left: each executed notebook (written for ``autograded/``), its
    test cells scored as nbgrader scores them, and the training history, if kept."""
    assert work.out_dir is not None
    job = work.job
    starts = _hidden_from(work)
    for run, start in zip(work.runs, starts, strict=True):
        work.notes.extend(run.notes)
        if run.outcome is not None and run.ctx is not None:
            work.notes.extend(run.outcome.notes)
            items = score_notebook(run.outcome.nb, job.source[run.name], run.ctx, run.outcome)
            # Once hidden tests reached a kernel, its failures are told in the grader's words.
            run.items = redact_tests(items, run.outcome.nb, start)
            changed = sorted({w for words in run.outcome.tampered.values() for w in words})
            if changed:
                work.flags.append(
                    f"{run.name}.ipynb changed how IPython runs code ({', '.join(changed)}); "
                    f"the {len(run.outcome.tampered)} test(s) that ran after it score 0"
                )
            work.notes.extend(run.ctx.notes)
            write_notebook(run.outcome.nb, work.out_dir / f"{run.name}.ipynb")
        work.items.extend(run.items)
    work.history = checks.read_history(work.workdir)


def check(work: Work) -> None:
    """The assignment's checks (held-out accuracy, CSV), judged outside the kernel; when no
    notebook could be run at all, every check scores zero with the reason."""
    assert work.out_dir is not None
    statuses = work.statuses()
    if statuses and all(status == "invalid-notebook" for status, _ in statuses):
        why = statuses[0][1]
        found = zero_items(work.job, why, tests=not work.items)
    else:
        outcomes = {run.name: run.outcome for run in work.runs if run.outcome is not None}
        found = checks.run_checks(work.job, work.workdir, outcomes, work.out_dir, work.evaluators)
        if any(start is not None for start in _hidden_from(work)):
            # The checks read what the notebook left after its hidden tests ran: their
            # messages keep the grader's words and numbers only.
            known = [o.message for o in outcomes.values() if o.message]
            found = redact_checks(found, work.job.config, known=known)
    if work.handed_in:
        found = checks.report_handed_in(work.job, found, work.handed_in, work.notes)
    work.items.extend(found)


def publish(work: Work) -> None:
    """Swap the new ``autograded/`` folder into place (readers never see half of it) and
    build the result: the worst status of the notebooks, every item, the notes."""
    assert work.out_dir is not None
    _swap(work.out_dir, work.job.autograded)
    work.out_dir = None
    status, message = _worst(work.statuses())
    details: dict[str, Any] = {"notes": work.notes}
    if work.history:
        details["history"] = work.history
    if work.flags:
        details["flags"] = work.flags
    work.result = base_result(work.job).with_items(
        work.items,
        status=status,
        message=message,
        duration_s=time.monotonic() - work.started,
        details=details,
    )


#: The stages of grading one submission, in the order they run.
STAGES: tuple[Callable[[Work], None], ...] = (
    prepare,
    sanitize_notebooks,
    execute_notebooks,
    collect,
    check,
    publish,
)


def grade_submission(job: GradeJob) -> SubmissionResult:
    """Grade one submission through :data:`STAGES`; never raises: failures become a status
    and messages."""
    started = time.monotonic()
    if not job.submission.is_dir():
        return missing_result(job)
    # A spare kernel this worker started during its last job, if it fits this one.
    spare = prestart.take(lambda folder: kernel_key(job, folder))
    workdir = spare.workdir if spare else new_workdir(job, f"autograder-{job.student}-")
    work = Work(job=job, workdir=workdir, started=started, spare=spare)
    try:
        for stage in STAGES:
            stage(work)
        assert work.result is not None
        return work.result
    except Exception as exc:  # the batch must go on; the message says what happened
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return failed_result(
            job,
            f"grading failed unexpectedly ({detail}); ask the instructor to look at it",
            duration_s=time.monotonic() - started,
        )
    finally:
        work.evaluators.close()  # those no check took
        if spare is not None:
            prestart.discard(spare)  # a no-op once the notebook used it; not if it never ran
        remove_workdir(workdir)
        if work.out_dir is not None:  # not published: the old autograded/ stays as it was
            shutil.rmtree(work.out_dir, ignore_errors=True)


# --- helpers ----------------------------------------------------------------------------------


def _hidden_from(work: Work) -> list[int | None]:
    """Per notebook run, the cell from which hidden tests were in reach of its code."""
    return hidden_from(run.outcome.nb if run.outcome is not None else None for run in work.runs)


def _fill_workdir(job: GradeJob, workdir: Path, notes: list[str]) -> dict[str, Path]:
    """The notebooks and the named files of the submission, the released files over them
    (as nbgrader does), the released data and an empty outbox; returns the files handed in
    under a name a check scores (validated, never scored: the notebook must write them)."""
    # The released data replaces a submitted data/ (the sandbox mounts it read-only at ./data,
    # whose mount point may be there already: a prestarted kernel's sandbox made it).
    skip = frozenset({"data"}) if job.data_dir is not None else frozenset()
    outputs = scored_files(job.config.checks)
    released = []
    if job.assignment_files.is_dir():
        for path in sorted(job.assignment_files.rglob("*")):
            rel = path.relative_to(job.assignment_files)
            if path.is_file() and path.suffix != ".ipynb" and rel.parts[0] not in skip:
                released.append(rel)
    taken = take_submission(
        job.submission,
        workdir,
        notebooks=job.config.notebooks,
        files=job.config.submission.files,
        outputs=outputs,
        released=[rel.as_posix() for rel in released],
        skip_data=bool(skip),
        skipped_dirs=SKIPPED_DIRS,
        max_files=MAX_SUBMISSION_FILES,
        max_bytes=MAX_SUBMISSION_BYTES,
    )
    notes.extend(taken.notes)
    for rel in released:
        if rel.as_posix() in outputs:
            continue  # what a check scores is what the notebook writes, even the instructor's
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(job.assignment_files / rel, target)
    if job.data_dir is not None:
        submitted = job.submission / "data"
        if submitted.exists() and not submitted.is_symlink():
            notes.append("the submitted data/ folder was replaced by the released data")
        if not job.settings.sandbox:
            # The sandbox mounts the data read-only; without it, a copy keeps the course safe.
            shutil.copytree(job.data_dir, workdir / "data")
    (workdir / "outbox").mkdir(exist_ok=True)
    return taken.handed_in


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
    # Only the assignment's notebooks are copied: name the ones handed in.
    found = sorted(p.name for p in submission.glob("*.ipynb") if not p.name.startswith("."))
    listing = f" (the submission has {', '.join(found)})" if found else ""
    raise InvalidNotebookError(f"{name}.ipynb was not submitted{listing}")


def _start_ahead(work: Work, notebook: str) -> Callable[[], Any] | None:
    """Once a notebook's kernel answers, while it runs: start the evaluators of its checks
    (``prestart_evaluator``), and the kernel of this worker's next job (``prestart``)."""
    job = work.job
    if not (job.prestart or job.prestart_evaluator):
        return None

    async def start() -> None:
        if job.prestart_evaluator:
            checks.start_evaluators(job, notebook, work.evaluators)
        if job.prestart:
            await prestart.start_spare(
                lambda workdir: spare_kernel(job, workdir),
                job.config.execute.prestart_imports,
                new_folder=lambda: new_workdir(job, "autograder-next-"),
            )

    return start


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _swap(tmp: Path, final: Path) -> None:
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
    return ranked[0]
