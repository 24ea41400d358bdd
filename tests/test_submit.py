"""`autograder submit` against a fake of the workshop service that follows DESIGN.md's
contract (a real HTTP server on a loopback port, in a thread): the whole hand-in, every
refusal, network failures retried with back-off, the token file, hostile answers."""

from __future__ import annotations

import ast
import email.parser
import email.policy
import io
import json
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autograder import submit
from autograder.cli import cli
from autograder.submitcli import pick_assignment

TOKEN = "tok-alice-5f0c9e1d2b7a4e36"
NOTEBOOK = {"cells": [{"cell_type": "code", "source": "x = 1"}], "metadata": {}, "nbformat": 4}
ASSIGNMENTS = [
    {
        "name": "mnist-kaggle",
        "title": "Your own CNN",
        "deadline": None,
        "files": ["mnist-kaggle.ipynb"],
    },
    {
        "name": "transfer-learning",
        "title": "Pre-trained",
        "deadline": None,
        "files": ["transfer.ipynb"],
    },
]
ITEMS = [
    {
        "id": "test-shapes",
        "kind": "test",
        "score": 2,
        "max_score": 2,
        "passed": True,
        "message": None,
    },
    {
        "id": "test-accuracy",
        "kind": "test",
        "score": 0,
        "max_score": 1,
        "passed": False,
        "message": "accuracy 0.41 is below 0.9",
    },
    {
        "id": "kaggle-csv",
        "kind": "csv",
        "score": 1,
        "max_score": 2,
        "passed": False,
        "message": "public score 0.84, below 0.85",
    },
]
GRADED = {
    "student": "alice", "assignment": "mnist-kaggle", "status": "graded", "position": None,
    "score": 12, "max_score": 14, "submitted_at": "2025-05-01T10:00:00Z",
    "feedback_url": "/feedback/s1", "items": ITEMS, "message": None, "late": False,
}  # fmt: skip


@dataclass
class Answer:
    status: int
    body: bytes | dict[str, Any] | list[Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fake:
    """The service's state: what it answers, and every request it got."""

    url: str = ""
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    #: The answers to status requests while the submission waits; then ``verdict``.
    waiting: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"status": "queued", "position": 2},
            {"status": "queued", "position": 1},
            {"status": "running", "position": None},
        ]
    )
    verdict: dict[str, Any] = field(default_factory=lambda: dict(GRADED))
    #: Answers given before anything else, in order, to the requests whose path starts so.
    forced: list[tuple[str, Answer]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)

    def force(self, method_path: str, *answers: Answer) -> None:
        self.forced += [(method_path, answer) for answer in answers]

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        self.requests.append(
            {"method": method, "path": path, "headers": dict(headers), "body": body}
        )
        for index, (prefix, forced) in enumerate(self.forced):
            if f"{method} {path}".startswith(prefix):
                del self.forced[index]
                return forced
        if headers.get("Authorization") not in {f"Bearer {t}" for t in self.tokens}:
            return Answer(401, {"error": "unknown token: open your personal link again"})
        if method == "GET" and path == "/api/assignments":
            return Answer(200, ASSIGNMENTS)
        if method == "POST" and path == "/api/submissions":
            self.uploads.append(parse_multipart(headers["Content-Type"], body))
            return Answer(
                202, {"id": "s1", "status": "queued", "position": 3, "url": "/api/submissions/s1"}
            )
        if method == "GET" and path == "/api/submissions/s1":
            base = {"id": "s1", "student": "alice", "assignment": "mnist-kaggle", "score": None}
            return Answer(200, {**base, **self.waiting.pop(0)} if self.waiting else self.verdict)
        return Answer(404, {"error": "no such submission"})


