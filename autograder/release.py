"""``autograder release``: instructor notebooks in ``source/`` become student versions.

The steps are nbgrader's own preprocessors, in nbgrader's order (its GenerateAssignment), so
solutions, hidden tests and outputs are cleared and cells locked and checksummed exactly as
nbgrader does; nbgrader's tools keep working on our course folders. The gradebook version of a
notebook (what nbgrader's SaveCells records: solutions cleared, hidden tests still in) comes
from the same steps, stopped before the hidden tests are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

import nbformat
from nbformat import NotebookNode

from .collect import read_regular_file
from .config import ASSIGNMENT_FILE, AssignmentConfig, Course, load_assignment
from .errors import ReleaseError
from .notebooks import clone, nbgrader_meta, notebook_text
from .submitcell import add_submit_cell

Step = Callable[[NotebookNode, dict[str, Any]], NotebookNode]

#: Files of ``source/<assignment>/`` that are never released (grader configuration, clutter).
NOT_RELEASED = {ASSIGNMENT_FILE, ".ipynb_checkpoints", "__pycache__", ".DS_Store"}


def _nbgrader_step(name: str, factory: Callable[[], Any]) -> Step:
    """Wrap one nbgrader preprocessor as a pipeline step that never changes its input."""

    def step(nb: NotebookNode, resources: dict[str, Any]) -> NotebookNode:
        try:
            out, _ = factory().preprocess(clone(nb), resources)
        except Exception as exc:
            where = resources.get("nbgrader", {}).get("notebook", "?")
            raise ReleaseError(f"{where}.ipynb: {name} failed: {exc}") from exc
        return out

    step.__name__ = name
    return step


def _preprocessors() -> dict[str, Step]:
    # Imported here: nbgrader pulls in its whole app stack, which 'autograder --help' needs not.
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    return {
        "lock_cells": _nbgrader_step("lock_cells", LockCells),
        "clear_solutions": _nbgrader_step("clear_solutions", ClearSolutions),
        "clear_outputs": _nbgrader_step("clear_outputs", ClearOutput),
        "check_metadata": _nbgrader_step("check_metadata", CheckCellMetadata),
        "compute_checksums": _nbgrader_step("compute_checksums", ComputeChecksums),
        "clear_hidden_tests": _nbgrader_step("clear_hidden_tests", ClearHiddenTests),
        "clear_mark_scheme": _nbgrader_step("clear_mark_scheme", ClearMarkScheme),
    }


#: nbgrader GenerateAssignment's order, up to where its SaveCells records the gradebook.
GRADEBOOK_STEPS = (
    "lock_cells",
    "clear_solutions",
    "clear_outputs",
    "check_metadata",
    "compute_checksums",
)
#: ... and on to the student version.
RELEASE_STEPS = (
    *GRADEBOOK_STEPS,
    "clear_hidden_tests",
    "clear_mark_scheme",
    "compute_checksums",
    "check_metadata",
)


#: nbgrader's markers of a hidden-test region (ClearHiddenTests' default delimiters).
BEGIN_HIDDEN_TESTS = "BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "END HIDDEN TESTS"


def split_hidden_tests(source: str, *, strict: bool = False) -> tuple[str, list[str]]:
    """``source`` as nbgrader's ClearHiddenTests releases it (every region from a line holding
    ``BEGIN HIDDEN TESTS`` to one holding ``END HIDDEN TESTS`` removed, the marker lines too),
    and the lines inside the regions (markers left out).

    nbgrader's own walk, split on newlines only, as nbgrader splits: a marker line anywhere
    starts or ends a region, and is dropped. ``strict`` raises RuntimeError where nbgrader does
    (a region opened inside another, or never closed); otherwise an unclosed region runs to the
    end of the text.
    """
    kept: list[str] = []
    hidden: list[str] = []
    inside = False
    for line in source.split("\n"):
        if BEGIN_HIDDEN_TESTS in line:
            if inside and strict:
                raise RuntimeError("Encountered nested begin hidden tests statements")
            inside = True
        elif END_HIDDEN_TESTS in line:
            inside = False
        else:
            (hidden if inside else kept).append(line)
    if inside and strict:
        raise RuntimeError("No end hidden tests statement found")
    return "\n".join(kept), hidden


def strip_hidden_tests(source: str, *, strict: bool = False) -> str:
    """``source`` without its hidden-test regions, markers included, exactly as released."""
    return split_hidden_tests(source, strict=strict)[0]


def hidden_test_lines(source: str) -> list[str]:
    """The lines between ``BEGIN HIDDEN TESTS`` and ``END HIDDEN TESTS`` (nbgrader's markers)."""
    return split_hidden_tests(source)[1]


def run_steps(
    nb: NotebookNode, steps: Sequence[str], *, notebook: str, assignment: str
) -> NotebookNode:
    """Apply the named steps in order; each returns a new notebook."""
    table = _preprocessors()
    resources: dict[str, Any] = {"nbgrader": {"notebook": notebook, "assignment": assignment}}
    for name in steps:
        nb = table[name](nb, resources)
    return nb


def read_source(course: Course, assignment: str, notebook: str) -> NotebookNode:
    """The instructor notebook (trusted input: read as nbformat reads it)."""
    path = course.source(assignment) / f"{notebook}.ipynb"
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise ReleaseError(f"{path} does not exist") from None
    except Exception as exc:
        raise ReleaseError(f"{path} is not a readable notebook: {exc}") from exc


def gradebook_version(course: Course, assignment: str, notebook: str) -> NotebookNode:
    """The notebook as nbgrader's gradebook records it (solutions cleared, hidden tests in)."""
    nb = read_source(course, assignment, notebook)
    return run_steps(nb, GRADEBOOK_STEPS, notebook=notebook, assignment=assignment)


def student_version(course: Course, assignment: str, notebook: str) -> NotebookNode:
    """The notebook a participant receives."""
    nb = read_source(course, assignment, notebook)
    return run_steps(nb, RELEASE_STEPS, notebook=notebook, assignment=assignment)


def _released_files(course: Course, config: AssignmentConfig) -> dict[str, bytes]:
    """Every file ``release/<assignment>/`` must hold, by relative path."""
    src = course.source(config.name)
    files: dict[str, bytes] = {}
    for nb_name in config.notebooks:
        nb = student_version(course, config.name, nb_name)
        if config.service.url:  # the hand-in cell, made from the configuration alone
            nb = add_submit_cell(
                nb, server=config.service.url, assignment=config.name, notebook=f"{nb_name}.ipynb"
            )
        files[f"{nb_name}.ipynb"] = notebook_text(nb).encode("utf-8")
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in NOT_RELEASED or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix != ".ipynb":
            files[rel.as_posix()] = path.read_bytes()
    return files


def released_file(course: Course, assignment: str, url: str, *, limit: int) -> bytes | None:
    """The bytes of the file a notebook names by relative ``url`` (``images/plot.png``), as
    the released assignment ships it: ``release/<assignment>/`` when it holds the file, else
    the file of ``source/`` that a release would ship. None for anything else: a URL with a
    scheme, an absolute path or ``..``, a notebook, a file release leaves out, a link, or
    more than ``limit`` bytes."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme or parts.netloc or "\\" in url:
        return None
    rel = PurePosixPath(unquote(parts.path))
    if (
        rel.is_absolute()
        or not rel.parts
        or any(p in ("..", "") or p in NOT_RELEASED or p.startswith(".") for p in rel.parts)
        or rel.suffix == ".ipynb"
    ):
        return None
    for base in (course.release(assignment), course.source(assignment)):
        path = base.joinpath(*rel.parts)
        try:
            inside = path.resolve().is_relative_to(base.resolve())
        except OSError:
            continue
        if inside and path.is_file():
            return read_regular_file(path, limit)
    return None


@dataclasses.dataclass(frozen=True)
class ReleaseReport:
    """What a release wrote, or (with check) what is out of date."""

    assignment: str
    written: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.stale or self.missing or self.extra)

    def problems(self) -> list[str]:
        """One line per out-of-date file, naming the file and what is wrong."""
        base = f"release/{self.assignment}"
        return (
            [f"{base}/{p} is stale (source/ changed since the last release)" for p in self.stale]
            + [f"{base}/{p} is missing" for p in self.missing]
            + [f"{base}/{p} is not produced by source/ any more" for p in self.extra]
        )


def release(course: Course, assignment: str, *, check: bool = False) -> ReleaseReport:
    """Write the student versions of ``assignment`` (with ``check``: write nothing, compare)."""
    config = load_assignment(course, assignment)
    expected = _released_files(course, config)
    dest = course.release(assignment)
    present = (
        {
            p.relative_to(dest).as_posix(): p
            for p in dest.rglob("*")
            if p.is_file() and ".ipynb_checkpoints" not in p.parts
        }
        if dest.is_dir()
        else {}
    )
    stale = tuple(
        sorted(
            r for r, data in expected.items() if r in present and present[r].read_bytes() != data
        )
    )
    missing = tuple(sorted(r for r in expected if r not in present))
    extra = tuple(sorted(r for r in present if r not in expected))
    if check:
        return ReleaseReport(assignment, stale=stale, missing=missing, extra=extra)
    for rel in extra:
        present[rel].unlink()
    written = []
    for rel, data in expected.items():
        if rel in present and rel not in stale:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        written.append(rel)
    return ReleaseReport(assignment, written=tuple(written), extra=extra)


def require_released(course: Course, assignment: str) -> None:
    """Raise ReleaseError when ``release/<assignment>/`` is not what ``source/`` releases:
    grading against a source the participants never saw would tell them they edited cells
    the instructor changed, and score them on tests they were not given."""
    report = release(course, assignment, check=True)
    if report.in_sync:
        return
    problems = report.problems()
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ReleaseError(
        f"source/{assignment} changed since it was released: {'; '.join(problems[:3])}{more}; "
        f"run 'autograder release {assignment}' first (participants need the new version), "
        "or pass --allow-stale to grade against the new source anyway"
    )


# --- the source index: what the grader restores submissions from ---------------------------


@dataclasses.dataclass(frozen=True)
class SourceCell:
    """One nbgrader cell of the gradebook version (what OverwriteCells restores from)."""

    grade_id: str
    cell_type: str
    source: str
    checksum: str | None
    locked: bool
    grade: bool
    solution: bool
    task: bool
    points: float | None


@dataclasses.dataclass(frozen=True)
class SourceNotebook:
    """The gradebook version of one notebook, as plain data a worker can carry anywhere."""

    name: str
    kernelspec: dict[str, Any]
    cells: tuple[SourceCell, ...]

    def cell(self, grade_id: str) -> SourceCell | None:
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        return None

    @property
    def grade_cells(self) -> tuple[SourceCell, ...]:
        """The cells with ``grade`` set: tests and answers graded by hand."""
        return tuple(c for c in self.cells if c.grade)

    @property
    def scored_cells(self) -> tuple[SourceCell, ...]:
        """Every cell nbgrader gives points to: grade cells and tasks, in notebook order
        (the notebook's ``max_score`` in the gradebook is the sum of their points)."""
        return tuple(c for c in self.cells if c.grade or c.task)


def index_notebook(nb: NotebookNode, name: str) -> SourceNotebook:
    """Extract the nbgrader cells of a gradebook-version notebook (what SaveCells records)."""
    from nbgrader.utils import is_locked

    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not any(meta.get(k) for k in ("grade", "solution", "locked", "task")):
            continue
        cells.append(
            SourceCell(
                grade_id=str(meta["grade_id"]),
                cell_type=cell.cell_type,
                source=cell.source,
                checksum=meta.get("checksum"),
                # nbgrader's sense of locked: every test cell is, whatever its metadata says.
                locked=is_locked(cell),
                grade=bool(meta.get("grade")),
                solution=bool(meta.get("solution")),
                task=bool(meta.get("task")),
                points=float(meta["points"]) if meta.get("grade") or meta.get("task") else None,
            )
        )
    return SourceNotebook(
        name=name, kernelspec=dict(nb.metadata.get("kernelspec", {})), cells=tuple(cells)
    )


def source_index(course: Course, config: AssignmentConfig) -> dict[str, SourceNotebook]:
    """The gradebook version of every notebook of the assignment, by notebook name."""
    return {
        name: index_notebook(gradebook_version(course, config.name, name), name)
        for name in config.notebooks
    }


def fingerprint(index: dict[str, SourceNotebook], config: AssignmentConfig) -> str:
    """A hash of everything grading depends on from the instructor's side."""
    config_data = dataclasses.asdict(config)
    # What a waiting kernel imports changes how fast a notebook starts, not its grade.
    config_data["execute"].pop("prestart_imports", None)
    # Nor do deadlines and upload limits of the service.
    config_data.pop("service", None)
    payload = json.dumps(
        {
            "index": {k: dataclasses.asdict(v) for k, v in sorted(index.items())},
            "config": config_data,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
