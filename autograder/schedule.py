"""Running grading jobs: backends chosen by name, GPUs handed out per job.

A backend takes the list of jobs and a ``record`` callback; it calls ``record`` in the
coordinator's process, once per finished job, as results arrive, so the coordinator stays the
only gradebook writer whatever runs the jobs. ``inline`` runs them in this process (debugging,
tests); ``local`` in a pool of worker processes; ``dask`` on a Dask cluster (a scheduler
given by address, or a cluster of worker processes on this machine). Only the ``dask``
backend imports Dask, and only when it runs: grading works without it installed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import importlib.util
import logging
import multiprocessing
import multiprocessing.context
import os
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .results import SubmissionResult

if TYPE_CHECKING:
    from .grade import GradeJob

Record = Callable[[SubmissionResult], None]
Started = Callable[[str], None]


def _nothing(student: str) -> None:
    """Default start hook: nobody is watching."""


def detect_gpus() -> list[int]:
    """Indices of the NVIDIA GPUs of this machine (none when there is no driver)."""
    import re
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
            return [int(m) for m in re.findall(r"^GPU (\d+):", out, re.MULTILINE)]
        except (OSError, subprocess.SubprocessError):
            pass
    from pathlib import Path

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


def default_workers(gpus: Sequence[int], per_gpu: int = 1) -> int:
    """One kernel per GPU slot; without GPUs, one per two CPU cores (at least one)."""
    import os

    if gpus:
        return len(gpus) * max(1, per_gpu)
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
    from .grade import grade_submission

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
    from .grade import failed_result

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


#: Modules the local pool's fork server imports once, before any worker forks from it.
WORKER_PRELOAD = ["autograder.workerboot"]


def pool_context(*, with_dask: bool = False) -> multiprocessing.context.BaseContext:
    """The start method of grading worker processes: 'forkserver', preloaded with the grading
    code (and Dask's worker, ``with_dask``). Workers start clean (forked from a fresh
    interpreter, with no copy of the coordinator's database handles or threads) and fast
    (nbgrader and nbclient already imported). The fork server is one per process: the
    preload of the first start stays."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload((["distributed"] if with_dask else []) + WORKER_PRELOAD)
    return ctx


def start_fork_server(*, with_dask: bool = False) -> None:
    """Start the fork server now; it imports its preload in the background."""
    pool_context(with_dask=with_dask)
    from multiprocessing import forkserver

    forkserver.ensure_running()


@dataclasses.dataclass
class WarmStart:
    """What :func:`warm_up` started for :func:`run_jobs`: on the dask backend without a
    scheduler address, this machine's cluster, starting in a thread."""

    cluster: cf.Future[Any] | None = None
    #: (workers, GPU resources) the cluster was started for.
    shape: tuple[int, bool] = (0, False)
    taken: bool = False

    def take_cluster(self, workers: int, use_gpu: bool) -> Any:
        """The cluster, once started, if it has this shape; None otherwise (or if it failed to
        start: the caller starts one itself and reports what goes wrong)."""
        if self.cluster is None or self.shape != (workers, use_gpu):
            return None
        try:
            cluster = self.cluster.result()
        except Exception:
            return None
        self.taken = True
        return cluster

    def close(self) -> None:
        """Close a cluster nobody took (no jobs, or the run stopped before them)."""
        if self.cluster is not None and not self.taken:
            with contextlib.suppress(Exception):
                self.cluster.result().close()
            self.taken = True


def warm_up(
    backend: str, *, workers: int = 1, scheduler: str | None = None, use_gpu: bool = False
) -> WarmStart:
    """Start, in the background, what ``backend`` needs before the jobs are known, while the
    coordinator reads the submissions: the local pool's fork server (importing the grading
    code), or this machine's Dask cluster (its workers importing it). Close what it returns."""
    if backend == "local":
        start_fork_server()
    elif backend == "dask" and not scheduler and workers >= 1 and _has_distributed():
        start_fork_server(with_dask=True)
        starter = cf.ThreadPoolExecutor(1, thread_name_prefix="autograder-dask-start")
        future = starter.submit(_local_cluster, workers, use_gpu)
        starter.shutdown(wait=False)
        return WarmStart(future, (workers, use_gpu))
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
    from .fastimport import start_worker
    from .grade import grade_submission

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


# --- dask -------------------------------------------------------------------------------------

#: Seconds to wait for a Dask scheduler given by address before saying it is unreachable.
DASK_CONNECT_TIMEOUT_S = 20.0
ALLOWED_FAILURES = "distributed.scheduler.allowed-failures"
#: Tries of a job on a cluster this backend starts (Dask's allowed-failures + 1); a scheduler
#: given by address uses its own ``distributed.scheduler.allowed-failures`` (3 by default).
DASK_LOCAL_TRIES = 2

DASK_MISSING = (
    "the dask backend needs Dask's distributed scheduler, which is not installed here: run "
    "pip install 'workshop-autograder[dask]' (or use --backend local)"
)
DASK_UNREACHABLE = (
    "no Dask scheduler answered at {address} within {seconds:g} s; check the address and that "
    "a scheduler runs there (`dask scheduler`, or the SLURMCluster of docs/cluster.md), or leave "
    "out --scheduler to start a cluster on this machine"
)
LOST_DASK_WORKER = (
    "the Dask worker grading this submission died each time it tried ({tries} tries: the "
    "system stops processes that use too much memory, or the worker's machine went away); "
    "grade it again alone with `autograder grade {assignment} --student {student} --workers 1`"
)
DASK_FAILED = (
    "the Dask cluster could not run this grading job ({detail}); grade it again with "
    "`autograder grade {assignment} --student {student}`"
)


def _run_dask(
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
    """Grade on a Dask cluster: ``grade_submission`` runs on its workers, results come back
    here (``as_completed``) and are recorded in this process.

    With ``scheduler`` (an address like ``tcp://10.0.0.5:8786``) the jobs go to that cluster;
    without, a cluster of ``workers`` worker processes (one thread each) starts on this
    machine and stops at the end. Workers need this package installed (the job names its
    function by import path).

    GPUs are Dask worker resources: with ``--gpus``, every job asks for ``GPU=1``, so it only
    runs on workers that declare one, one job per declared GPU at a time. Start one worker per
    GPU, pinned to it, e.g. ``CUDA_VISIBLE_DEVICES=0 dask worker ADDR --nthreads 1 --resources
    GPU=1``; the kernel gets the worker's ``CUDA_VISIBLE_DEVICES``. For several kernels on one
    GPU, start several such workers pinned to it. On this machine's own cluster each worker
    declares ``GPU=1`` and gets the GPU slot of its number (``--per-gpu`` workers per GPU).

    A job whose worker dies is tried again on another (Dask's ``allowed-failures``); when it
    has killed its workers every time, it is recorded as an ``error`` with a message saying so,
    and the rest of the class goes on. Ctrl-C cancels what has not finished and closes the
    client (and the cluster this backend started).
    """
    from .grade import failed_result

    if not jobs:
        return
    try:
        import dask
        from distributed import Client, KilledWorker, as_completed
    except ImportError:
        raise ConfigError(DASK_MISSING) from None

    use_gpu = slots != [()]
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                DASK_UNREACHABLE.format(address=scheduler, seconds=DASK_CONNECT_TIMEOUT_S)
            ) from exc
        except ValueError as exc:  # not an address at all
            raise ConfigError(
                f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); write it "
                "like tcp://HOST:8786"
            ) from None
        tries = _scheduler_tries(client, default=dask.config.get(ALLOWED_FAILURES) + 1)
    else:
        tries = DASK_LOCAL_TRIES
        cluster = warm.take_cluster(workers, use_gpu)
        if cluster is None:
            cluster = _local_cluster(max(1, min(workers, len(jobs))), use_gpu)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise

    pending = list(jobs)
    running: dict[Any, GradeJob] = {}
    flow = as_completed(loop=client.loop)
    submitted = 0

    def submit_next() -> None:
        nonlocal submitted
        # The coordinator's round-robin slot; on the worker it becomes that worker's GPU.
        job = dataclasses.replace(pending.pop(0), gpus=slots[submitted % len(slots)])
        submitted += 1
        future = client.submit(
            _grade_on_dask_worker,
            job,
            slots=slots if cluster is not None else None,
            key=f"grade-{job.student}-{job.fingerprint[:12]}-{submitted}",
            resources={"GPU": 1} if use_gpu else None,
            pure=False,
        )
        running[future] = job
        flow.add(future)
        started(job.student)

    try:
        # A window as wide as the cluster, refilled as jobs finish: ``started`` then means a
        # job is running, and the queue stays in this process, in order.
        threads = sum(client.nthreads().values())
        for _ in range(min(len(pending), max(workers, threads))):
            submit_next()
        for future in flow:
            job = running.pop(future)
            try:
                result = future.result()
            except KilledWorker:
                message = LOST_DASK_WORKER.format(
                    tries=tries, assignment=job.config.name, student=job.student
                )
                result = failed_result(job, message)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"[:500]
                message = DASK_FAILED.format(
                    detail=detail, assignment=job.config.name, student=job.student
                )
                result = failed_result(job, message)
            record(result)
            if pending:
                submit_next()
    except BaseException:
        # Ctrl-C or a failed record: what finished is recorded; cancel the rest. A task
        # already running on a remote worker finishes there (Dask cannot stop a running
        # task), but its result is dropped; the cluster started here is closed, with its
        # workers and their kernels.
        client.cancel(list(running))
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