def parse_multipart(ctype: str, body: bytes) -> dict[str, Any]:
    """The form as a standard parser (the email package's) reads it."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body
    )
    form: dict[str, Any] = {"files": []}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "files":
            form["files"].append(
                (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            )
        else:
            form[name] = part.get_payload(decode=True).decode()
    return form


def serve(fake: Fake, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = fake.answer(self.command, self.path, self.headers, body)
            data = (
                answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            )
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json", **answer.headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server


@pytest.fixture
def fake() -> Iterator[Fake]:
    state = Fake()
    server = serve(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Clock:
    """Sleeps that take no time, recorded; a clock they move."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Clock:
    """Fast pace (back-off 1, 2, 4... 'seconds' of a fake clock), a private config folder, no
    token or proxy from the environment."""
    fake_clock = Clock()
    pace = submit.Pace(poll=0.5, sleep=fake_clock.sleep, clock=fake_clock.time, timeout=5)
    monkeypatch.setattr(submit, "PACE", pace)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("AUTOGRADER_TOKEN", "AUTOGRADER_SERVER", "http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return fake_clock


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "mnist-kaggle.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    return path


def run(*args: str | Path, token: str | None = TOKEN) -> Any:
    more = ["--token", token] if token else []
    result = CliRunner().invoke(cli, ["submit", *map(str, args), *more])
    assert TOKEN not in result.stdout + result.stderr
    return result


def tokens_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "autograder" / "tokens.json"


# --- the whole hand-in ---------------------------------------------------------------------


def test_the_whole_hand_in_uploads_waits_in_the_queue_and_prints_the_verdict(
    fake, clock, notebook, tmp_path
):
    csv = tmp_path / "submission.csv"
    csv.write_text("ImageId,Label\n1,7\n")
    result = run(notebook, csv, "--server", fake.url + "/", "--assignment", "mnist-kaggle")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "graded: 12 / 14 points\n"
        "items that lost points:\n"
        "  test-accuracy: 0 / 1: accuracy 0.41 is below 0.9\n"
        "  kaggle-csv: 1 / 2: public score 0.84, below 0.85\n"
        f"feedback: {fake.url}/feedback/s1\n"
    )
    assert result.stderr.splitlines() == [
        "submitted mnist-kaggle.ipynb, submission.csv: s1",
        "queued, position 3 (0:00)",
        "queued, position 2 (0:00)",
        "queued, position 1 (0:01)",
        "running (0:01)",
    ]
    [upload] = fake.uploads
    assert upload == {
        "assignment": "mnist-kaggle",
        "files": [
            ("mnist-kaggle.ipynb", "application/x-ipynb+json", notebook.read_bytes()),
            ("submission.csv", "text/csv", b"ImageId,Label\n1,7\n"),
        ],
    }
    post = fake.requests[0]
    assert post["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert len(post["headers"]["Idempotency-Key"]) == 32
    assert [r["path"] for r in fake.requests[1:]] == ["/api/submissions/s1"] * 4
    assert clock.slept == [0.5] * 4  # one poll each, no retry


def test_a_verdict_that_is_not_graded_still_exits_0_with_its_message_and_late_mark(
    fake, clock, notebook
):
    fake.waiting = []
    fake.verdict = {**GRADED, "status": "timeout", "score": 3, "max_score": 14, "late": True,
                    "message": "cell 4 ran past its 600 s limit", "items": []}  # fmt: skip
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "timeout: 3 / 14 points\n"
        "  cell 4 ran past its 600 s limit\n"
        "late: handed in after the deadline, and marked late\n"
        f"feedback: {fake.url}/feedback/s1\n"
    )


def test_no_wait_prints_the_id_the_position_and_the_status_link(fake, clock, notebook):
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle", "--no-wait")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"queued: submission s1, position 3 in the queue\nstatus: {fake.url}/api/submissions/s1\n"
    )
    assert [r["method"] for r in fake.requests] == ["POST"]


def test_the_assignment_is_the_one_that_releases_a_notebook_of_that_name(
    fake, clock, notebook, tmp_path
):
    result = run(notebook, "--server", fake.url, "--no-wait")
    assert result.exit_code == 0, result.output
    assert "assignment: mnist-kaggle" in result.stderr
    assert fake.uploads[0]["assignment"] == "mnist-kaggle"
    # A browser's second download and Colab's copy still name the assignment.
    for name in ("mnist-kaggle (1).ipynb", "Copy of mnist-kaggle.ipynb"):
        other = tmp_path / name
        other.write_text(json.dumps(NOTEBOOK))
        assert run(other, "--server", fake.url, "--no-wait").exit_code == 0
    assert [u["assignment"] for u in fake.uploads] == ["mnist-kaggle"] * 3


