"""The last cell of a student notebook: hand in the notebook it is in, with nothing to install.

When ``[service] url`` is set, ``autograder release`` appends :func:`submit_cell` to each
student version (the source does not carry it; it is made from the configuration alone, so
``release --check`` stays exact). The cell embeds the client (autograder/submit.py, standard
library only) and the functions below marked *runs in the cell*, which find the notebook's
content (Colab's ``get_ipynb``, the saved file Jupyter or VS Code names), ask for the token
once, and print the queue position, the score and the feedback link.

The cell never hands in while it is graded: sanitize.drop_hand_in_cell removes it (by its
tag) before our grader runs a notebook, and should a grader run it all the same (nbgrader's
autograde does), its first lines return when ``AUTOGRADER`` (execute.kernel_env) or
``NBGRADER_EXECUTION`` (nbgrader) is set.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from nbformat import NotebookNode

from . import submit
from .submit import (
    TOKEN_VARIABLE,
    Client,
    Pace,
    SubmitError,
    _Display,
    _wait,
    _when,
    check_uploads,
    clean,
    load_tokens,
    multipart,
    normalize_server,
    report,
    tokens_path,
)

#: The hand-in cell's tag (and cell id).
TAG = "autograder-submit"
#: Set in the kernels that grade (the grader's and nbgrader's): the cell does nothing there.
GRADING_VARIABLES = ("AUTOGRADER", "NBGRADER_EXECUTION")
SAVE_FIRST = "save the notebook first (Ctrl-S): the saved file is what is handed in"


# --- runs in the cell (standard library and submit.py's names only) -----------------------


def saved_notebook(
    notebook: str, environ: Mapping[str, str], namespace: Mapping[str, Any]
) -> Path | None:
    """Runs in the cell. The saved file of this notebook: VS Code's ``__vsc_ipynb_file__``,
    Jupyter's ``JPY_SESSION_NAME`` (absolute, or relative to the kernel's folder), else the
    session of this kernel that a running Jupyter server lists; None when none exists."""
    named = [namespace.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME")]
    for name in [n for n in named if isinstance(n, str) and n.endswith(".ipynb")]:
        for path in (Path.cwd() / name, Path.cwd() / Path(name).name):  # (an absolute name wins)
            if path.is_file():
                return path
    return _session_notebook(environ)


def _session_notebook(environ: Mapping[str, str]) -> Path | None:
    """Runs in the cell. The notebook of this kernel's session, asked of the Jupyter servers
    this machine runs (their ``jpserver-*.json``; loopback addresses only)."""
    try:
        from ipykernel.connect import get_connection_file  # in every Jupyter kernel

        kernel = Path(get_connection_file()).stem.removeprefix("kernel-")
    except Exception:
        return None
    home = Path.home()
    runtime = environ.get("JUPYTER_RUNTIME_DIR")
    folders = [Path(runtime)] if runtime else []
    data = environ.get("JUPYTER_DATA_DIR") or environ.get("XDG_DATA_HOME")
    folders += [Path(data) / "runtime"] if data else []
    folders += [home / ".local/share/jupyter/runtime", home / "Library/Jupyter/runtime"]
    folders += [Path(environ.get("APPDATA", home)) / "jupyter/runtime"]
    for info_file in sorted(p for f in folders if f.is_dir() for p in f.glob("jpserver-*.json")):
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
            url, root = str(info["url"]), Path(info.get("root_dir") or info["notebook_dir"])
            if urllib.parse.urlsplit(url).hostname not in ("localhost", "127.0.0.1", "::1"):
                continue
            headers = {"Authorization": f"token {info.get('token', '')}"}
            request = urllib.request.Request(url.rstrip("/") + "/api/sessions", headers=headers)
            with urllib.request.urlopen(request, timeout=3) as answer:
                sessions = json.loads(answer.read(1024 * 1024))
            for session in sessions:
                if session.get("kernel", {}).get("id") == kernel:
                    path = root / session["path"]
                    return path if path.is_file() else None
        except Exception:  # a server gone, an old format: try the next
            continue
    return None


def notebook_content(
    notebook: str,
    server: str,
    environ: Mapping[str, str],
    namespace: Mapping[str, Any],
    say: Callable[[str], None],
) -> bytes:
    """Runs in the cell. The notebook as it is now: on Colab what the page holds (its
    ``get_ipynb`` request), elsewhere the saved file (saying to save it first)."""
    try:
        from google.colab import _message  # Colab only
    except ImportError:
        _message = None
    if _message is not None:
        try:
            answer = _message.blocking_request("get_ipynb", request="", timeout_sec=60)
            return json.dumps(answer["ipynb"], ensure_ascii=False).encode("utf-8")
        except Exception as exc:
            raise SubmitError(
                f"Colab did not give this notebook's content ({clean(exc, 120)}); download it"
                f" (File > Download > .ipynb) and upload {notebook} on the workshop page"
            ) from None
    path = saved_notebook(notebook, environ, namespace)
    if path is None:
        raise SubmitError(
            f"this cell cannot find the notebook's file here; download it as {notebook} and "
            "upload it on the workshop page (your personal link), or run: autograder submit "
            f"{notebook} --server {server}"
        )
    say(f"{SAVE_FIRST}; handing in {clean(path, 200)}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SubmitError(f"{clean(path, 200)} cannot be read ({clean(exc, 120)})") from None


def forget_token(store: Path, server: str) -> None:
    """Runs in the cell. Remove a refused token from ``store`` so the next run asks again."""
    tokens = load_tokens(store)
    if tokens.pop(server, None) is None:
        return
    fd, temporary = tempfile.mkstemp(dir=store.parent, prefix=".tokens-")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(tokens, file, indent=2, sort_keys=True)
    os.replace(temporary, store)


def hand_in_here(
    *, server: str, assignment: str, notebook: str, environ: Mapping[str, str] | None = None,
    namespace: Mapping[str, Any] | None = None, ask: Callable[[str], str] | None = None,
    out: IO[str] | None = None, err: IO[str] | None = None, pace: Pace | None = None,
) -> int:  # fmt: skip
    """Runs in the cell. Hand in this notebook to ``assignment`` at ``server``; print the queue
    position, then the score and the feedback link. The token: ``$AUTOGRADER_TOKEN``, else the
    one saved after its first use, else asked (``getpass``); never printed. The status as
    :func:`submit.hand_in`'s: 0 a verdict, 1 refused or unreachable, 130 Ctrl-C."""
    import getpass

    environ = os.environ if environ is None else environ
    out, err = out or sys.stdout, err or sys.stderr
    # A service that is down is given up within about 15 s, and a silent one within 20 s.
    pace = pace or Pace(first=1.0, factor=2.0, cap=8.0, total=20.0, poll=2.0, timeout=20.0)
    display, store, source, ident = _Display(out, pace.clock), tokens_path(environ), "", ""
    try:
        server = normalize_server(server)
        data = notebook_content(notebook, server, environ, namespace or {}, display.say)
        check_uploads([(notebook, data)])
        token, source = environ.get(TOKEN_VARIABLE, ""), "environment"
        if not token:
            token, source = load_tokens(store).get(server, ""), "file"
        if not token:
            token = (ask or getpass.getpass)("Your personal token (typing is hidden): ")
            source = "prompt"
        token = token.strip()
        if not re.fullmatch(r"[\x21-\x7e]+", token):
            raise SubmitError("that is not a token; copy your personal token again and rerun")
        client = Client(server, token, source=source, store=store, pace=pace, say=display.say)
        queued = client.call("POST", "/api/submissions", *multipart(assignment, [(notebook, data)]))
        if not isinstance(queued, dict) or not isinstance(queued.get("id"), str | int):
            raise client.not_the_service("its answer to the upload has no submission id")
        ident = str(queued["id"])
        display.say(f"handed in {notebook}: submission {clean(ident)}")
        path = "/api/submissions/" + urllib.parse.quote(ident, safe="")
        report(_wait(client, path, {"status": "queued", **queued}, display), server, out)
        return 0
    except KeyboardInterrupt:
        display.say(
            f"stopped waiting; submission {clean(ident)} is still graded" if ident else "stopped"
        )
        return 130
    except SubmitError as exc:
        display.clear()
        if exc.status == 401:
            if source == "file":
                forget_token(store, server)
            where = f" in {TOKEN_VARIABLE}" if source == "environment" else ""
            print(
                f"error: the workshop service does not know the token{where} (wrong or revoked): "
                "ask the instructor for your personal token and run this cell again.",
                file=err,
            )
            return 1
        print(f"error: {exc}", file=err)
        if exc.status == 429:
            print(f"you can submit again {_when(exc.retry_after)}", file=err)
        return exc.code


