"""Step 2 of grading: run a sanitized notebook in a kernel, with limits, and say how it ended.

nbclient runs the cells; this module adds what grading untrusted code needs on top:

- a per-cell timeout that interrupts the cell (nbgrader's behaviour) and a total deadline that
  stops the notebook; a kernel that ignores the interrupt is killed;
- output capped per cell (lines and bytes) and per notebook as it arrives, so a flood never
  fills the grader's memory; errors and the first stderr line are always kept, because they
  decide grades (:mod:`autograder.outputcap`);
- nbgrader's defence against the ``showtraceback`` cheat: an error reply with no error output
  gets one;
- collection snippets (saving the trained model) run in the same kernel after the notebook,
  their cells never added to the graded notebook.

Where the kernel runs is the caller's choice (``kernel_factory``): the sandbox in production,
a plain local kernel with ``--unsafe-no-sandbox`` and in some tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from .kernelwatch import changes, fingerprint, probe_expressions
from .limits import STOP_REASONS
from .notebooks import nbgrader_meta
from .outputcap import CellEvidence, GradingClient

#: nbgrader's error output for a cell that ran out of time (Execute.error_on_timeout).
TIMEOUT_ERROR = {
    "ename": "CellTimeoutError",
    "evalue": "",
    "traceback": ["\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"],
}
#: Seconds a kernel gets to answer after an interrupt before it is killed.
RESPONSIVE_AFTER_INTERRUPT_S = 15.0


class KernelFactory(Protocol):
    """Makes the (not yet started) kernel manager a notebook runs in."""

    def __call__(self, *, workdir: Path, env: Mapping[str, str]) -> Any: ...


def plain_kernel_factory(*, workdir: Path, env: Mapping[str, str]) -> Any:
    """A local ipykernel with no isolation (``--unsafe-no-sandbox``, trusted notebooks).

    It talks over ZMQ's ``ipc`` transport, with its sockets in a folder of its own: kernels
    started at the same moment by different worker processes each pick "free" TCP ports, and
    two can pick the same one, after which a client talks to another worker's kernel.
    """
    import tempfile

    from .kernel import PlainKernelManager  # started as the sandboxed kernel is

    runtime = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
    km = PlainKernelManager(
        kernel_name="python3",
        transport="ipc",
        ip=str(runtime / "kernel"),
        connection_file=str(runtime / "kernel.json"),
    )
    km._autograder_runtime = runtime  # type: ignore[attr-defined]  # removed by shutdown_kernel
    return km


@dataclasses.dataclass(frozen=True)
class ExecutionLimits:
    """Time and output limits of one notebook run."""

    timeout_cell: float = 600.0
    timeout_total: float = 1800.0
    max_output_lines: int = 1000
    max_output_bytes: int = 1_000_000
    #: Output the grader keeps for the whole notebook (outputcap.GradingClient).
    max_notebook_output_bytes: int = 20_000_000
    memory_limit_text: str = ""
    #: The sandbox's limits, for its policy and the messages (None: not limited).
    disk_limit_text: str = ""
    max_files: int | None = None
    cpu_seconds: float | None = None


@dataclasses.dataclass
class ExecutionOutcome:
    """How a run ended. ``status`` is one of results.STATUSES."""

    nb: NotebookNode
    status: str = "graded"
    message: str = ""
    #: 0-based index of the cell where the run stopped (None when it ran to the end).
    stopped_at: int | None = None
    #: Cells that were interrupted for time (0-based indices).
    timed_out: list[int] = dataclasses.field(default_factory=list)
    #: Outputs of each collection snippet, in order.
    collected: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    duration_s: float = 0.0
    #: False when the kernel stopped answering (ignored an interrupt, or its messaging broke).
    responsive: bool = True
    #: Cells the kernel ran and answered for (0-based), with the reply's status.
    replies: dict[int, str] = dataclasses.field(default_factory=dict)
    #: What arrived for each cell, kept outside the notebook (outputcap.CellEvidence).
    evidence: dict[int, CellEvidence] = dataclasses.field(default_factory=dict)
    #: Test cells that ran after the notebook changed how IPython runs code: what changed.
    tampered: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    #: Sentences for the result's notes (output dropped past the notebook's budget).
    notes: list[str] = dataclasses.field(default_factory=list)


def _record_missing_error(cell: NotebookNode, cell_index: int, execute_reply: Any) -> None:
    """nbgrader's Execute.on_cell_executed: an error reply always leaves an error output."""
    content = (execute_reply or {}).get("content", {})
    if content.get("status") != "error":
        return
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error" and output.get("ename") == content.get("ename"):
            return
    from nbformat import NotebookNode as Node

    traceback = list(content.get("traceback") or []) or [
        "ERROR: An error occurred while showtraceback was disabled"
    ]
    cell.outputs.append(
        Node(
            output_type="error",
            ename=str(content.get("ename", "Error")),
            evalue=str(content.get("evalue", "")),
            traceback=traceback,
        )
    )


