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
import threading
import time

SLOW_OPTIONAL = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    """Make ``import rfc3987_syntax`` fail fast (jsonschema treats it as not installed)."""
    for name in SLOW_OPTIONAL:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def start_worker(environ: dict[str, str], coordinator: int | None = None) -> None:
    """Initializer of a local grading worker: the coordinator's environment as it is now (a
    worker forks from a fork server started earlier, with the environment of that moment),
    and an end when the ``coordinator`` process is gone."""
    skip_slow_optional_imports()
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if coordinator is not None:
        threading.Thread(
            target=_exit_without, args=(coordinator,), name="autograder-orphan", daemon=True
        ).start()


def _exit_without(coordinator: int, every_s: float = 1.0) -> None:
    """A worker whose coordinator was killed would wait for jobs forever (its pool's queue
    never closes), holding its kernels: exit instead. Its sandboxed kernels, the running one
    and a prestarted spare, die with it (bubblewrap's --die-with-parent)."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(coordinator, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive (another user's process now holds the number)
            pass
