"""Keep a slow optional import out of the grader's processes.

jsonschema (which nbformat uses to validate notebooks) imports ``rfc3987_syntax`` when it is
installed, an optional extra that Jupyter's event system pulls in; it builds a grammar at
import time, about 1.6 s of every ``autograder`` command and of every grading worker
(``docs/benchmarks.md``). Notebook validation uses no IRI formats, so the grader's own
processes (the CLI and its workers, never a library user's) mark it absent.
"""

from __future__ import annotations

import sys

SLOW_OPTIONAL = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    """Make ``import rfc3987_syntax`` fail fast (jsonschema treats it as not installed)."""
    for name in SLOW_OPTIONAL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def dask_setup(worker: object) -> None:
    """Dask preload hook (``--preload autograder.fastimport``): the same for Dask workers."""
    skip_slow_optional_imports()