#: What the cell embeds after submit.py, in this order.
RUNS_IN_CELL = (saved_notebook, _session_notebook, notebook_content, forget_token, hand_in_here)


# --- the cell ---------------------------------------------------------------------------


def client_source() -> str:
    """The code the cell runs: submit.py, then the functions above that run in the cell."""
    parts = [inspect.getsource(submit).rstrip()]
    parts += [inspect.getsource(function).rstrip() for function in RUNS_IN_CELL]
    parts.append(f"SAVE_FIRST = {SAVE_FIRST!r}")
    text = "\n\n\n".join(parts) + "\n"
    if "'''" in text or text.endswith("\\\n"):  # pragma: no cover - a guard on our own code
        raise RuntimeError("the client's source cannot be embedded in a raw ''' string")
    return text


def cell_source(*, server: str, assignment: str, notebook: str) -> str:
    """The cell's text: a title, what it does, the call, then the embedded client."""
    call = f"server={server!r}, assignment={assignment!r}, notebook={notebook!r}"
    return f"""# @title Hand in this notebook
# Run this cell to hand in this notebook (save it first: Ctrl-S) to the workshop service
# at {server}. It asks for your personal token once and prints your place in the queue,
# then your score and the link to your feedback. Nothing to install: the code below is
# Python's standard library only (autograder's client). This cell is read-only; it does
# nothing while the notebook is graded.


def _autograder_hand_in():
    import os, sys, types

    if any(os.environ.get(name) for name in {GRADING_VARIABLES!r}):
        return None  # being graded: never hand in from the grader
    module = types.ModuleType("autograder_submit_cell")
    sys.modules[module.__name__] = module  # (dataclasses look their module up)
    exec(compile(_AUTOGRADER_CLIENT, "autograder_submit_cell.py", "exec"), module.__dict__)
    module.hand_in_here({call}, namespace=globals())
    return None


_AUTOGRADER_CLIENT = r\'\'\'
{client_source()}\'\'\'

_autograder_hand_in()
"""


