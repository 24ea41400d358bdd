"""What is taken from a submission folder: the notebook, and the files the assignment names.

A check scores only what the notebook produced while it ran in the sandbox, so nothing else
the participant handed in reaches the work folder: not a CSV under the name a check scores
(it is validated and reported, never scored), not a ``data/`` folder beside the released
data, not hidden files or folders. ``[submission] files`` in ``assignment.toml`` names what
else a notebook needs (``helpers.py``, ``images/*.png``); :func:`parse_submission` refuses a
name that would let a participant hand in what a check scores. Everything else is listed in
one note, so the participant knows what was not used.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, InvalidNotebookError

#: One part of a name in ``files``: no slash or backslash, not hidden, ``*`` and ``?`` as in
#: a shell (within one folder level).
_PART = re.compile(r"^[A-Za-z0-9_*?+-][A-Za-z0-9_.*?+ -]*$")
#: Folders of the work folder that belong to the grader.
OUTBOX, DATA = "outbox", "data"
#: nbgrader's record of when a submission arrived: read from the submission, never copied.
TIMESTAMP = "timestamp.txt"
#: Names shown in the note on what was left out.
SHOWN = 10


@dataclasses.dataclass(frozen=True)
class SubmissionConfig:
    """What is taken from a submission besides its notebooks."""

    files: tuple[str, ...] = dataclasses.field(
        default=(),
        metadata={
            "help": "other files the notebook needs, taken from the submission (e.g. "
            "['helpers.py', 'images/*.png']); everything else is left out"
        },
    )


def scored_files(checks: Iterable[Any]) -> dict[str, str]:
    """The files the CSV checks among ``checks`` score (relative to the notebook's folder),
    each with its check's id."""
    return {
        PurePosixPath(c.file).as_posix(): c.id for c in checks if getattr(c, "kind", "") == "csv"
    }


def parse_submission(
    table: Any, *, where: str, outputs: dict[str, str], dataset: str
) -> SubmissionConfig:
    """``[submission]`` of ``assignment.toml``; ``outputs`` maps each file a check scores to
    the check's id, ``dataset`` is the assignment's (its data is mounted at ``data/``)."""
    where = f"{where} [submission]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - {"files"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; the valid key is files")
    files = table.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(
            f"{where}: files must be a list of file names such as ['helpers.py', "
            f"'images/*.png'], got {files!r}"
        )
    for name in files:
        check_pattern(name, where=where, outputs=outputs, dataset=dataset)
    return SubmissionConfig(files=tuple(files))


def check_pattern(name: str, *, where: str, outputs: dict[str, str], dataset: str) -> None:
    """Refuse a name of ``files`` that is not a plain relative path, or that would take from
    the submission a file the grader makes or scores."""
    parts = name.split("/")
    if not all(_PART.match(part) for part in parts) or "**" in name:
        raise ConfigError(
            f"{where}: files: {name!r} is not a file name inside the submission folder (no "
            "leading '/', no '..', no hidden names, no backslashes; '*' and '?' match within "
            "one folder); write e.g. 'helpers.py' or 'images/*.png'"
        )
    if parts[-1].endswith(".ipynb"):
        raise ConfigError(
            f"{where}: files: {name!r} names a notebook; the assignment's notebooks are always "
            "taken and no other is: remove it"
        )
    for output, check in outputs.items():
        if named(output, [name]):
            raise ConfigError(
                f"{where}: files: {name!r} would take {output}, the file check {check!r} "
                "scores, from the submission; a check scores only what the notebook writes "
                "while it is graded: remove it, or give the check another file"
            )
    for folder, why in (
        (OUTBOX, "the grader collects the model"),
        (DATA, "the released data is mounted"),
    ):
        if len(parts) > 1 and fnmatchcase(folder, parts[0]) and (folder != DATA or dataset):
            raise ConfigError(
                f"{where}: files: {name!r} is inside {folder}/, where {why}; remove it"
            )


def named(rel: str, patterns: Iterable[str]) -> bool:
    """Whether the relative POSIX path ``rel`` is one of ``patterns`` (a shell pattern per
    folder level; a hidden part or a notebook is never named)."""
    parts = rel.split("/")
    if any(part.startswith(".") for part in parts) or rel.endswith(".ipynb"):
        return False
    for pattern in patterns:
        wanted = pattern.split("/")
        if len(wanted) == len(parts) and all(map(fnmatchcase, parts, wanted)):
            return True
    return False


