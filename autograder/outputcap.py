"""What a notebook's run may leave in the grader's memory: outputs capped as they arrive.

Every output message of a cell reaches :meth:`GradingClient.output`; display updates reach
:meth:`GradingClient._update_display_id` (nbclient's own path, which bypasses ``output`` and
can change outputs of any cell), comm (widget) messages :meth:`GradingClient.handle_comm_msg`.
Three bounds hold together:

- per cell: lines and bytes of streams, displays and results (nbgrader's LimitOutput, applied
  as they arrive); tracebacks shortened;
- per notebook: one budget of bytes for everything kept, every kind of message and every
  cell together (updates and errors included); past it the rest is dropped, with a note in
  the cell where that began. Errors and the first stderr of a cell, which decide grades, are
  then still kept, shortened to a stub, one of each per cell;
- per message, below nbclient: the kernel's ZMQ sockets refuse a frame larger than
  :data:`MAX_MESSAGE_BYTES` and queue at most :data:`MAX_QUEUED_MESSAGES` messages, and a
  guard stops the kernel if the grader's own process grows past what the budget allows
  (a kernel can send one message of any number of frames, which ZMQ buffers whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio
from nbclient import NotebookClient
from nbclient.util import run_hook
from nbformat import NotebookNode
from nbformat.v4 import new_output
from zmq.utils.monitor import recv_monitor_message

MAX_TRACEBACK_LINES = 100
TRUNCATED = "\n... output truncated by the autograder (limit {limit}) ...\n"
#: The note in the cell where the notebook's budget ran out.
DROPPED = (
    "\n... the rest of this notebook's output was dropped by the autograder (limit "
    "{limit:,} bytes for the whole notebook) ...\n"
)
#: Largest ZMQ frame the grader takes from a kernel (``ZMQ_MAXMSGSIZE``): ZMQ ends the
#: connection before anything is allocated for a larger one, for good (a protocol error is
#: not retried), so the channel watch then stops the kernel with reason ``message``.
MAX_MESSAGE_BYTES = 32 * 2**20
#: Messages each of the grader's sockets queues (``ZMQ_RCVHWM``); the kernel holds the rest.
MAX_QUEUED_MESSAGES = 4
#: A request the kernel does not take within this time fails (``ZMQ_SNDTIMEO``) instead of
#: blocking the grader for ever (a channel whose connection is gone).
SEND_TIMEOUT_MS = 30_000
#: How long a channel may stay disconnected from a live kernel before the kernel is stopped.
RECONNECT_WAIT_S = 1.0
#: What a kept output costs beyond its text, in the notebook's budget (its dicts), so that a
#: flood of empty outputs is bounded too.
OUTPUT_OVERHEAD = 1000
#: Error names remembered per cell as evidence (beyond them only counted).
MAX_EVIDENCE_ERRORS = 100
#: The grader's own process may grow this much more than the notebook budget (ZMQ queues,
#: Python's objects) before the guard stops the kernel.
GUARD_SLACK_BYTES = 128 * 2**20
GUARD_INTERVAL_S = 0.05
_STUB = 200


@dataclasses.dataclass
class CellEvidence:
    """What the grader saw arrive for one cell, kept outside the notebook: a later
    ``clear_output`` or display update changes the notebook's outputs, never this."""

    #: ``ename`` of every error output, in order of arrival (the first
    #: :data:`MAX_EVIDENCE_ERRORS`; ``error_count`` counts them all).
    errors: list[str] = dataclasses.field(default_factory=list)
    #: Whether anything arrived on stderr.
    stderr: bool = False
    #: How many ``execute_result`` messages arrived (a cell's own last expression makes one).
    results: int = 0
    #: How many error messages arrived.
    error_count: int = 0


@dataclasses.dataclass
class _CellUse:
    bytes: int = 0
    lines: int = 0
    capped: bool = False  # past the cell's own cap
    stderr_kept: bool = False
    noted: bool = False  # the notebook's note is in this cell