#: Dask's own monitoring, off or slowed on this machine's cluster: its statistical profiler
#: samples every worker 100 times a second and its system monitor twice, CPU taken from the
#: kernels (``docs/benchmarks.md``). Dask passes these to the worker processes.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
}


def _has_distributed() -> bool:
    return importlib.util.find_spec("distributed") is not None


def _local_cluster(n_workers: int, use_gpu: bool) -> Any:
    """This machine's Dask cluster: ``n_workers`` processes of one thread, forked from the
    fork server with Dask and the grading code imported (see :func:`pool_context`)."""
    import dask
    from distributed import LocalCluster

    start_fork_server(with_dask=True)
    config = {
        ALLOWED_FAILURES: DASK_LOCAL_TRIES - 1,
        "distributed.worker.multiprocessing-method": "forkserver",
        **QUIET_WORKERS,
    }
    with dask.config.set(config):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            # The sandbox limits each kernel's memory; Dask's own limit would count the
            # worker process only and restart it for what its kernel does.
            memory_limit=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            preload=WORKER_PRELOAD,
            resources={"GPU": 1} if use_gpu else None,
            # The coordinator's environment now, not the fork server's of its start.
            env=dict(os.environ),
        )


def _scheduler_tries(client: Any, *, default: int) -> int:
    """How many times the scheduler at the other end runs a job whose workers die (its
    allowed-failures + 1); ``default`` when it will not say."""
    try:
        # A lambda travels by value: the scheduler need not have this package installed.
        failures = client.run_on_scheduler(
            lambda: __import__("dask").config.get("distributed.scheduler.allowed-failures")
        )
        return int(failures) + 1
    except Exception:
        return int(default)