def test_no_assignment_or_several_for_the_notebook_name_says_so_and_lists_them(
    fake, clock, tmp_path
):
    path = tmp_path / "homework.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    result = run(path, "--server", fake.url)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: no assignment releases a notebook named homework.ipynb; choose one with "
        "--assignment NAME (the server has: mnist-kaggle, transfer-learning)"
    )
    assert fake.uploads == []
    twice = [{"name": "a", "files": ["x.ipynb"]}, {"name": "b", "files": ["x.ipynb"]}]
    with pytest.raises(
        submit.SubmitError,
        match=r"several assignments release a notebook named x.ipynb: a, b; choose one with --assignment NAME",
    ):
        pick_assignment(twice, "x.ipynb")
    with pytest.raises(submit.SubmitError, match=r"\(the server has: none\)"):
        pick_assignment([{"files": ["x.ipynb"]}, "junk", {"name": 3}], "x.ipynb")


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (404, "no such assignment"),
        (413, "the upload is larger than 20 MiB; clear the notebook's outputs"),
        (415, "mnist-kaggle.ipynb is not a notebook or a CSV file"),
        (422, "the deadline of mnist-kaggle has passed (hard deadline 2025-05-01 18:00)"),
    ],
)
def test_a_refusal_prints_the_servers_sentence_and_exits_1(fake, clock, notebook, status, sentence):
    fake.force("POST /api/submissions", Answer(status, {"error": sentence}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: refused by the server (HTTP {status}): {sentence}\n"


def test_too_many_submissions_says_when_the_next_one_is_allowed(fake, clock, notebook):
    sentence = "one submission every 5 minutes; wait a little"
    fake.force("POST", Answer(429, {"error": sentence}, {"Retry-After": "240"}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 1
    first, second = result.stderr.splitlines()
    assert first == f"error: refused by the server (HTTP 429): {sentence}"
    assert second.startswith("you can submit again in 4 min (at ")
    assert clock.slept == []  # a refusal, not a retry

    date = formatdate(time.time() + 7200, usegmt=True)
    fake.force("POST", Answer(429, {"error": sentence}, {"Retry-After": date}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert "you can submit again in 2.0 h (at " in result.stderr
    fake.force("POST", Answer(429, {"error": sentence}, {"Retry-After": "soon-ish"}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert "you can submit again later (the server did not say when)" in result.stderr


def test_a_saved_token_the_server_refuses_says_it_was_revoked_and_how_to_replace_it(
    fake, clock, notebook, tmp_path
):
    assert (
        run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle", "--no-wait").exit_code
        == 0
    )
    fake.tokens.clear()  # the instructor revoked it
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle", token=None)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: refused by the server (HTTP 401): unknown token: open your personal link again\n"
        f"the token saved in {tokens_file(tmp_path)} was revoked or is wrong: ask the instructor "
        "for yours and run again with --token T (replaces the saved one)\n"
    )


def test_no_token_anywhere_without_a_terminal_is_a_usage_error_naming_the_three_ways(
    fake, clock, notebook, tmp_path
):
    result = run(notebook, "--server", fake.url, token=None)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no token for {fake.url}: pass --token T, set AUTOGRADER_TOKEN, or run this "
        f"once in a terminal, which asks and saves it in {tokens_file(tmp_path)}\n"
    )
    assert fake.requests == []


# --- network failures ----------------------------------------------------------------------


def test_a_busy_proxy_is_retried_with_back_off_then_the_hand_in_goes_on(fake, clock, notebook):
    busy = Answer(503, b"<html>Service Unavailable</html>", {"Content-Type": "text/html"})
    fake.force("POST /api/submissions", busy, busy)
    fake.force("GET /api/submissions/s1", Answer(502, b"bad gateway"))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[:2] == [
        "server busy or restarting (HTTP 503), retrying in 1 s",
        "server busy or restarting (HTTP 503), retrying in 2 s",
    ]
    assert "server busy or restarting (HTTP 502), retrying in 1 s" in result.stderr
    assert clock.slept == [1, 2, 0.5, 1, 0.5, 0.5, 0.5]
    assert len(fake.uploads) == 1
    keys = {r["headers"]["Idempotency-Key"] for r in fake.requests if r["method"] == "POST"}
    assert len(keys) == 1  # the same upload, tried three times


def test_a_service_that_starts_a_moment_later_is_waited_for(clock, notebook, monkeypatch):
    with socket.socket() as probe:  # a free port, nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state, servers = Fake(), []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 2:
            servers.append(serve(state, port))

    monkeypatch.setattr(submit, "PACE", submit.Pace(poll=0.5, sleep=sleep, clock=clock.time))
    try:
        result = run(
            notebook, "--server", f"http://127.0.0.1:{port}", "--assignment", "mnist-kaggle"
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[:2] == [
        "server not reachable (connection refused), retrying in 1 s",
        "server not reachable (connection refused), retrying in 2 s",
    ]
    assert result.stdout.startswith("graded: 12 / 14 points\n")


def test_a_service_that_never_answers_is_given_up_after_the_total_time(clock, notebook):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(notebook, "--server", f"http://127.0.0.1:{port}", "--assignment", "a")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == (
        "error: gave up after 2 min: server not reachable (connection refused); check the "
        f"address http://127.0.0.1:{port}, your network, or ask whether the service is running"
    )
    assert clock.slept == [1, 2, 4, 8, 16, 30, 30]  # capped at 30 s, 120 s in all
    assert len(lines) == 8


def test_polling_too_fast_slows_down_as_retry_after_says_and_keeps_waiting(fake, clock, notebook):
    fake.force("GET /api/submissions/s1", Answer(429, {"error": "slow down"}, {"Retry-After": "7"}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0, result.output
    assert "the server asks to wait (HTTP 429), retrying in 7 s" in result.stderr


# --- the token -----------------------------------------------------------------------------


def test_the_first_accepted_token_is_saved_privately_and_used_next_time(
    fake, clock, notebook, tmp_path, monkeypatch
):
    saved = tokens_file(tmp_path)
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle", "--no-wait")
    assert result.exit_code == 0
    assert json.loads(saved.read_text()) == {fake.url: TOKEN}
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert [p.name for p in saved.parent.iterdir()] == ["tokens.json"]  # no temporary left

    result = run(
        notebook, "--server", fake.url, "--assignment", "mnist-kaggle", "--no-wait", token=None
    )
    assert result.exit_code == 0
    assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"

    # $AUTOGRADER_TOKEN comes before the file; a refused one is not saved.
    monkeypatch.setenv("AUTOGRADER_TOKEN", "tok-wrong")
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle", token=None)
    assert result.exit_code == 1
    assert "the token in AUTOGRADER_TOKEN was revoked or is wrong" in result.stderr
    assert json.loads(saved.read_text()) == {fake.url: TOKEN}


def test_a_token_asked_for_is_saved_and_never_printed(fake, clock, notebook, tmp_path):
    out, err, prompts = io.StringIO(), io.StringIO(), []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return f"  {TOKEN}\n"

    code = submit.hand_in(
        [(notebook.name, notebook.read_bytes())], server=fake.url, assignment="mnist-kaggle",
        ask=ask, out=out, err=err, environ={"XDG_CONFIG_HOME": str(tmp_path / "config")},
    )  # fmt: skip
    assert code == 0
    assert prompts == [f"Personal token for {fake.url} (typing is hidden): "]
    assert TOKEN not in out.getvalue() + err.getvalue()
    assert json.loads(tokens_file(tmp_path).read_text()) == {fake.url: TOKEN}
    err = io.StringIO()
    code = submit.hand_in(
        [("n.ipynb", b'{"cells": []}')], server=fake.url, assignment="x", token="tok with space",
        err=err, environ={"XDG_CONFIG_HOME": str(tmp_path)},
    )  # fmt: skip
    assert code == 2
    assert "the token has spaces or characters a token never has" in err.getvalue()


# --- the files and the arguments -----------------------------------------------------------


def test_files_are_checked_before_anything_is_sent(fake, clock, tmp_path, notebook, monkeypatch):
    def refused(path: Path, *more: Path) -> str:
        result = run(path, *more, "--server", fake.url, "--assignment", "a")
        assert result.exit_code == 2, result.output
        return result.stderr

    assert refused(tmp_path / "nope.ipynb") == (
        f"error: {tmp_path / 'nope.ipynb'}: no such file; check its name and your folder\n"
    )
    assert refused(tmp_path) == f"error: {tmp_path} is a folder; name the notebook file inside it\n"
    fix = "open it in Jupyter or Colab, save it as .ipynb (File > Download > .ipynb on Colab) and submit that file"
    for content, problem in [
        (b"\x89PNG\r\n", "not JSON"),
        (b"<html>", "not JSON"),
        (b"[1, 2]", "JSON without cells"),
        (b'{"cells": 3}', "JSON without cells"),
        (b"[" * 100_000, "not JSON"),
    ]:
        bad = tmp_path / "bad.ipynb"
        bad.write_bytes(content)
        assert refused(bad) == f"error: bad.ipynb is not a notebook ({problem}); {fix}\n"
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert (
        refused(notebook, empty)
        == "error: empty.csv is empty; save it (File > Save) and submit again\n"
    )
    big = tmp_path / "big.ipynb"
    with big.open("wb") as file:
        file.truncate(submit.MAX_UPLOAD_BYTES + 1)
    assert refused(big).startswith("error: big.ipynb brings the upload over the 20 MiB the service")
    (tmp_path / "sub").mkdir()
    twin = tmp_path / "sub" / notebook.name
    twin.write_text(json.dumps(NOTEBOOK))
    assert "two files are named mnist-kaggle.ipynb" in refused(notebook, twin)
    locked = tmp_path / "locked.ipynb"
    locked.write_text("{}")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: refuse as the system would refuse others

        def denied(path: Path, *args: Any, **kwargs: Any) -> Any:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(Path, "open", denied)
    assert refused(locked) == (
        f"error: {locked}: cannot read it (Permission denied); check its permissions\n"
    )
    assert fake.requests == []


@pytest.mark.parametrize(
    "server",
    [
        "workshop.example.org",
        "ftp://x.org",
        "http://",
        "http://x.org:port",
        "http://u@x.org",
        "http://x.org/?a=1",
    ],
)
def test_a_server_that_is_not_a_web_address_is_a_usage_error(clock, notebook, server):
    result = run(notebook, "--server", server, "--assignment", "a")
    assert result.exit_code == 2
    assert "is not a web address such as https://workshop.example.org" in result.stderr


def test_the_command_needs_a_server_and_a_notebook(clock, notebook):
    assert CliRunner().invoke(cli, ["submit", str(notebook)]).exit_code == 2
    assert CliRunner().invoke(cli, ["submit", "--server", "http://x"]).exit_code == 2


# --- hostile or broken answers -------------------------------------------------------------


def test_control_characters_and_markup_from_the_server_are_printed_as_harmless_text(
    fake, clock, notebook
):
    fake.waiting = [{"status": "queued", "position": 1}]
    fake.verdict = {
        **GRADED,
        "message": "[bold red]boom[/] \x1b]0;owned\x07 \x1b[2J",
        "items": [{"id": "t\r1", "score": 0, "max_score": 1, "passed": False,
                   "message": "[link=http://evil]click[/link]\n\u202egnp.exe"}],
    }  # fmt: skip
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:4] == [
        "  [bold red]boom[/] \\x1b]0;owned\\x07 \\x1b[2J",
        "items that lost points:",
        "  t\\x0d1: 0 / 1: [link=http://evil]click[/link]\\x0a\\x202egnp.exe",
    ]
    assert "\x1b" not in result.stdout + result.stderr and "\r" not in result.stdout

    fake.force("POST", Answer(422, {"error": "too late\x1b[31m" + "!" * 5000}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 1
    assert "too late\\x1b[31m!!!" in result.stderr and len(result.stderr) < 400


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(200, b"x" * (2 * 1024 * 1024)), "its answer is larger than 1 MiB"),
        (
            Answer(200, b"<html>a login page</html>", {"Content-Type": "text/html"}),
            "its answer is not JSON",
        ),
        (Answer(200, b"[" * 200_000 + b"]" * 200_000), "its answer is not JSON"),
        (Answer(200, b"\xff\xfe"), "its answer is not JSON"),
        (Answer(200, [1, 2]), "its answer has no status"),
        (Answer(200, {"status": None}), "its answer has no status"),
    ],
)
def test_an_answer_the_service_never_gives_ends_with_a_clear_error(
    fake, clock, notebook, answer, message
):
    fake.force("GET /api/submissions/s1", answer)
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {message}: is {fake.url} the address of the workshop service?"
    )


def test_odd_fields_and_error_bodies_do_not_crash(fake, clock, notebook):
    fake.waiting = [
        {"status": "queued", "position": {"x": 1}},
        {"status": "running", "position": "2"},
    ]
    fake.verdict = {"status": "graded", "score": "12", "max_score": True, "items": ["x", {"id": None}],
                    "feedback_url": "javascript:alert(1)", "late": None}  # fmt: skip
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0, result.output
    assert result.stdout == "graded: no score\n"

    fake.force("POST", Answer(413, b"<html><h1>413 Request Entity Too Large</h1></html>"))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.stderr == "error: refused by the server (HTTP 413): the files are too large\n"
    fake.force("POST", Answer(500, {"error": ["not", "a", "sentence"]}))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 1
    assert result.stderr == "error: refused by the server (HTTP 500): it could not handle it\n"
    fake.force("POST", Answer(202, {"id": "../../admin?x#y", "status": "queued"}))
    fake.force("GET", Answer(200, GRADED))
    result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    assert result.exit_code == 0
    assert fake.requests[-1]["path"] == "/api/submissions/..%2F..%2Fadmin%3Fx%23y"


def test_a_redirect_is_not_followed_so_the_token_stays_with_the_service(fake, clock, notebook):
    other = Fake()
    server = serve(other)
    try:
        elsewhere = f"http://127.0.0.1:{server.server_address[1]}/api/submissions/s1"
        fake.force("GET /api/submissions/s1", Answer(302, b"", {"Location": elsewhere}))
        result = run(notebook, "--server", fake.url, "--assignment", "mnist-kaggle")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the server redirects to {elsewhere}: pass its new address as --server"
    )
    assert other.requests == []


# --- the display and the module ------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_wait_is_one_line_rewritten_in_place(fake, clock, notebook):
    out, err = io.StringIO(), Terminal()
    code = submit.hand_in(
        [(notebook.name, notebook.read_bytes())], server=fake.url, assignment="mnist-kaggle",
        token=TOKEN, out=out, err=err, environ={"XDG_CONFIG_HOME": str(notebook.parent)},
    )  # fmt: skip
    assert code == 0
    assert err.getvalue() == (
        "submitted mnist-kaggle.ipynb: s1\n"
        "\r\x1b[Kqueued, position 3 (0:00)\r\x1b[Kqueued, position 2 (0:00)"
        "\r\x1b[Kqueued, position 1 (0:01)\r\x1b[Krunning (0:01)\r\x1b[K"
    )
    assert out.getvalue().startswith("graded: 12 / 14 points\n")


def test_ctrl_c_while_waiting_leaves_the_submission_queued_and_says_where_to_look(
    fake, clock, notebook, tmp_path
):
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    err = io.StringIO()
    code = submit.hand_in(
        [(notebook.name, notebook.read_bytes())], server=fake.url, assignment="mnist-kaggle",
        token=TOKEN, err=err, environ={"XDG_CONFIG_HOME": str(tmp_path)},
        pace=submit.Pace(sleep=interrupted),
    )  # fmt: skip
    assert code == 130
    assert err.getvalue().splitlines()[-1] == (
        f"stopped waiting; submission s1 is still graded: {fake.url}/api/submissions/s1"
    )


def test_the_client_uses_the_standard_library_only_so_a_notebook_cell_can_carry_it():
    tree = ast.parse(Path(submit.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno} imports from the package"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)