class GradingClient(NotebookClient):
    """NotebookClient that caps output as it arrives (see the module)."""

    def __init__(
        self,
        nb: NotebookNode,
        *,
        max_lines: int,
        max_bytes: int,
        max_notebook_bytes: int = 20_000_000,
        **kw: Any,
    ) -> None:
        # Timings come from message headers the kernel writes: not kept.
        kw.setdefault("record_timing", False)
        super().__init__(nb, **kw)
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self.max_notebook_bytes = max_notebook_bytes
        #: Bytes of the notebook's budget used so far (kept outputs, updates, widget state).
        self.notebook_bytes = 0
        #: Messages dropped because the notebook's budget was used up.
        self.dropped = 0
        #: Cells at or past this index are the grader's own (collection snippets): they keep
        #: their per-cell caps but not the notebook's budget, which the notebook may have spent.
        self.own_cells_from = len(nb.cells)
        self._used: dict[int, _CellUse] = {}
        self.evidence: dict[int, CellEvidence] = {}
        self.guard: MemoryGuard | None = None
        self._on_cell_executed = self.on_cell_executed
        self.on_cell_executed = self._cell_executed

    async def _cell_executed(
        self, *, cell: NotebookNode, cell_index: int, execute_reply: Any
    ) -> None:
        """The caller's ``on_cell_executed``, with an error reply shortened first (the hook may
        copy it into the cell, as nbgrader's does) and what it adds kept within the budget."""
        content = (execute_reply or {}).get("content")
        if isinstance(content, dict) and content.get("status") == "error":
            _shorten_error(content)
            if not self._fits(cell_index, _size(content, self.max_notebook_bytes)):
                _stub_error(content)
        before = len(cell.get("outputs", []))
        await run_hook(
            self._on_cell_executed, cell=cell, cell_index=cell_index, execute_reply=execute_reply
        )
        added = cell.get("outputs", [])[before:]
        if added and cell_index < self.own_cells_from:
            self.notebook_bytes += _size(added, self.max_notebook_bytes) + OUTPUT_OVERHEAD

    # --- the kernel's connection -----------------------------------------------------------

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's, with the kernel client's sockets limited (see the module)."""
        assert self.km is not None
        make = self.km.client

        def client(**kw: Any) -> Any:
            kc = make(**kw)
            kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            kc.context.setsockopt(zmq.RCVHWM, MAX_QUEUED_MESSAGES)
            kc.context.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
            return kc

        self.km.client = client  # type: ignore[method-assign]  # for this call only
        try:
            return await super().async_start_new_kernel_client()
        finally:
            del self.km.client

    @contextlib.asynccontextmanager
    async def async_setup_kernel(self, **kwargs: Any) -> AsyncIterator[None]:
        async with super().async_setup_kernel(**kwargs):
            stop = getattr(self.km, "stop_for", None)
            if stop is None:  # a plain kernel: trusted, nothing to guard
                yield
                return
            limit = GUARD_SLACK_BYTES + 2 * self.max_notebook_bytes
            guard = self.guard = MemoryGuard(limit, lambda: stop("output"))
            watch = asyncio.ensure_future(self._watch_channels(stop))
            try:
                yield
            finally:
                guard.stop()
                watch.cancel()
                with contextlib.suppress(BaseException):
                    await watch

    async def _watch_channels(self, stop: Callable[[str], None]) -> None:
        """Stop the kernel with reason ``message`` when its shell or output channel stays
        disconnected while it lives (ZMQ dropped a frame past :data:`MAX_MESSAGE_BYTES`); a
        kernel that died is left to nbclient, which says so."""
        assert self.kc is not None
        sockets = [self.kc.iopub_channel.socket, self.kc.shell_channel.socket]
        events = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        monitors = [sock.get_monitor_socket(events) for sock in sockets]
        poller = zmq.asyncio.Poller()
        for monitor in monitors:
            poller.register(monitor, zmq.POLLIN)
        broken: dict[Any, float] = {}
        loop = asyncio.get_running_loop()
        try:
            while True:
                for monitor, _ in await poller.poll(timeout=200):
                    event = await recv_monitor_message(monitor)
                    if event["event"] == zmq.EVENT_DISCONNECTED:
                        broken.setdefault(monitor, loop.time())
                    else:
                        broken.pop(monitor, None)
                if broken and loop.time() - min(broken.values()) > RECONNECT_WAIT_S:
                    alive = self.km.is_alive()  # type: ignore[union-attr]
                    if await alive if inspect.isawaitable(alive) else alive:
                        stop("message")
                    return
        finally:
            for sock in sockets:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
            for monitor in monitors:
                monitor.close(linger=0)

    # --- outputs ---------------------------------------------------------------------------

    def output(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
    ) -> NotebookNode | None:
        used = self._used.setdefault(cell_index, _CellUse())
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        self._record(cell_index, msg_type, content)
        is_stderr = msg_type == "stream" and content.get("name") == "stderr"
        if msg_type == "error":
            _shorten_error(content)
        size = _size(content, self.max_notebook_bytes) + OUTPUT_OVERHEAD
        room = self.max_notebook_bytes - self.notebook_bytes - 2 * OUTPUT_OVERHEAD
        if msg_type == "stream" and not self._fits(cell_index, size) and room > 0:
            # The text the notebook's budget still has room for, then the note.
            text = str(content.get("text", ""))
            content["text"] = text[: max(0, room - _size(content, room) + len(text))]
            size = _size(content, self.max_notebook_bytes) + OUTPUT_OVERHEAD
            kept = self.output(outs, msg, display_id, cell_index)
            self.notebook_bytes = self.max_notebook_bytes  # spent: the rest is dropped
            self._over_budget(outs, {"msg_type": "none"}, display_id, cell_index, used, False)
            return kept
        if not self._fits(cell_index, size):
            return self._over_budget(outs, msg, display_id, cell_index, used, is_stderr)
        if msg_type == "error":
            # Errors decide grades: kept whatever the cell's own cap (the notebook's holds).
            return self._keep(outs, msg, display_id, cell_index, size)
        lines = str(content.get("text", "")).count("\n") if msg_type == "stream" else 1
        if used.capped:
            # Over the cell's limit: drop it, except the first stderr, which decides the grade.
            if is_stderr and not used.stderr_kept:
                used.stderr_kept = True
                content["text"] = str(content.get("text", ""))[:_STUB]
                return self._keep(outs, msg, display_id, cell_index, _STUB + OUTPUT_OVERHEAD)
            return None
        text_size = _message_size(msg_type, content)
        if used.bytes + text_size > self._max_bytes or used.lines + lines > self._max_lines:
            used.capped = True
            if msg_type == "stream":
                room_b = max(0, self._max_bytes - used.bytes)
                room_l = max(0, self._max_lines - used.lines)
                text = "\n".join(str(content.get("text", ""))[:room_b].split("\n")[:room_l])
                content["text"] = text + TRUNCATED.format(
                    limit=f"{self._max_lines:,} lines, {self._max_bytes:,} bytes"
                )
                used.stderr_kept = used.stderr_kept or is_stderr
                return self._keep(outs, msg, display_id, cell_index, len(content["text"]))
            if msg_type == "execute_result" and not _has(outs, "execute_result"):
                # Keep the result (partial credit reads it) but only its plain text.
                _plain_result(content, 1000)
                return self._keep(outs, msg, display_id, cell_index, 1000 + OUTPUT_OVERHEAD)
            return None
        used.bytes += text_size
        used.lines += lines
        used.stderr_kept = used.stderr_kept or is_stderr
        return self._keep(outs, msg, display_id, cell_index, size)

    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        """nbclient's update of every output shown under ``display_id`` (in any cell), within
        the cell cap for its size and the notebook's budget for all of them together."""
        if display_id not in self._display_id_map:
            return
        size = _size(msg.get("content", {}), self.max_notebook_bytes) + OUTPUT_OVERHEAD
        # One object in memory, but a copy in each output when the notebook is written.
        targets = sum(len(indices) for indices in self._display_id_map[display_id].values())
        if size > self._max_bytes or not self._fits(-1, size * max(1, targets)):
            self.dropped += 1
            return
        self.notebook_bytes += size * max(1, targets)
        super()._update_display_id(display_id, msg)

    def handle_comm_msg(
        self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int
    ) -> None:
        """Widget messages, whose state nbclient keeps, within the notebook's budget."""
        size = _size(msg.get("content", {}), self.max_notebook_bytes) + OUTPUT_OVERHEAD
        size += sum(len(b) for b in msg.get("buffers") or ()) * 4 // 3  # kept in base64
        if not self._fits(cell_index, size):
            self.dropped += 1
            return
        self.notebook_bytes += size
        super().handle_comm_msg(outs, msg, cell_index)

    def _fits(self, cell_index: int, size: int) -> bool:
        if cell_index >= self.own_cells_from:
            return True
        return self.notebook_bytes + size <= self.max_notebook_bytes

    def _keep(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
        size: int,
    ) -> NotebookNode | None:
        if cell_index < self.own_cells_from:
            self.notebook_bytes += size
        return super().output(outs, msg, display_id, cell_index)

    def _over_budget(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
        used: _CellUse,
        is_stderr: bool,
    ) -> NotebookNode | None:
        """The notebook's budget is spent: a stub of a cell's first error and first stderr
        (they decide grades), a note once per cell, nothing else."""
        self.dropped += 1
        content = msg.get("content", {})
        kept = None
        if msg["msg_type"] == "error" and not _has(outs, "error"):
            _stub_error(content)
            kept = super().output(outs, msg, display_id, cell_index)
        elif is_stderr and not used.stderr_kept:
            used.stderr_kept = True
            content["text"] = str(content.get("text", ""))[:_STUB]
            kept = super().output(outs, msg, display_id, cell_index)
        if not used.noted:
            used.noted = True
            text = DROPPED.format(limit=self.max_notebook_bytes)
            outs.append(new_output("stream", name="stdout", text=text))
        return kept

    def _record(self, cell_index: int, msg_type: str, content: Mapping[str, Any]) -> None:
        seen = self.evidence.setdefault(cell_index, CellEvidence())
        if msg_type == "error":
            seen.error_count += 1
            if len(seen.errors) < MAX_EVIDENCE_ERRORS:
                seen.errors.append(str(content.get("ename", "Error"))[:_STUB])
        elif msg_type == "execute_result":
            seen.results += 1
        elif msg_type == "stream" and content.get("name") == "stderr":
            seen.stderr = True

    def budget_note(self) -> str:
        """A sentence for the result when the notebook's budget ran out, else ""."""
        if not self.dropped:
            return ""
        return (
            f"the notebook's output passed the {self.max_notebook_bytes:,} bytes the grader "
            f"keeps; {self.dropped:,} later outputs were dropped (errors and the first stderr "
            "of each cell were kept, shortened)"
        )


