"""Start-up hidden behind a running notebook: the next student's kernel (local pool workers),
and this student's held-out evaluator (:class:`Evaluators`, any backend).

A kernel needs about 0.7 s to start (a new Python, ipykernel's imports, the sandbox), and an
assignment may import TensorFlow on top (seconds, more on a GPU node). A grading worker of the
local pool hides that time: when a job's kernel is ready, it starts one more kernel, for
whichever job this worker gets next, while the first one runs the notebook.

Isolation is not weakened:

- the spare kernel is a new kernel in a new sandbox, with a fresh, empty working folder and
  the policy of the job that started it (data binds, limits, GPU slot, environment); it runs
  no submission's code before it is handed to one job, and it is never handed to two;
- the next job takes it only if its own policy for that folder is exactly the same (the same
  assignment, settings and GPU slot) and the kernel is still alive; otherwise it is shut down
  unused and the job starts its own;
- its imports (``prestart_imports`` in ``[execute]``) are opt-in: importing Keras fixes its
  backend, so an assignment whose notebooks choose the backend must not list it. They run as
  the kernel starts (ipykernel's ``exec_lines``), so the kernel answers only once they are
  done, and nobody has to talk to the spare before its job takes it.

The job copies its submission into the spare kernel's folder before the first cell runs
(``pipeline.prepare``); the sandbox already mounted the released data at ``./data``, so
that folder is left alone (bwrap made the mount point in the host folder; removing it there
would detach the data inside the sandbox).

A worker keeps one event loop for all its jobs (the spare kernel's sockets belong to it) and
runs its jobs on its main thread (bwrap's ``--die-with-parent`` follows the thread that
launched the kernel). At the worker's exit a spare kernel nobody took is shut down and its
folder removed; a worker killed outright takes its kernels with it (``--die-with-parent``).

The evaluator of an accuracy check (a new Python importing Keras and its backend, about 4.5 s
of TensorFlow on 2 cores) is started the same way, once the notebook's kernel answers, but for
the same job: it waits, with nothing of any submission loaded, until the notebook has ended
and its model is collected, and is then handed the model (:func:`autograder.evaluate.
evaluate_model`). It belongs to that one job (:class:`Evaluators` lives in the job's work):
never handed to another, shut down unused when the check cannot use it (its start key differs:
another sandbox policy, images, scale or classes; or it died), and at the job's end whatever
happened. It runs in a new sandbox of its own, under the policy of the evaluator the check
would start itself; started from the job's thread, it dies with the worker too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from multiprocessing import util
from pathlib import Path
from typing import Any, TypeVar

from .evaluate import Evaluator
from .execute import shutdown_kernel
from .quota import remove_workdir

T = TypeVar("T")

#: nbclient's default for the kernels it starts: no history file in the working folder.
KERNEL_ARGUMENTS = ("--HistoryManager.hist_file=:memory:",)


@dataclasses.dataclass
class Spare:
    """A started kernel waiting for the next job."""

    #: What a job's kernel must equal to take it (sandbox policy and environment).
    key: Any
    workdir: Path
    km: Any


@dataclasses.dataclass
class _State:
    loop: asyncio.AbstractEventLoop | None = None
    spare: Spare | None = None
    thread: int | None = None


_state = _State()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on this worker's event loop (made on first use, closed at exit)."""
    if _state.loop is None:
        _state.loop = asyncio.new_event_loop()
        _state.thread = threading.get_ident()
        # Runs at the worker process's exit (and the interpreter's): shut the spare down.
        util.Finalize(None, close, exitpriority=20)
    if _state.thread != threading.get_ident():
        raise RuntimeError("kernel prestart runs on one thread; use it from the worker's thread")
    return _state.loop.run_until_complete(coro)


def pending() -> Spare | None:
    """The spare kernel waiting for the next job, if any."""
    return _state.spare


