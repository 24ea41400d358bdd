"""Running grading jobs: backends chosen by name, GPUs handed out per job.

A backend takes the list of jobs and a ``record`` callback; it calls ``record`` in the
coordinator's process, once per finished job, as results arrive, so the coordinator stays the
only gradebook writer whatever runs the jobs. ``inline`` runs them in this process (debugging,
tests); ``local`` in a pool of worker processes (here); ``dask`` on a Dask cluster
(:mod:`autograder.dask_backend`). Only the ``dask`` backend imports Dask, and only when it
runs: grading works without it installed.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .dask_backend import WarmStart, run_dask, warm_cluster
from .errors import ConfigError
from .fastimport import pool_context, start_fork_server, start_worker
from .job import GradeJob, Record, Started, failed_result
from .pipeline import grade_submission
from .results import SubmissionResult


def _nothing(student: str) -> None:
    """Default start hook: nobody is watching."""


def detect_gpus() -> list[int]:
    """Indices of the NVIDIA GPUs of this machine (none when there is no driver)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
            return [int(m) for m in re.findall(r"^GPU (\d+):", out, re.MULTILINE)]
        except (OSError, subprocess.SubprocessError):
            pass
    return sorted(int(p.name[6:]) for p in Path("/dev").glob("nvidia[0-9]*"))


def parse_gpus(text: str) -> list[int]:
    """``none``, ``all`` or a list like ``0,1`` -> GPU indices; ``all`` on a machine without
    GPUs means none (the CPU is used, with the same results)."""
    text = text.strip().lower()
    if text in {"", "none", "cpu"}:
        return []
    if text == "all":
        return detect_gpus()
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--gpus {text!r}: write a list like 0,1, or 'all', or 'none'") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {text!r}: GPU numbers must be distinct and not negative")
    return gpus


#: Kernels sharing each GPU unless told otherwise (``--per-gpu``).
DEFAULT_PER_GPU = 1