class MemoryGuard:
    """Calls ``stop`` once this process's resident memory has grown ``limit`` bytes past what
    it was when the guard started (looking every :data:`GUARD_INTERVAL_S`)."""

    def __init__(self, limit: int, stop: Any) -> None:
        self.limit = limit
        self.base = _resident()
        self.peak = self.base
        self.fired = False
        self._stop = stop
        self._done = threading.Event()
        threading.Thread(target=self._run, name="grader-memory-guard", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(GUARD_INTERVAL_S):
            now = _resident()
            self.peak = max(self.peak, now)
            if now - self.base > self.limit:
                self.fired = True
                with contextlib.suppress(Exception):
                    self._stop()
                return


def _resident() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _shorten_error(content: dict[str, Any]) -> None:
    tb = content.get("traceback")
    tb = list(tb) if isinstance(tb, list) else []
    if len(tb) > MAX_TRACEBACK_LINES:
        tb = [*tb[:5], "... traceback shortened ...", *tb[-(MAX_TRACEBACK_LINES - 6) :]]
    content["traceback"] = [str(line)[:4000] for line in tb]
    content["evalue"] = str(content.get("evalue", ""))[:4000]
    content["ename"] = str(content.get("ename", "Error"))[:_STUB]


def _stub_error(content: dict[str, Any]) -> None:
    """What is kept of an error past the budget: its name, the start of its message, the
    first frames of its traceback (where a test's failing line shows) and its last line."""
    content["ename"] = str(content.get("ename", "Error"))[:_STUB]
    content["evalue"] = str(content.get("evalue", ""))[:_STUB]
    tb = content.get("traceback")
    tb = [str(line) for line in tb] if isinstance(tb, list) else []
    head = [line[:1000] for line in tb[:3]]
    content["traceback"] = head + [line[:_STUB] for line in tb[3:][-1:]]


def _plain_result(content: dict[str, Any], limit: int) -> None:
    data = content.get("data", {})
    text = data.get("text/plain", "") if isinstance(data, Mapping) else ""
    content["data"] = {"text/plain": str(text)[:limit]}
    content["metadata"] = {}


def _has(outs: list[NotebookNode], output_type: str) -> bool:
    return any(o.get("output_type") == output_type for o in outs)


def _message_size(msg_type: str, content: Mapping[str, Any]) -> int:
    """What the per-cell byte cap counts: a stream's text, a display's data."""
    if msg_type == "stream":
        return len(str(content.get("text", "")))
    data = content.get("data", {})
    if isinstance(data, Mapping):
        return sum(len(str(v)) for v in data.values())
    return 0


def _size(value: Any, limit: int) -> int:
    """Characters in ``value`` (strings and keys; 8 for anything else), counted until past
    ``limit``: what a decoded message holds, metadata and display ids included."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray | memoryview):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 8 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 8 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total
