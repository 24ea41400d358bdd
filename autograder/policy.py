"""From a grading job to its sandbox: the policy, the kernel factory, the evaluator's wrapper.

:mod:`autograder.sandbox` is the bubblewrap mechanism and knows nothing of jobs; this module
decides what one job's processes get: its memory and process limits, its GPUs, its released
data read-only at ``./data``. Without the sandbox (``--unsafe-no-sandbox``) a job's kernel is
a plain local one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import parse_size
from .execute import KernelFactory, kernel_env, plain_kernel_factory
from .job import GradeJob
from .kernel import kernel_factory as sandboxed_kernel_factory
from .quota import make_workdir
from .sandbox import DEFAULT_FILE_SIZE_BYTES, SandboxPolicy, sandboxed_command


def job_policy(*, job: GradeJob, workdir: Path) -> SandboxPolicy:
    """The sandbox of one grading job: its memory, CPU, disk and process limits, its GPUs, its
    released data read-only at ./data."""
    limits = job.settings.limits(job.config)
    memory = limits.memory_limit_text
    disk = parse_size(limits.disk_limit_text) if limits.disk_limit_text else None
    binds = ((Path(job.data_dir), Path(workdir) / "data"),) if job.data_dir else ()
    return SandboxPolicy(
        workdir=Path(workdir),
        readonly_binds=binds,
        memory_bytes=parse_size(memory) if memory else None,
        max_processes=job.config.execute.max_processes,
        cpu_seconds=int(limits.cpu_seconds) if limits.cpu_seconds else None,
        file_size_bytes=min(DEFAULT_FILE_SIZE_BYTES, disk or DEFAULT_FILE_SIZE_BYTES),
        disk_bytes=disk,
        disk_files=limits.max_files or 100_000,
        gpus=tuple(job.gpus),
    )


def new_workdir(job: GradeJob, prefix: str) -> Path:
    """A fresh work folder for a kernel of ``job``: with the disk quota of its assignment when
    it runs in the sandbox (see :mod:`autograder.quota`)."""
    limits = job.settings.limits(job.config)
    if not job.settings.sandbox or not limits.disk_limit_text:
        return make_workdir(prefix, limit=None)
    return make_workdir(prefix, limit=parse_size(limits.disk_limit_text), files=limits.max_files)


def kernel_factory(job: GradeJob, workdir: Path) -> KernelFactory:
    """The kernels of ``job`` in ``workdir``: sandboxed under :func:`job_policy`, or plain
    local ones when the job runs without the sandbox."""
    if not job.settings.sandbox:
        return plain_kernel_factory
    return sandboxed_kernel_factory(policy=job_policy(job=job, workdir=workdir))


def kernel_key(job: GradeJob, workdir: Path) -> tuple[Any, ...]:
    """Everything a kernel of ``job`` in ``workdir`` is started with: a spare kernel started
    for another job serves this one only if its key is the same."""
    policy = job_policy(job=job, workdir=workdir) if job.settings.sandbox else None
    env = kernel_env(workdir, gpus=job.gpus)
    return (job.settings.sandbox, policy, env, tuple(job.config.execute.prestart_imports))


def spare_kernel(job: GradeJob, workdir: Path) -> tuple[Any, dict[str, str], tuple[Any, ...]]:
    """A not yet started kernel for whichever job comes next, under ``job``'s policy: the
    kernel manager, its environment and its :func:`kernel_key`."""
    env = kernel_env(workdir, gpus=job.gpus)
    km = kernel_factory(job, workdir)(workdir=workdir, env=env)
    return km, env, kernel_key(job, workdir)


def evaluator_policy(job: GradeJob, scratch: Path) -> SandboxPolicy | None:
    """The sandbox of ``job``'s model evaluator in ``scratch`` (None when the job runs without
    the sandbox): the job's limits and GPUs, ``scratch`` writable (the evaluator's working
    folder, which holds the copies of the model and the images), the ``autograder`` package
    read-only, nothing else of the grader's."""
    if not job.settings.sandbox:
        return None
    package = Path(__file__).resolve().parent
    return dataclasses.replace(
        job_policy(job=job, workdir=scratch),
        readonly_binds=((package, package),),
        # Only the grader's own evaluator writes there (predictions): no quota to watch.
        disk_bytes=None,
    )


def evaluator_wrapper(*, job: GradeJob, scratch: Path) -> Callable[..., list[str]] | None:
    """Wraps the model evaluator's command in :func:`evaluator_policy`'s sandbox (None
    without the sandbox). ``wrapper(argv, env=...)`` returns the command; the sandbox starts
    from a clean environment, so the evaluator's variables go in ``env`` (the environment of
    the Popen is not passed on)."""
    base = evaluator_policy(job, scratch)
    if base is None:
        return None
    package = Path(__file__).resolve().parent

    def wrap(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        extra = {**(env or {}), "PYTHONPATH": str(package.parent)}
        return sandboxed_command(argv, dataclasses.replace(base, env={**base.env, **extra}))

    return wrap