def default_workers(gpus: Sequence[int], per_gpu: int | None = None) -> int:
    """One kernel per GPU slot; without GPUs, one per two CPU cores (at least one)."""
    if gpus:
        return len(gpus) * max(1, DEFAULT_PER_GPU if per_gpu is None else per_gpu)
    return max(1, (os.cpu_count() or 2) // 2)


def gpu_slots(gpus: Sequence[int], per_gpu: int) -> list[tuple[int, ...]]:
    """One slot per kernel that may run at once: each GPU ``per_gpu`` times, or one CPU slot."""
    if per_gpu < 1:
        raise ConfigError(f"--per-gpu must be at least 1, got {per_gpu}")
    return [(g,) for g in gpus for _ in range(per_gpu)] or [()]


def _run_inline(
    jobs: Sequence,
    *,
    record: Record,
    started: Started,
    workers: int,
    slots: list[tuple[int, ...]],
    scheduler: str | None,
    warm: WarmStart,
    prestart: bool = False,
) -> None:
    for job in jobs:
        started(job.student)
        record(grade_submission(dataclasses.replace(job, gpus=slots[0])))


LOST_WORKER = (
    "the grading worker process was killed while grading this submission (twice: the system "
    "stops processes that use too much memory); grade it again alone with "
    "`autograder grade {assignment} --student {student} --workers 1`"
)


def _run_local(
    jobs: Sequence,
    *,
    record: Record,
    started: Started,
    workers: int,
    slots: list[tuple[int, ...]],
    scheduler: str | None,
    warm: WarmStart,
    prestart: bool = False,
) -> None:
    if not jobs:
        return
    workers = max(1, min(workers, len(jobs)))
    # Kernels share GPUs by slot; with fewer slots than workers, slots are reused round-robin.
    free = [slots[i % len(slots)] for i in range(workers)]
    pending: list[tuple[GradeJob, int]] = [(job, 0) for job in jobs]
    suspects: list[tuple[GradeJob, int]] = []
    # A worker killed from outside (the OOM killer, a segfault in a native library) breaks the
    # whole pool and fails every job in flight, the innocent with the guilty. Those jobs are
    # suspects: after the others, each runs again alone, so a second break names its cause,
    # which is recorded as failed; the others are graded normally.
    # _local_pool takes jobs from the front of the list; what it never started stays there.
    while pending:
        for job, attempts in _local_pool(pending, free, workers, record, started, prestart):
            suspects.append((job, attempts + 1))
    while suspects:
        for job, _attempts in _local_pool(suspects, free[:1], 1, record, started, False):
            message = LOST_WORKER.format(assignment=job.config.name, student=job.student)
            record(failed_result(job, message))


def warm_up(
    backend: str, *, workers: int = 1, scheduler: str | None = None, use_gpu: bool = False
) -> WarmStart:
    """Start, in the background, what ``backend`` needs before the jobs are known, while the
    coordinator reads the submissions: the local pool's fork server (importing the grading
    code), or this machine's Dask cluster (its workers importing it). Close what it returns."""
    if backend == "local":
        start_fork_server()
    elif backend == "dask" and not scheduler:
        return warm_cluster(workers, use_gpu)
    return WarmStart()


def _local_pool(
    pending: list[tuple[GradeJob, int]],
    free: list[tuple[int, ...]],
    workers: int,
    record: Record,
    started: Started,
    prestart: bool,
) -> list[tuple[GradeJob, int]]:
    """Run jobs in one pool until done or the pool breaks; return the jobs lost with it.

    With ``prestart``, a job that has others after it starts its worker's next kernel while
    it runs (``autograder.prestart``): the pool's workers run jobs on their main thread."""
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(),
        initializer=start_worker,
        initargs=(dict(os.environ), os.getpid()),
    )
    running: dict[cf.Future[SubmissionResult], tuple[tuple[int, ...], GradeJob, int]] = {}
    try:
        while pending or running:
            while pending and free:
                slot = free.pop()
                job, attempts = pending.pop(0)
                job = dataclasses.replace(job, gpus=slot, prestart=prestart and bool(pending))
                running[pool.submit(grade_submission, job)] = (slot, job, attempts)
                started(job.student)
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                slot, job, attempts = running.pop(future)
                free.append(slot)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    lost = [(job, attempts)]
                    for other_slot, other_job, other_attempts in running.values():
                        free.append(other_slot)
                        lost.append((other_job, other_attempts))
                    running.clear()
                    _stop(pool)
                    return lost
                record(result)
    except BaseException:
        # Ctrl-C or a failed record: what finished is already recorded; drop the rest.
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    return []


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what waits, kill the workers still grading (an interrupted batch
    must not leave them running; their kernels exit with them)."""
    processes = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        if process.is_alive():
            process.kill()


BACKENDS: dict[str, Callable[..., None]] = {
    "inline": _run_inline,
    "local": _run_local,
    "dask": run_dask,
}


def get_backend(name: str) -> Callable[..., None]:
    """The backend called ``name``; ConfigError lists the valid names."""
    if name not in BACKENDS:
        raise ConfigError(f"no backend named {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def check_backend(backend: str, workers: int) -> None:
    """Raise ConfigError, naming the valid choices, for an unknown backend or worker count."""
    get_backend(backend)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def prestart_pays(workers: int, use_gpu: bool) -> bool:
    """Whether starting the next kernel, and the evaluator, during a notebook hides time:
    when a CPU core is left over (fewer workers than cores, as by default) or the notebooks
    mostly wait on GPUs. With a worker per core, the spare's start competes with the
    notebooks for the same cores (docs/benchmarks.md: 0.06 s lost per submission on 2 cores,
    0.22 s won with one worker); the evaluator's, on the real exercise with 2 workers on 2
    cores, won nothing measurable for 1.1 GB more memory, and 2.6 s per submission with one
    worker (same file)."""
    return use_gpu or workers < (os.cpu_count() or 1)


def run_jobs(
    jobs: Sequence,
    *,
    record: Record,
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    gpus: Sequence[int] = (),
    per_gpu: int = 1,
    started: Started = _nothing,
    warm: WarmStart | None = None,
    prestart: bool = False,
    prestart_evaluator: bool = False,
) -> None:
    """Run ``jobs`` on the named backend, calling ``record`` for each result as it arrives
    (and ``started`` with the student's name as each job begins); ``warm`` is what
    :func:`warm_up` started for it (the caller closes it). ``prestart``: the local backend's
    workers start their next kernel while a notebook runs (the other backends have no next
    kernel: their jobs run on changing threads). ``prestart_evaluator``: each job starts its
    held-out evaluators while its notebook runs (the service's jobs too: see dispatch)."""
    check_backend(backend, workers)
    if prestart_evaluator:
        jobs = [dataclasses.replace(job, prestart_evaluator=True) for job in jobs]
    get_backend(backend)(
        jobs,
        record=record,
        started=started,
        workers=workers,
        slots=gpu_slots(gpus, per_gpu),
        scheduler=scheduler,
        warm=warm or WarmStart(),
        prestart=prestart,
    )
