"""Keep a slow optional import out of the grader's processes.

jsonschema (which nbformat uses to validate notebooks) imports ``rfc3987_syntax`` when it is
installed, an optional extra that Jupyter's event system pulls in; it builds a grammar at
import time, about 1.6 s of every ``autograder`` command and of every grading worker
(``docs/benchmarks.md``). Notebook validation uses no IRI formats, so the grader's own
processes (the CLI and its workers, never a library user's) mark it absent.

The grading workers' own start: the fork server they fork from, with the grading code
imported ahead (``autograder.workerboot``), and what each worker does as it starts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import multiprocessing.context

SLOW_OPTIONAL = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    """Make ``import rfc3987_syntax`` fail fast (jsonschema treats it as not installed)."""
    for name in SLOW_OPTIONAL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def start_worker(environ: dict[str, str], coordinator: int | None = None) -> None:
    """Initializer of a local grading worker: the coordinator's environment as it is now (a
    worker forks from a fork server started earlier, with the environment of that moment),
    and an end when the ``coordinator`` process is gone."""
    skip_slow_optional_imports()
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if coordinator is not None:
        threading.Thread(
            target=_exit_without, args=(coordinator,), name="autograder-orphan", daemon=True
        ).start()


def _exit_without(coordinator: int, every_s: float = 1.0) -> None:
    """A worker whose coordinator was killed would wait for jobs forever (its pool's queue
    never closes), holding its kernels: exit instead. Its sandboxed kernels, the running one
    and a prestarted spare, die with it (bubblewrap's --die-with-parent)."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(coordinator, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive (another user's process now holds the number)
            pass


#: Modules the local pool's fork server imports once, before any worker forks from it.
WORKER_PRELOAD = ["autograder.workerboot"]


def pool_context(*, with_dask: bool = False) -> multiprocessing.context.BaseContext:
    """The start method of grading worker processes: 'forkserver', preloaded with the grading
    code (and Dask's worker, ``with_dask``). Workers start clean (forked from a fresh
    interpreter, with no copy of the coordinator's database handles or threads) and fast
    (nbgrader and nbclient already imported). The fork server is one per process: the
    preload of the first start stays."""
    # Imported here: every CLI command imports this module, few start workers.
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload((["distributed"] if with_dask else []) + WORKER_PRELOAD)
    return ctx


def start_fork_server(*, with_dask: bool = False) -> None:
    """Start the fork server now; it imports its preload in the background."""
    pool_context(with_dask=with_dask)
    from multiprocessing import forkserver

    forkserver.ensure_running()