def submit_cell(
    *, server: str, assignment: str, notebook: str, with_id: bool = True
) -> NotebookNode:
    """The read-only cell that hands in ``notebook``; the same arguments always give the same
    cell. ``with_id``: give it a cell id (nbformat 4.5 and later).

    Locked as the frontends lock (``editable``, ``deletable``), found by its tag, and without
    nbgrader metadata: nbgrader's own autograde drops the grade id of a cell its gradebook
    does not know, then refuses the whole notebook as corrupted."""
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(cell_source(server=server, assignment=assignment, notebook=notebook))
    if with_id:
        cell.id = TAG
    else:
        del cell["id"]
    cell.metadata = NotebookNode(
        {
            "cellView": "form",  # Colab shows the title, the code folded
            "deletable": False,
            "editable": False,
            "jupyter": {"source_hidden": True},
            "tags": [TAG],
        }
    )
    return cell


def is_submit_cell(cell: NotebookNode) -> bool:
    """Whether ``cell`` carries the hand-in cell's tag."""
    tags = cell.get("metadata", {}).get("tags")
    return isinstance(tags, list) and TAG in tags


def add_submit_cell(
    nb: NotebookNode, *, server: str, assignment: str, notebook: str
) -> NotebookNode:
    """``nb`` with the hand-in cell appended (a new notebook; ``nb`` is not changed)."""
    from .notebooks import clone

    out = clone(nb)
    with_id = (out.nbformat, out.get("nbformat_minor", 0)) >= (4, 5)
    out.cells.append(
        submit_cell(server=server, assignment=assignment, notebook=notebook, with_id=with_id)
    )
    return out
