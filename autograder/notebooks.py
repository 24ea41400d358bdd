"""Reading and writing notebooks, with every way a submitted file can be broken named plainly.

A submitted file is hostile until read: it may be empty, binary, truncated, gzipped, a symbolic
link to someone else's file, an old nbformat, or a gigabyte of JSON. :func:`read_notebook`
turns each of those into an :class:`InvalidNotebookError` whose message a participant
understands, and never follows a link.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v3.rwbase import rejoin_lines as rejoin_v3

from .errors import InvalidNotebookError

#: Larger notebooks are refused before parsing (outputs are cleared anyway, so a real
#: submission is small; this guards the grader's memory).
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


def _describe_binary(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:64]:
        return "a UTF-16 or binary file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    return None


def read_bytes_safely(path: Path, *, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """Read a submitted file without following symlinks and without reading past ``limit``."""
    name = path.name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise InvalidNotebookError(f"{name} was not submitted") from None
    if stat.S_ISLNK(info.st_mode):
        raise InvalidNotebookError(
            f"{name} is a symbolic link, not a notebook; submit the notebook file itself"
        )
    if not stat.S_ISREG(info.st_mode):
        raise InvalidNotebookError(f"{name} is not a regular file; submit the notebook file")
    if info.st_size > limit:
        raise InvalidNotebookError(
            f"{name} is {info.st_size / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB limit; clear "
            "the outputs (Kernel > Restart & Clear Output) and submit again"
        )
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise InvalidNotebookError(f"{name} is over the {limit / 1e6:.0f} MB limit")
    return data


def parse_notebook(data: bytes, *, name: str) -> NotebookNode:
    """Parse notebook bytes into an nbformat 4 notebook, or say plainly what is wrong."""
    if not data.strip():
        raise InvalidNotebookError(
            f"{name} is empty; save the notebook in Jupyter (File > Save) and submit it again"
        )
    binary = _describe_binary(data[:64])
    if binary:
        raise InvalidNotebookError(
            f"{name} is {binary}, not a notebook; submit the .ipynb file as Jupyter saves it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidNotebookError(
            f"{name} is not UTF-8 text (byte {exc.start}); submit the .ipynb file as Jupyter "
            "saves it"
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) - 1:
            reason = "it ends too early (the file is truncated)"
        else:
            reason = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise InvalidNotebookError(
            f"{name} is not valid notebook JSON ({reason}); download the notebook again from "
            "Jupyter (File > Download) and submit that file"
        ) from None
    except RecursionError:
        raise InvalidNotebookError(f"{name} is nested too deeply to be a notebook") from None
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise InvalidNotebookError(
            f"{name} is JSON but not a notebook (it has no cells); submit the .ipynb file"
        )
    version = raw.get("nbformat")
    if not isinstance(version, int) or version < 3:
        raise InvalidNotebookError(
            f"{name} has nbformat {version!r}, which is too old or missing; open it in a "
            "current Jupyter, save it, and submit again"
        )
    if version > 4:
        raise InvalidNotebookError(
            f"{name} has nbformat {version}, newer than this grader understands (4)"
        )
    nb = nbformat.from_dict(raw)
    if version == 3:
        try:
            nb = nbformat.convert(rejoin_v3(nb), 4)
        except Exception as exc:
            raise InvalidNotebookError(
                f"{name} is an nbformat 3 notebook that could not be converted "
                f"({type(exc).__name__}: {exc}); open it in a current Jupyter and save it"
            ) from None
    return _clean(nb, name)


#: The keys nbformat 4.5 allows on a cell, by cell type.
_CELL_KEYS = {
    "code": {"id", "cell_type", "metadata", "source", "outputs", "execution_count"},
    "markdown": {"id", "cell_type", "metadata", "source", "attachments"},
    "raw": {"id", "cell_type", "metadata", "source", "attachments"},
}


def _clean(nb: NotebookNode, name: str) -> NotebookNode:
    """Keep what nbformat 4.5 allows; repair the slips Colab and old Jupyters make.

    Submissions often carry a stray key, no cell ids or odd metadata; those are repaired
    rather than rejected. A cell that is not a cell at all is rejected.
    """
    from nbformat.v4.nbbase import random_cell_id

    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise InvalidNotebookError(f"{name} has no list of cells; submit the .ipynb file")
    if not isinstance(nb.get("metadata"), dict):
        nb["metadata"] = NotebookNode()
    seen_ids: set[str] = set()
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in _CELL_KEYS:
            raise InvalidNotebookError(f"{name}: cell {index + 1} is not a valid notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise InvalidNotebookError(f"{name}: cell {index + 1} has no readable source")
        cell["source"] = source
        for key in set(cell) - _CELL_KEYS[cell["cell_type"]]:
            del cell[key]
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = NotebookNode()
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen_ids or len(cell_id) > 64:
            cell["id"] = random_cell_id()
        seen_ids.add(cell["id"])
        if cell["cell_type"] == "code":
            # Outputs are cleared before grading anyway; only their shape must be sane.
            if not isinstance(cell.get("outputs"), list):
                cell["outputs"] = []
            cell.setdefault("execution_count", None)
    nb.nbformat = 4
    nb.nbformat_minor = 5
    return nb


def read_notebook(path: Path, *, limit: int = MAX_NOTEBOOK_BYTES) -> NotebookNode:
    """Read a (possibly hostile) notebook file; :class:`InvalidNotebookError` says why not."""
    return parse_notebook(read_bytes_safely(path, limit=limit), name=path.name)


def notebook_text(nb: NotebookNode) -> str:
    """The notebook as stable text: the same notebook always gives the same bytes."""
    return nbformat.writes(nb, version=4) + "\n"


def write_notebook(nb: NotebookNode, path: Path) -> None:
    """Write ``nb`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(notebook_text(nb), encoding="utf-8")
    os.replace(tmp, path)


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's nbgrader metadata ({} when none)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def clone(nb: NotebookNode) -> NotebookNode:
    """A deep copy, so pipeline steps never change their input."""
    return copy.deepcopy(nb)