def _on_executed(
    outcome: ExecutionOutcome, cell: NotebookNode, cell_index: int, execute_reply: Any
) -> None:
    content = (execute_reply or {}).get("content", {})
    outcome.replies[cell_index] = str(content.get("status", "unknown"))[:20]
    _record_missing_error(cell, cell_index, execute_reply)


#: Errors that mean "out of memory": Python's, and TensorFlow's when an allocation fails
#: under the sandbox's address-space limit (see docs/benchmarks.md).
MEMORY_ERRORS = frozenset({"MemoryError", "ResourceExhaustedError"})


def _is_memory_error(cell: NotebookNode) -> bool:
    return any(
        o.get("output_type") == "error" and o.get("ename") in MEMORY_ERRORS
        for o in cell.get("outputs", [])
    )


async def _run(
    nb: NotebookNode,
    *,
    workdir: Path,
    limits: ExecutionLimits,
    kernel_factory: KernelFactory,
    env: Mapping[str, str],
    collect: Sequence[str],
    collect_timeout: float,
    km: Any = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> ExecutionOutcome:
    outcome = ExecutionOutcome(nb=nb)
    if km is None:
        km = kernel_factory(workdir=workdir, env=env)
    client = GradingClient(
        nb,
        km=km,
        max_lines=limits.max_output_lines,
        max_bytes=limits.max_output_bytes,
        max_notebook_bytes=limits.max_notebook_output_bytes,
        timeout=int(max(1, limits.timeout_cell)),
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout=TIMEOUT_ERROR,
        raise_on_iopub_timeout=False,
        # A kernel answers once its start-up is done, prestart imports included (TensorFlow
        # on a busy node can take a while); one that dies is noticed at once all the same.
        startup_timeout=int(max(60, limits.timeout_cell)),
        iopub_timeout=4,
        shutdown_kernel="immediate",
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        on_cell_executed=lambda cell, cell_index, execute_reply: _on_executed(
            outcome, cell, cell_index, execute_reply
        ),
    )
    # Cell metadata never changes what runs: no tag of the notebook's can name this one.
    client.skip_cells_with_tag = f"autograder-never-skip-{uuid.uuid4().hex}"
    start = time.monotonic()
    deadline = start + limits.timeout_total
    try:
        try:
            # A kernel manager given already started is used as it is (nbclient starts none).
            async with client.async_setup_kernel(env=dict(env), cwd=str(workdir)):
                if on_ready is not None:
                    with contextlib.suppress(Exception):  # its trouble is not the notebook's
                        await on_ready()
                define, ask = probe_expressions(f"_autograder_watch_{uuid.uuid4().hex}")
                baseline = await fingerprint(client.kc, define)
                await _run_cells(client, nb, outcome, limits, deadline, baseline, ask)
                # A kernel that stopped answering would only burn the collection timeout too.
                if outcome.status != "kernel-died" and outcome.responsive and collect:
                    await _collect(client, outcome, collect, collect_timeout)
        finally:
            outcome.evidence = client.evidence
            await shutdown_kernel(km)
    except DeadKernelError:
        _died(outcome, km, limits)
    except Exception as exc:
        if outcome.stopped_at is None and not any(c.get("outputs") for c in nb.cells):
            outcome.status = "sandbox-error"
            outcome.message = (
                f"the kernel could not be started ({type(exc).__name__}: {exc}); this is a "
                "problem of the grading machine, not of the submission"
            )
        else:
            _died(outcome, km, limits)
    outcome.duration_s = time.monotonic() - start
    if client.budget_note():
        outcome.notes.append(client.budget_note())
    return outcome


def cell_label(nb: NotebookNode, index: int) -> str:
    """How the feedback page labels the cell at ``index``: ``[n]``, its place among the code
    cells (the execution count every run sets)."""
    count = sum(1 for cell in nb.cells[: index + 1] if cell.cell_type == "code")
    return f"[{max(count, 1)}]"


def _died(outcome: ExecutionOutcome, km: Any, limits: ExecutionLimits) -> None:
    where = (
        f" in cell {cell_label(outcome.nb, outcome.stopped_at)}"
        if outcome.stopped_at is not None
        else ""
    )
    reason = getattr(km, "termination_reason", lambda: None)()
    if reason in STOP_REASONS:
        outcome.status, message = STOP_REASONS[reason]
        outcome.message = message.format(where=where, limits=limits)
    elif reason == "memory":
        outcome.status = "memory"
        limit = f" ({limits.memory_limit_text})" if limits.memory_limit_text else ""
        outcome.message = (
            f"the notebook used more memory than allowed{limit} and was stopped{where}; use "
            "fewer images at once or a smaller batch size"
        )
    else:
        outcome.status = "kernel-died"
        outcome.message = (
            f"the Python kernel stopped{where} (it crashed, exited or was killed); the cells "
            "after it were not run"
        )


async def _run_cells(
    client: GradingClient,
    nb: NotebookNode,
    outcome: ExecutionOutcome,
    limits: ExecutionLimits,
    deadline: float,
    baseline: dict[str, Any] | str,
    ask: str,
) -> None:
    count = 0
    checked = True  # nothing ran since the baseline was taken
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        count += 1
        test = _is_test(cell) and isinstance(baseline, dict)
        changed: set[str] = set()
        if test and not checked:
            assert isinstance(baseline, dict)
            changed.update(changes(baseline, await fingerprint(client.kc, ask)))
        label = f"[{count}]"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcome.status = "timeout"
            outcome.stopped_at = index
            outcome.message = (
                f"the notebook ran past its {limits.timeout_total:.0f} s limit; cell "
                f"{label} and the cells after it were not run"
            )
            return
        per_cell = min(limits.timeout_cell, remaining)
        client.timeout = int(max(1, per_cell))
        outcome.stopped_at = index
        try:
            await client.async_execute_cell(cell, index, execution_count=count)
        except DeadKernelError:
            cell.execution_count = count
            raise
        # The kernel's own count runs on with whatever else it executed; the page and every
        # message name a cell by its place among the code cells, so they always agree.
        cell.execution_count = count
        outcome.stopped_at = None
        checked = False
        if test:
            assert isinstance(baseline, dict)
            changed.update(changes(baseline, await fingerprint(client.kc, ask)))
            checked = True
            if changed:
                outcome.tampered[index] = sorted(changed)
        if _is_memory_error(cell):
            outcome.status = "memory"
            limit = f" ({limits.memory_limit_text})" if limits.memory_limit_text else ""
            outcome.message = (
                f"cell {label} ran out of memory{limit}; use fewer images at once or a "
                "smaller batch size"
            )
        if any(o.get("ename") == TIMEOUT_ERROR["ename"] for o in cell.get("outputs", [])):
            outcome.timed_out.append(index)
            total_hit = per_cell < limits.timeout_cell
            if not await _responsive(client):
                outcome.responsive = False
                outcome.status = "timeout"
                outcome.stopped_at = index
                outcome.message = (
                    f"cell {label} ran past its {per_cell:.0f} s limit and did not stop "
                    "when interrupted; the cells after it were not run"
                )
                return
            if total_hit:
                outcome.status = "timeout"
                outcome.stopped_at = index + 1
                outcome.message = (
                    f"the notebook ran past its {limits.timeout_total:.0f} s limit in cell "
                    f"{label}; the cells after it were not run"
                )
                return
            if outcome.status == "graded":
                outcome.status = "timeout"
                outcome.message = (
                    f"cell {label} ran past its {limits.timeout_cell:.0f} s limit and was "
                    "interrupted; the other cells were run"
                )


def _is_test(cell: NotebookNode) -> bool:
    """A test cell: graded, not an answer (its metadata is the source's after sanitizing)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


async def _responsive(client: GradingClient) -> bool:
    """After an interrupt: does the kernel answer again within a short time?"""
    saved = client.timeout
    try:
        outputs = await _run_extra(client, "pass", RESPONSIVE_AFTER_INTERRUPT_S)
    finally:
        client.timeout = saved
    return not any(o.get("ename") == TIMEOUT_ERROR["ename"] for o in outputs)


async def _run_extra(client: GradingClient, code: str, timeout: float) -> list[dict[str, Any]]:
    """Run code that is not part of the notebook; its cell never stays in the notebook.

    nbclient writes an executed cell back to ``nb.cells[index]``, so the cell is appended
    for the run and removed afterwards.
    """
    cell = new_code_cell(code)
    client.timeout = int(max(1, timeout))
    client.nb.cells.append(cell)
    index = len(client.nb.cells) - 1
    try:
        await client.async_execute_cell(cell, index, store_history=False)
    finally:
        del client.nb.cells[index]
    return [dict(o) for o in cell.get("outputs", [])]


async def _collect(
    client: GradingClient,
    outcome: ExecutionOutcome,
    snippets: Sequence[str],
    timeout: float,
) -> None:
    for code in snippets:
        try:
            outcome.collected.append(await _run_extra(client, code, timeout))
        except DeadKernelError:
            outcome.collected.append(
                [{"output_type": "error", "ename": "DeadKernelError", "evalue": "kernel died"}]
            )
            raise


async def shutdown_kernel(km: Any) -> None:
    """Shut a kernel manager's kernel down and free what it holds (idempotent)."""
    # We passed our own kernel manager, so its shutdown is ours (nbclient docs).
    try:
        if await _maybe_await(km.is_alive()):
            await _maybe_await(km.shutdown_kernel(now=True))
    except Exception:
        kill = getattr(km, "kill_all", None)
        if kill is not None:
            await _maybe_await(kill())
    cleanup = getattr(km, "cleanup_resources", None)
    if cleanup is not None:
        with contextlib.suppress(Exception):  # best effort: the kernel is already gone
            await _maybe_await(cleanup())
    runtime = getattr(km, "_autograder_runtime", None)
    if runtime is not None:
        shutil.rmtree(runtime, ignore_errors=True)


def hand_over_workdir(km: Any) -> None:
    """After files were added to a started kernel's folder: give them to the kernel's user
    (a sandboxed kernel as root runs as a user of its own; a plain kernel needs nothing)."""
    hand_over = getattr(km, "hand_over_workdir", None)
    if hand_over is not None:
        hand_over()


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def kernel_env(
    workdir: Path, *, gpus: Sequence[int] = (), extra: Mapping[str, str] = {}
) -> dict[str, str]:
    """The environment a kernel starts with: minimal, no grader secrets, no display."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir / ".home"),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "AUTOGRADER": "1",
    }
    for key in ("KERAS_BACKEND", "VIRTUAL_ENV", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def execute_notebook(
    nb: NotebookNode,
    *,
    workdir: Path,
    limits: ExecutionLimits,
    kernel_factory: KernelFactory = plain_kernel_factory,
    env: Mapping[str, str] | None = None,
    collect: Sequence[str] = (),
    collect_timeout: float = 300.0,
    km: Any = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
    runner: Callable[[Coroutine[Any, Any, ExecutionOutcome]], ExecutionOutcome] = asyncio.run,
) -> ExecutionOutcome:
    """Run every code cell of ``nb`` (in place) in ``workdir``; see :class:`ExecutionOutcome`.

    ``km``: a kernel manager already started in ``workdir`` (a prestarted kernel) to use
    instead of one from ``kernel_factory``; it is shut down at the end all the same.
    ``on_ready`` is awaited once the kernel answers, before the first cell. ``runner`` runs
    the coroutine (a new event loop by default; a worker's own loop with prestart).
    """
    (workdir / ".home").mkdir(exist_ok=True)
    return runner(
        _run(
            nb,
            workdir=workdir,
            limits=limits,
            kernel_factory=kernel_factory,
            env=env if env is not None else kernel_env(workdir),
            collect=collect,
            collect_timeout=collect_timeout,
            km=km,
            on_ready=on_ready,
        )
    )
