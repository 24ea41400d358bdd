"""The grading code, imported before the first job: by the local pool's fork server, once,
before any grading worker forks from it, and by each worker of this machine's Dask cluster as
it starts (a Dask preload).

Each worker would otherwise import nbgrader, nbclient and jupyter_client on its first job,
about 1.5 s of CPU at the start of every ``grade``; both happen in the background while the
coordinator reads the submissions. Local workers still start clean: the fork server
(multiprocessing's ``forkserver`` start method) is a fresh interpreter, never a copy of the
coordinator. This also keeps jsonschema's slow optional grammar out (see ``fastimport``).
"""

from __future__ import annotations

from .fastimport import skip_slow_optional_imports

skip_slow_optional_imports()

import jupyter_client.manager  # noqa: E402, F401
import nbclient  # noqa: E402, F401
import nbgrader.preprocessors  # noqa: E402
import nbgrader.utils  # noqa: E402, F401

from . import checks, csvcheck, evaluate, execute, kernel, pipeline, policy, sandbox  # noqa: E402, F401
