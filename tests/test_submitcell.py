"""The hand-in cell ``release`` adds when ``[service] url`` is set: the released cell run in a
real kernel against a real service (on "Colab" through a stand-in ``google.colab._message``,
in "Jupyter" through the saved file its session names), and grading that never runs it."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

import nbformat
import pytest
from conftest import KERNELSPEC, complete, make_tiny_course, released
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from servicekit import LiveService

from autograder.config import Course
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.submitcell import SAVE_FIRST, TAG, hand_in_here, is_submit_cell, submit_cell

WRONG_TOKEN = (
    "error: the workshop service does not know the token in AUTOGRADER_TOKEN (wrong or "
    "revoked): ask the instructor for your personal token and run this cell again."
)
STANDIN = '''\
"""A stand-in for Colab's frontend: get_ipynb answers with the notebook the test wrote."""
import json, os


def blocking_request(request_type, request="", timeout_sec=5, parent=None):
    assert request_type == "get_ipynb", request_type
    with open(os.environ["COLAB_STANDIN_NOTEBOOK"], encoding="utf-8") as file:
        return {"ipynb": json.load(file)}
'''


def set_url(course: Course, url: str) -> None:
    """Give the tiny assignment a ``[service] url`` and release it again."""
    toml = course.source("tiny") / "assignment.toml"
    text = toml.read_text().split("\n[service]")[0]
    toml.write_text(f"{text}\n[service]\nurl = {json.dumps(url)}\n")
    release(course, "tiny")


def submit_cell_of(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if is_submit_cell(c)]
    return cell


def kernel_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A participant's kernel: nothing of the grader's, a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOGRADER", "NBGRADER"))}
    env = {k: v for k, v in env.items() if not k.startswith("JPY_")}
    (tmp / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(tmp / "home"), "XDG_CONFIG_HOME": str(tmp / "config"), **extra}


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


class Kernel:
    """One participant's kernel in ``cwd``: ``run(source)`` executes a cell, returns its text."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.nb = new_notebook(metadata={"kernelspec": KERNELSPEC})
        self.client = NotebookClient(
            self.nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        self.env = env

    def __enter__(self) -> Kernel:
        self.context = self.client.setup_kernel(env=self.env)
        self.context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.__exit__(None, None, None)

    def run(self, source: str) -> str:
        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return text_of(cell)


def test_release_adds_the_read_only_cell_only_with_a_service_url(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    assert not any(is_submit_cell(c) for c in released(course).cells)
    source = (course.source("tiny") / "tiny.ipynb").read_bytes()
    set_url(course, "https://workshop.example.org")
    nb = released(course)
    cell = nb.cells[-1]
    assert cell is submit_cell_of(nb) and cell.cell_type == "code" and cell.id == TAG
    # Read-only in the frontends; no nbgrader metadata, which nbgrader's autograde would
    # find unknown to its gradebook and refuse the notebook for.
    assert cell.metadata == {
        "cellView": "form",
        "deletable": False,
        "editable": False,
        "jupyter": {"source_hidden": True},
        "tags": [TAG],
    }
    assert "server='https://workshop.example.org', assignment='tiny', notebook='tiny.ipynb'" in (
        cell.source
    )
    assert "import autograder" not in cell.source and "pip" not in cell.source
    nbformat.validate(nb)
    # The source does not carry it; the release is exact and made again byte for byte.
    assert (course.source("tiny") / "tiny.ipynb").read_bytes() == source
    assert release(course, "tiny", check=True).in_sync
    before = (course.release("tiny") / "tiny.ipynb").read_bytes()
    assert release(course, "tiny").written == ()
    assert (course.release("tiny") / "tiny.ipynb").read_bytes() == before
    # A released notebook without the cell (or with another address) is out of date.
    nb.cells.pop()
    nbformat.write(nb, course.release("tiny") / "tiny.ipynb")
    assert release(course, "tiny", check=True).stale == ("tiny.ipynb",)
    release(course, "tiny")
    set_url(course, "https://other.example.org")
    assert "other.example.org" in submit_cell_of(released(course)).source


@pytest.mark.slow
def test_the_cell_hands_in_and_asks_for_the_token_once(tmp_path):
    """In-process, the code the cell runs: getpass once, the token saved, never printed."""
    course = make_tiny_course(tmp_path / "course")
    saved = tmp_path / "tiny.ipynb"
    nbformat.write(complete(course), saved)
    asked: list[str] = []
    with LiveService(course) as live:
        token = live.token("ada")
        answers = iter(["not-a-token-of-ours", token])

        def ask(prompt: str) -> str:
            asked.append(prompt)
            return next(answers)

        def hand_in() -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "JPY_SESSION_NAME": str(saved)}
            code = hand_in_here(
                server=live.url, assignment="tiny", notebook="tiny.ipynb", environ=env, ask=ask,
                out=out, err=err,
            )  # fmt: skip
            return code, out.getvalue(), err.getvalue()

        code, out, err = hand_in()
        assert (code, len(asked)) == (1, 1)
        assert err == (
            "error: the workshop service does not know the token (wrong or revoked): ask the "
            "instructor for your personal token and run this cell again.\n"
        )
        code, out, err = hand_in()
        assert (code, len(asked)) == (0, 2), err
        assert asked[-1] == "Your personal token (typing is hidden): "
        assert out.startswith(f"{SAVE_FIRST}; handing in {saved}\nhanded in tiny.ipynb: ")
        assert "graded: 3 / 4 points" in out and f"feedback: {live.url}/feedback/" in out
        code, out, err = hand_in()  # saved after its first use: not asked again
        assert (code, len(asked)) == (0, 2), err
        assert token not in out + err
        live.roster.revoke("ada")
        code, out, err = hand_in()  # refused: forgotten, so the next run asks
        assert code == 1 and "does not know the token (wrong or revoked)" in err
        tokens = json.loads((tmp_path / "config" / "autograder" / "tokens.json").read_text())
        assert live.url not in tokens


@pytest.mark.slow
def test_on_colab_the_cell_hands_in_what_the_page_holds_and_gives_up_when_down(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    standin = tmp_path / "standin" / "google" / "colab"
    standin.mkdir(parents=True)
    (standin / "_message.py").write_text(STANDIN)  # a namespace package: no __init__.py
    page = tmp_path / "page.ipynb"
    with LiveService(course) as live:
        set_url(course, live.url)
        nb = complete(course)  # what the page holds: answers written, never saved to a file
        nbformat.write(nb, page)
        cell = submit_cell_of(nb).source
        token = live.token("ada")
        env = kernel_env(
            tmp_path, PYTHONPATH=str(tmp_path / "standin"), COLAB_STANDIN_NOTEBOOK=str(page)
        )
        with Kernel(tmp_path, env) as kernel:
            kernel.run("import os; os.environ['AUTOGRADER_TOKEN'] = 'guessed-wrong'")
            assert kernel.run(cell) == WRONG_TOKEN + "\n"
            kernel.run(f"os.environ['AUTOGRADER_TOKEN'] = {token!r}")
            text = kernel.run(cell)
            assert text.startswith("handed in tiny.ipynb: ")
            assert "queued, position 1" in text
            assert "graded: 3 / 4 points" in text and f"feedback: {live.url}/feedback/" in text
            assert token not in text
            live.__exit__(None, None, None)  # the service goes down
            started = time.monotonic()
            text = kernel.run(cell)
            took = time.monotonic() - started
    assert "server not reachable (connection refused), retrying in 1 s" in text
    assert "error: gave up after 15 s: server not reachable (connection refused)" in text
    assert took < 25


@pytest.mark.slow
def test_in_jupyter_the_cell_hands_in_the_saved_file_its_session_names(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    work = tmp_path / "work"
    work.mkdir()
    with LiveService(course) as live:
        set_url(course, live.url)
        nb = complete(course)
        saved = work / "tiny (1).ipynb"  # as the participant's copy is often named
        nbformat.write(nb, saved)
        token = live.token("ada")
        # jupyter_server names the kernel's notebook as the kernel's folder joined to its name.
        env = kernel_env(tmp_path, JPY_SESSION_NAME=str(saved), AUTOGRADER_TOKEN=token)
        with Kernel(work, env) as kernel:
            text = kernel.run(submit_cell_of(nb).source)
    assert text.startswith(f"{SAVE_FIRST}; handing in {saved}\nhanded in tiny.ipynb: ")
    assert "graded: 3 / 4 points" in text and f"feedback: {live.url}/feedback/" in text
    assert token not in text


@pytest.mark.slow
def test_grading_never_runs_the_cell_and_scores_as_without_it(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    without = complete(course)
    with socket.socket() as listener:  # the "service": any connection to it would show
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        set_url(course, f"http://127.0.0.1:{listener.getsockname()[1]}")
        with_it = complete(course)
        assert submit_cell_of(with_it)
        for student, nb in (("alice", without), ("bob", with_it)):
            folder = course.submitted(student, "tiny")
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / "tiny.ipynb")
        settings = GradeSettings(sandbox=False)
        results = {
            r.student: r for r in grade(course, "tiny", settings=settings, backend="inline").graded
        }
        with pytest.raises(BlockingIOError):
            listener.accept()
    alice, bob = results["alice"], results["bob"]
    assert bob.status == alice.status == "graded"
    assert (bob.score, bob.max_score) == (alice.score, alice.max_score) == (3, 4)
    assert [(i.id, i.score) for i in bob.items] == [(i.id, i.score) for i in alice.items]
    # Sanitizing removed it: the graded notebook, hence the feedback page, is as without it.
    graded = nbformat.read(course.autograded("bob", "tiny") / "tiny.ipynb", as_version=4)
    assert [c.source for c in graded.cells] == [
        c.source
        for c in nbformat.read(
            course.autograded("alice", "tiny") / "tiny.ipynb", as_version=4
        ).cells
    ]


@pytest.mark.parametrize("variable", ["AUTOGRADER", "NBGRADER_EXECUTION"])
def test_in_a_grading_kernel_the_cell_does_nothing(tmp_path, monkeypatch, capsys, variable):
    """Should a grader run it (nbgrader's autograde does), the cell returns at once."""
    saved = tmp_path / "tiny.ipynb"
    saved.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        source = submit_cell(server=url, assignment="tiny", notebook="tiny.ipynb").source
        monkeypatch.setenv("JPY_SESSION_NAME", str(saved))
        monkeypatch.setenv("AUTOGRADER_TOKEN", "a-token")
        monkeypatch.setenv(variable, "autograde")
        exec(compile(source, "cell", "exec"), {"__name__": "__main__"})
        assert capsys.readouterr() == ("", "")
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_the_saved_file_is_found_as_vs_code_and_a_jupyter_server_name_it(tmp_path, monkeypatch):
    import http.server
    import threading

    import ipykernel.connect

    from autograder.submitcell import saved_notebook

    work = tmp_path / "work"
    work.mkdir()
    saved = work / "tiny.ipynb"
    saved.write_text("{}")
    monkeypatch.chdir(work)
    assert saved_notebook("tiny.ipynb", {}, {"__vsc_ipynb_file__": str(saved)}) == saved
    assert saved_notebook("tiny.ipynb", {"JPY_SESSION_NAME": "tiny.ipynb"}, {}) == saved
    # No name in the environment: the session of this kernel, as the server lists it.
    seen: list[str | None] = []

    class Sessions(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = [{"path": "other.ipynb", "kernel": {"id": "k0"}}]
            body.append({"path": "work/tiny.ipynb", "kernel": {"id": "k1"}})
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sessions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    info = {
        "url": f"http://127.0.0.1:{server.server_port}/",
        "token": "t0k",
        "root_dir": str(tmp_path),
    }
    (runtime / "jpserver-1.json").write_text(json.dumps(info))
    monkeypatch.setattr(ipykernel.connect, "get_connection_file", lambda: "/run/kernel-k1.json")
    try:
        assert saved_notebook("tiny.ipynb", {"JUPYTER_RUNTIME_DIR": str(runtime)}, {}) == saved
    finally:
        server.shutdown()
    assert seen == ["token t0k"]


def test_without_a_notebook_to_read_the_cell_points_to_the_upload_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    code = hand_in_here(
        server="https://workshop.example.org", assignment="tiny", notebook="tiny.ipynb",
        environ=env, out=io.StringIO(), err=err,
    )  # fmt: skip
    assert code == 1
    assert err.getvalue() == (
        "error: this cell cannot find the notebook's file here; download it as tiny.ipynb and "
        "upload it on the workshop page (your personal link), or run: autograder submit "
        "tiny.ipynb --server https://workshop.example.org\n"
    )
