"""Keep a slow optional import out of the grader's processes.

jsonschema (which nbformat uses to validate notebooks) imports ``rfc3987_syntax`` when it is
installed, an optional extra that Jupyter's event system pulls in; it builds a grammar at
import time, about 1.6 s of every ``autograder`` command and of every grading worker
(``docs/benchmarks.md``). Notebook validation uses no IRI formats, so the grader's own
processes (the CLI and its workers, never a library user's) mark it absent.
"""

from __future__ import annotations

import os
import sys

SLOW_OPTIONAL = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    """Make ``import rfc3987_syntax`` fail fast (jsonschema treats it as not installed)."""
    for name in SLOW_OPTIONAL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def start_worker(environ: dict[str, str]) -> None:
    """Initializer of a local grading worker: the coordinator's environment as it is now (a
    worker forks from a fork server started earlier, with the environment of that moment)."""
    skip_slow_optional_imports()
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
