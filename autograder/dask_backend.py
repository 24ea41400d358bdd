"""The ``dask`` backend: grading jobs on a Dask cluster, given by address or started here.

Results come back to the coordinator's process (``as_completed``), which records them, so it
stays the only gradebook writer. Dask is imported only when this backend runs: grading works
without it installed. Recipe for SLURM (dask-jobqueue): ``docs/cluster.md``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError
from .fastimport import WORKER_PRELOAD, start_fork_server
from .job import GradeJob, Record, Started, failed_result
from .pipeline import grade_submission


@dataclasses.dataclass
class WarmStart:
    """What :func:`warm_cluster` started for :func:`run_dask` (through
    :func:`autograder.schedule.warm_up`): this machine's cluster, starting in a thread."""

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


def run_dask(
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
            cluster = local_cluster(max(1, min(workers, len(jobs))), use_gpu)
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


def has_distributed() -> bool:
    return importlib.util.find_spec("distributed") is not None


def local_cluster(n_workers: int, use_gpu: bool) -> Any:
    """This machine's Dask cluster: ``n_workers`` processes of one thread, forked from the
    fork server with Dask and the grading code imported (see ``fastimport.pool_context``)."""
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


def warm_cluster(workers: int, use_gpu: bool) -> WarmStart:
    """Start this machine's cluster in a background thread, while the coordinator reads the
    submissions (when Dask is installed; otherwise :func:`run_dask` says what to install)."""
    if workers < 1 or not has_distributed():
        return WarmStart()
    start_fork_server(with_dask=True)
    starter = cf.ThreadPoolExecutor(1, thread_name_prefix="autograder-dask-start")
    future = starter.submit(local_cluster, workers, use_gpu)
    starter.shutdown(wait=False)
    return WarmStart(future, (workers, use_gpu))