def _grade_on_dask_worker(job: GradeJob, *, slots: list[tuple[int, ...]] | None) -> Any:
    """Runs on a Dask worker: the job gets this worker's GPU (see :func:`worker_gpus`)."""
    import os

    from .grade import grade_submission

    if job.gpus:
        from distributed import get_worker

        gpus = worker_gpus(
            name=get_worker().name,
            visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
            slots=slots,
            assigned=job.gpus,
        )
        job = dataclasses.replace(job, gpus=gpus)
    return grade_submission(job)


def worker_gpus(
    *,
    name: object,
    visible: str | None,
    slots: Sequence[tuple[int, ...]] | None,
    assigned: tuple[int, ...],
) -> tuple[int, ...]:
    """The GPUs a job gets on a Dask worker: on this machine's own cluster (``slots`` given),
    the slot of the worker's number; on a cluster given by address, the worker's own
    ``CUDA_VISIBLE_DEVICES`` (how a worker is pinned to its GPU); else the coordinator's
    round-robin guess ``assigned``."""
    if slots is not None and isinstance(name, int):
        return slots[name % len(slots)]
    if visible and visible.strip():
        parts = [p.strip() for p in visible.split(",") if p.strip()]
        if parts and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    return assigned


BACKENDS: dict[str, Callable[..., None]] = {
    "inline": _run_inline,
    "local": _run_local,
    "dask": _run_dask,
}


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
) -> None:
    """Run ``jobs`` on the named backend, calling ``record`` for each result as it arrives
    (and ``started`` with the student's name as each job begins); ``warm`` is what
    :func:`warm_up` started for it (the caller closes it). ``prestart``: the local backend's
    workers start their next kernel while a notebook runs (the others ignore it)."""
    if backend not in BACKENDS:
        raise ConfigError(f"no backend named {backend!r}; choose one of {', '.join(BACKENDS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    BACKENDS[backend](
        jobs,
        record=record,
        started=started,
        workers=workers,
        slots=gpu_slots(gpus, per_gpu),
        scheduler=scheduler,
        warm=warm or WarmStart(),
        prestart=prestart,
    )
