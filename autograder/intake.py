"""What a submission's files are, from their bytes alone: the assignment's notebook(s) and its
CSV, each under the name the assignment gives it (never the name the participant sent)."""

from __future__ import annotations

import json
import os
from typing import Any


class Refused(Exception):
    """An answer other than success: a status code and one sentence saying what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def classify(
    config: Any, files: list[tuple[str, bytes]]
) -> tuple[dict[str, tuple[str, bytes]], dict[str, tuple[str, bytes]]]:
    """Each file as one of the assignment's notebooks (by content: notebook JSON) or its CSV
    (UTF-8 text with a comma in its first line), under the name the assignment gives it."""
    notebooks: dict[str, tuple[str, bytes]] = {}
    csvs: dict[str, tuple[str, bytes]] = {}
    csv_names = [c.file for c in config.checks if c.kind == "csv"]
    expected = [f"{nb}.ipynb" for nb in config.notebooks]
    for original, data in files:
        kind = sniff_kind(data)
        shown = original or "(no name)"
        if kind == "notebook":
            if len(expected) == 1:
                target = expected[0]
            else:
                stem = os.path.basename(original.replace("\\", "/"))
                if stem not in expected:
                    raise Refused(
                        422,
                        f"{shown!r} is not one of this assignment's notebooks "
                        f"({', '.join(expected)}); send each under its own name",
                    )
                target = stem
            if target in notebooks:
                raise Refused(422, f"two files are the notebook {target}; send it once")
            notebooks[target] = (original, data)
        elif kind == "csv":
            if not csv_names:
                raise Refused(415, f"{config.name} takes no CSV file; send the notebook only")
            target = csv_names[len(csvs)] if len(csvs) < len(csv_names) else ""
            if not target:
                raise Refused(422, f"{config.name} takes {len(csv_names)} CSV file(s); send fewer")
            csvs[target] = (original, data)
        else:
            raise Refused(
                415,
                f"{shown!r} is neither a notebook (.ipynb JSON) nor a CSV file; send the "
                "notebook you worked in (and your CSV)",
            )
    if not notebooks:
        raise Refused(415, "no notebook among the files; send your .ipynb file")
    return notebooks, csvs


def sniff_kind(data: bytes) -> str:
    """``notebook``, ``csv`` or ``other``, from the bytes alone."""
    head = data.lstrip()[:1]
    if head == b"{":
        try:
            nb = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return "other"
        return "notebook" if isinstance(nb, dict) and isinstance(nb.get("cells"), list) else "other"
    try:
        text = data[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return "other"
    first = text.splitlines()[0] if text.strip() else ""
    return "csv" if "," in first and "\0" not in text else "other"