async def start_spare(
    make: Callable[[Path], tuple[Any, Mapping[str, str], Any]],
    imports: Sequence[str] = (),
    *,
    new_folder: Callable[[], Path] | None = None,
) -> None:
    """Start a spare kernel (unless one waits already) in a new folder.

    ``make(workdir)`` returns ``(kernel manager, environment, key)`` for that folder;
    ``new_folder()`` makes the folder (a work folder with the next job's disk quota; by
    default a plain temporary folder). A kernel that fails to start is dropped quietly: the
    next job starts its own and reports why.
    """
    if _state.spare is not None:
        return
    workdir = new_folder() if new_folder else Path(tempfile.mkdtemp(prefix="autograder-next-"))
    km = None
    try:
        (workdir / ".home").mkdir()
        km, env, key = make(workdir)
        arguments = [*KERNEL_ARGUMENTS, *import_arguments(imports)]
        await km.start_kernel(extra_arguments=arguments, env=dict(env), cwd=str(workdir))
    except Exception:
        if km is not None:
            await shutdown_kernel(km)
        remove_workdir(workdir)
        return
    _state.spare = Spare(key=key, workdir=workdir, km=km)


def take(key_for: Callable[[Path], Any]) -> Spare | None:
    """Hand the spare kernel to a job whose kernel key at the spare's folder is
    ``key_for(folder)``: only when it equals the spare's and the kernel still runs. A spare
    that does not fit is shut down. Never returns the same kernel twice."""
    spare, _state.spare = _state.spare, None
    if spare is None:
        return None
    try:
        fits = key_for(spare.workdir) == spare.key and run(_alive(spare.km))
    except Exception:
        fits = False
    if not fits:
        discard(spare)
        return None
    return spare


def discard(spare: Spare) -> None:
    """Shut a spare kernel down and remove its folder."""
    with contextlib.suppress(Exception):
        run(shutdown_kernel(spare.km))
    remove_workdir(spare.workdir)


def close() -> None:
    """Shut down the spare nobody took and close the loop (at the worker's exit)."""
    spare, _state.spare = _state.spare, None
    if _state.loop is None or _state.loop.is_closed():
        return
    if spare is not None:
        discard(spare)
    with contextlib.suppress(Exception):
        _state.loop.close()
    _state.loop = None


async def _alive(km: Any) -> bool:
    return bool(await km.is_alive())


def import_arguments(modules: Sequence[str]) -> list[str]:
    """ipykernel options that import ``modules`` as the kernel starts, before it answers its
    first request (so a client's wait for the kernel covers them), outside the history and
    leaving no name in the user's namespace (the value ``None`` is not displayed or kept)."""
    return [
        f"--IPKernelApp.exec_lines=__import__('importlib').import_module({m!r}) and None"
        for m in modules
    ]


class Evaluators:
    """The held-out evaluators started for one job while its notebook runs, by check id.

    Each is handed to that job's check once (:meth:`take`), and only if it still fits; the
    rest are stopped at the job's end (:meth:`close`).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, Evaluator] = {}

    def start(self, check_id: str, start: Callable[[Path], Evaluator | None]) -> None:
        """Start the evaluator of ``check_id`` (unless one waits already) in a new folder:
        ``start(folder)`` returns it, or None when it could not start (the check then starts
        its own, and says why)."""
        if check_id in self._waiting:
            return
        folder = Path(tempfile.mkdtemp(prefix="autograder-eval-"))
        try:
            evaluator = start(folder)
        except Exception:
            evaluator = None
        if evaluator is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        self._waiting[check_id] = evaluator

    def take(self, check_id: str, key_for: Callable[[Path], Any]) -> Evaluator | None:
        """The evaluator waiting for ``check_id``, if its start key equals ``key_for(its
        folder)`` and it still runs; one that does not fit is stopped. Never twice."""
        evaluator = self._waiting.pop(check_id, None)
        if evaluator is None:
            return None
        try:
            fits = key_for(evaluator.workdir) == evaluator.key and evaluator.alive()
        except Exception:
            fits = False
        if not fits:
            evaluator.close()
            return None
        return evaluator

    def pending(self) -> dict[str, Evaluator]:
        """The evaluators still waiting, by check id (a copy)."""
        return dict(self._waiting)

    def close(self) -> None:
        """Stop every evaluator nobody took and remove its folder (at the job's end)."""
        waiting, self._waiting = self._waiting, {}
        for evaluator in waiting.values():
            with contextlib.suppress(Exception):
                evaluator.close()