@dataclasses.dataclass
class Taken:
    """What :func:`take_submission` did: notes for the participant, and the files handed in
    under a name a check scores (left in the submission, validated there, never scored)."""

    notes: list[str] = dataclasses.field(default_factory=list)
    handed_in: dict[str, Path] = dataclasses.field(default_factory=dict)


def take_submission(
    src: Path,
    dest: Path,
    *,
    notebooks: Sequence[str],
    files: Sequence[str],
    outputs: Iterable[str],
    released: Iterable[str] = (),
    skip_data: bool = False,
    skipped_dirs: frozenset[str] = frozenset(),
    max_files: int,
    max_bytes: int,
) -> Taken:
    """Copy the notebooks (``<name>.ipynb``; with one notebook, the only one there is under
    another name) and the files named by ``files`` from ``src`` into ``dest``. Links are
    never followed; files a check scores are recorded in ``handed_in``; the rest is left out
    with a note (the released files and ``data/``, replaced by the grader, without one)."""
    taken = Taken()
    # os.walk follows a link given as its top: a submission folder (or student folder) that
    # is a link to source/ would be graded as the instructor's solution.
    for folder in (src, src.parent):
        if folder.is_symlink():
            raise InvalidNotebookError(
                f"the folder {folder.name} is a symbolic link, not a submission; hand in "
                "the notebook itself"
            )
    wanted = {f"{name}.ipynb" for name in notebooks}
    top = sorted(p.name for p in src.glob("*.ipynb") if not p.name.startswith(".") and p.is_file())
    if len(notebooks) == 1 and not (src / next(iter(wanted))).exists() and len(top) == 1:
        wanted = set(top)  # graded under the assignment's name (pipeline says so)
    scored, replaced = set(outputs), set(released)
    left: dict[str, int] = {}
    count = total = seen = 0
    truncated = False
    for root, dirs, names in os.walk(src, followlinks=False):
        rel_root = Path(root).relative_to(src)
        at_top = rel_root == Path(".")
        kept = []
        for d in sorted(dirs):
            rel = (rel_root / d).as_posix()
            if d in skipped_dirs or (at_top and d == DATA and skip_data):
                continue
            if (Path(root) / d).is_symlink():
                # A linked folder at any depth could reach the instructor's files (source/,
                # another participant's): the submission is refused, not half graded.
                raise InvalidNotebookError(
                    f"the folder {_shown(rel)} in the submission is a symbolic link; hand in "
                    "the files themselves, not links to them"
                )
            kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            seen += 1
            if seen > max_files:  # a folder of junk: listing it is bounded too
                truncated = True
                dirs[:] = []
                break
            path = Path(root) / name
            rel = (rel_root / name).as_posix()
            if at_top and name == TIMESTAMP:
                continue
            if rel in scored:
                taken.handed_in[rel] = path
                continue
            if not (rel in wanted or named(rel, files)):
                if rel not in replaced:
                    key = rel.split("/")[0] + ("/" if "/" in rel else "")
                    left[key] = left.get(key, 0) + 1
                continue
            if path.is_symlink():
                taken.notes.append(f"{_shown(rel)} is a symbolic link and was not used")
                continue
            if not path.is_file():
                continue
            if path.stat().st_nlink > 1:
                # A hard link shares its bytes with another file (the instructor's solution,
                # say): only files of the submission's own are graded.
                taken.notes.append(f"{_shown(rel)} is a hard link to another file and was not used")
                continue
            count += 1
            total += path.stat().st_size
            if count > max_files or total > max_bytes:
                raise InvalidNotebookError(
                    f"the files taken from the submission are more than {max_files} or "
                    f"{max_bytes // 2**20} MB; submit only the notebook and the files the "
                    "assignment asks for"
                )
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target, follow_symlinks=False)
    if left or truncated:
        taken.notes.append(left_out_note(left, truncated=truncated))
    return taken


def left_out_note(left: dict[str, int], *, truncated: bool = False) -> str:
    """One sentence listing what was not taken: a file by name, a folder with its count."""
    shown = [
        _shown(name) + (f" ({n} file{'' if n == 1 else 's'})" if name.endswith("/") else "")
        for name, n in sorted(left.items())[:SHOWN]
    ]
    more = len(left) - len(shown)
    listing = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    if truncated:
        listing += " (the folder holds more files than were looked at)"
    return (
        f"not used for grading: {listing}; only the notebook and the files the assignment "
        "names are taken from a submission, and a CSV counts only when the notebook writes it "
        "while it is graded"
    )


def _shown(name: str) -> str:
    """A file name of the submission as plain text: control characters out, bounded."""
    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in name)
    return clean if len(clean) <= 60 else clean[:57] + "..."
