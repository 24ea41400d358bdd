"""What a notebook's run may leave in the grader's memory: outputs capped as they arrive.

nbclient's ``NotebookClient.output`` is the one place every output message of a cell passes
through; the capping client keeps a cell's outputs within its lines and bytes, shortens
tracebacks, and always keeps errors and the first stderr line, because they decide grades.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nbclient import NotebookClient
from nbformat import NotebookNode

MAX_TRACEBACK_LINES = 100
TRUNCATED = "\n... output truncated by the autograder (limit {limit}) ...\n"


@dataclasses.dataclass
class CellEvidence:
    """What the grader saw arrive for one cell, kept outside the notebook: a later
    ``clear_output`` or display update changes the notebook's outputs, never this."""

    #: ``ename`` of every error output, in order of arrival.
    errors: list[str] = dataclasses.field(default_factory=list)
    #: Whether anything arrived on stderr.
    stderr: bool = False
    #: How many ``execute_result`` messages arrived (a cell's own last expression makes one).
    results: int = 0


class GradingClient(NotebookClient):
    """NotebookClient that caps output as it arrives."""

    def __init__(self, nb: NotebookNode, *, max_lines: int, max_bytes: int, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._used: dict[int, list[int]] = {}  # cell index -> [bytes, lines, capped, stderr]
        self.evidence: dict[int, CellEvidence] = {}

    def output(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
    ) -> NotebookNode | None:
        used = self._used.setdefault(cell_index, [0, 0, 0, 0])
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        seen = self.evidence.setdefault(cell_index, CellEvidence())
        if msg_type == "error":
            seen.errors.append(str(content.get("ename", "Error"))[:200])
        elif msg_type == "execute_result":
            seen.results += 1
        elif msg_type == "stream" and content.get("name") == "stderr":
            seen.stderr = True
        if msg_type == "error":
            tb = list(content.get("traceback", []))
            if len(tb) > MAX_TRACEBACK_LINES:
                tb = [*tb[:5], "... traceback shortened ...", *tb[-(MAX_TRACEBACK_LINES - 6) :]]
            content["traceback"] = [line[:4000] for line in tb]
            content["evalue"] = str(content.get("evalue", ""))[:4000]
            return super().output(outs, msg, display_id, cell_index)
        size = _message_size(msg_type, content)
        lines = str(content.get("text", "")).count("\n") if msg_type == "stream" else 1
        is_stderr = msg_type == "stream" and content.get("name") == "stderr"
        if used[2]:
            # Over the limit: drop it, except the first stderr, which decides the grade.
            if is_stderr and not used[3]:
                used[3] = 1
                content["text"] = str(content.get("text", ""))[:200]
                return super().output(outs, msg, display_id, cell_index)
            return None
        if used[0] + size > self._max_bytes or (used[1] + lines > self._max_lines):
            used[2] = 1
            if msg_type == "stream":
                room_b = max(0, self._max_bytes - used[0])
                room_l = max(0, self._max_lines - used[1])
                text = "\n".join(str(content.get("text", ""))[:room_b].split("\n")[:room_l])
                content["text"] = text + TRUNCATED.format(
                    limit=f"{self._max_lines:,} lines, {self._max_bytes:,} bytes"
                )
                used[3] = used[3] or int(is_stderr)
                return super().output(outs, msg, display_id, cell_index)
            if msg_type == "execute_result":
                # Keep the result (partial credit reads it) but only its plain text.
                data = content.get("data", {})
                content["data"] = {"text/plain": str(data.get("text/plain", ""))[:1000]}
                return super().output(outs, msg, display_id, cell_index)
            return None
        used[0] += size
        used[1] += lines
        used[3] = used[3] or int(is_stderr)
        return super().output(outs, msg, display_id, cell_index)


def _message_size(msg_type: str, content: Mapping[str, Any]) -> int:
    if msg_type == "stream":
        return len(str(content.get("text", "")))
    data = content.get("data", {})
    if isinstance(data, Mapping):
        return sum(len(str(v)) for v in data.values())
    return 0
