"""The workshop service against a real uvicorn server on a loopback port, with a real HTTP
client: the whole loop, every status code of the contract, who sees what, hostile names and
bodies, the rate limit, fair order, and a restart after kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from click.testing import CliRunner
from conftest import complete, make_tiny_course, released
from servicekit import LiveService, auth, hand_in, notebook_files, wait_for

from autograder.cli import cli
from autograder.config import Course
from autograder.jobqueue import Queue, Submission, fair_order
from autograder.service import ServiceOptions

pytestmark = pytest.mark.slow


def _service_toml(course: Course, text: str) -> None:
    toml = course.source("tiny") / "assignment.toml"
    toml.write_text(toml.read_text() + "\n[service]\n" + text)


@pytest.fixture
def course(tmp_path: Path) -> Course:
    return make_tiny_course(tmp_path / "course")


@pytest.fixture
def solution(course: Course, tmp_path: Path) -> Path:
    path = tmp_path / "my-work.ipynb"
    nbformat.write(complete(course), path)
    return path


@pytest.fixture
def unsolved(course: Course, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.ipynb"
    nbformat.write(released(course), path)
    return path


def test_three_participants_hand_in_and_read_their_feedback(course, solution, unsolved):
    with LiveService(course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        tokens = {name: live.token(name) for name in ("ann", "ben", "cat")}
        teacher = live.token("teacher", instructor=True)
        assert client.get("/healthz").json() == {"ok": True}
        [listed] = client.get("/api/assignments", headers=auth(tokens["ann"])).json()
        assert (listed["name"], listed["title"], listed["deadline"]) == ("tiny", "Tiny", None)
        assert "tiny.ipynb" in listed["files"]

        answers = {}
        for name, path in (("ann", solution), ("ben", unsolved), ("cat", solution)):
            r = hand_in(client, tokens[name], path)
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["status"] == "queued" and body["position"] >= 1
            assert body["url"] == f"{live.url}/api/submissions/{body['id']}"
            answers[name] = body
        done = {n: wait_for(client, a["url"], tokens[n]) for n, a in answers.items()}
        assert {n: (d["status"], d["score"], d["max_score"]) for n, d in done.items()} == {
            "ann": ("graded", 3.0, 4.0),
            "ben": ("graded", 0.0, 4.0),
            "cat": ("graded", 3.0, 4.0),
        }
        assert {i["id"] for i in done["ben"]["items"]} == {"test_squares", "test_total", "explain"}
        for name, body in done.items():
            page = client.get(body["feedback_url"], headers=auth(tokens[name]))
            assert page.status_code == 200
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            assert f"feedback for <strong>{name}</strong>" in page.text
            # Nobody else reads it (and learns nothing of it), but the instructor does.
            other = tokens["ben" if name != "ben" else "ann"]
            for url in (body["feedback_url"], body["url"]):
                denied = client.get(url, headers=auth(other))
                assert denied.status_code == 404
                assert denied.json()["error"].startswith("no such submission of yours")
                assert client.get(url, headers=auth(teacher)).status_code == 200
        mine = client.get("/api/submissions", headers=auth(tokens["ann"])).json()
        assert [s["id"] for s in mine] == [answers["ann"]["id"]]
        # The instructor's view is what 'results --json' prints; a participant has none.
        klass = client.get("/api/class/tiny", headers=auth(teacher)).json()
        assert sorted(r["student"] for r in klass) == ["ann", "ben", "cat"]
        assert client.get("/api/class/tiny", headers=auth(tokens["ann"])).status_code == 403
        # What the service graded is where 'autograder grade' and 'feedback' look.
        assert (course.submitted("ann", "tiny") / "tiny.ipynb").is_file()
        assert (course.feedback("ann", "tiny") / "index.html").is_file()


def test_a_hand_grade_reaches_the_status_and_the_page_without_regrading(course, solution):
    from nbgrader.api import Gradebook

    with LiveService(course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        token = live.token("ann")
        r = hand_in(client, token, solution)
        done = wait_for(client, r.json()["url"], token)
        assert done["score"] == 3.0
        with Gradebook(course.gradebook_url) as gb:
            gb.find_grade("explain", "tiny", "tiny", "ann").manual_score = 1.0
            gb.find_comment("explain", "tiny", "tiny", "ann").manual_comment = "Well put."
            gb.db.commit()
        again = client.get(done["url"], headers=auth(token)).json()
        assert (again["score"], again["max_score"]) == (4.0, 4.0)
        page = client.get(done["feedback_url"], headers=auth(token)).text
        assert '<span class="score">4</span> / 4 points' in page
        assert "the grader wrote: Well put." in page


def test_every_refusal_has_its_status_and_a_sentence(course, solution, tmp_path):
    _service_toml(course, "min_interval_s = 3600\nmax_upload = '1M'\n")
    with LiveService(course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        token = live.token("ann")
        revoked = live.token("zed")
        live.roster.revoke("zed")

        def post(files, data=None, headers=None):
            return client.post(
                "/api/submissions",
                data={"assignment": "tiny"} if data is None else data,
                files=files,
                headers=auth(token) if headers is None else headers,
            )

        cases = {
            "no token": (client.get("/api/submissions"), 401, "no token"),
            "bad token": (
                client.get("/api/submissions", headers=auth("abc.def")),
                401,
                "this token is not valid",
            ),
            "revoked": (client.get("/api/submissions", headers=auth(revoked)), 401, "not valid"),
            "unknown id": (
                client.get("/api/submissions/" + "0" * 24, headers=auth(token)),
                404,
                "no such submission",
            ),
            "not a notebook": (
                post([("files", ("tiny.ipynb", b"\x89PNG\r\n\x1a\nrest", "image/png"))]),
                415,
                "neither a notebook",
            ),
            "not multipart": (
                client.post("/api/submissions", content=b'{"a": 1}', headers=auth(token) | {}),
                415,
                "multipart/form-data",
            ),
            "no files": (post([("other", ("a.ipynb", b"{}", "x"))]), 415, "no files"),
            "unknown assignment": (
                post(notebook_files(solution), {"assignment": "../tiny"}),
                422,
                "no assignment '../tiny'",
            ),
            "too large": (
                post([("files", ("tiny.ipynb", b"{" + b" " * 1_100_000 + b"}", "x"))]),
                413,
                "larger than 1 MiB",
            ),
        }
        for what, (response, status, words) in cases.items():
            assert response.status_code == status, (what, response.text)
            assert words in response.json()["error"], (what, response.json())

        first = post(notebook_files(solution))
        assert first.status_code == 202
        limited = post(notebook_files(solution))
        assert limited.status_code == 429
        assert 3590 <= int(limited.headers["retry-after"]) <= 3600
        assert "the next one is allowed in" in limited.json()["error"]

        # A body far over the limit, in chunks and without a length, is cut off as it arrives.
        def chunks():
            boundary = b"--xyz\r\n"
            yield boundary + b'Content-Disposition: form-data; name="assignment"\r\n\r\ntiny\r\n'
            yield boundary + (
                b'Content-Disposition: form-data; name="files"; filename="a.ipynb"\r\n\r\n'
            )
            for _ in range(40):
                yield b" " * 65536
            yield b"\r\n--xyz--\r\n"

        streamed = client.post(
            "/api/submissions",
            content=chunks(),
            headers=auth(token) | {"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert streamed.status_code == 413, streamed.text

        # An address that keeps guessing tokens is made to wait.
        for _ in range(12):
            last = client.get("/api/submissions", headers=auth("guess.guess"))
        assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1


def test_deadlines_mark_late_then_refuse_and_an_extension_moves_both(course, solution):
    _service_toml(
        course,
        "deadline = '2020-01-01T00:00:00+00:00'\nhard_deadline = '2030-01-01T00:00:00+00:00'\n",
    )
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        token = live.token("ann")
        r = hand_in(client, token, solution)
        assert r.status_code == 202 and r.json()["late"] is True
    _service_toml_replace(course, "2030-01-01", "2021-01-01")
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        token = live.roster.token_for(live.roster.get("ann"))
        closed = hand_in(client, token, solution)
        assert closed.status_code == 422 and "closed at 2021-01-01" in closed.json()["error"]
        out = CliRunner().invoke(
            cli,
            [
                "--course-dir",
                str(course.root),
                "roster",
                "extend",
                "ann",
                "tiny",
                "--until",
                "2099-01-01T00:00:00Z",
            ],
        )
        assert out.exit_code == 0, out.output
        extended = hand_in(client, token, solution)
        assert extended.status_code == 202 and extended.json()["late"] is False


def _service_toml_replace(course: Course, old: str, new: str) -> None:
    toml = course.source("tiny") / "assignment.toml"
    toml.write_text(toml.read_text().replace(old, new))


@pytest.mark.parametrize(
    "filename",
    [
        "../../../../etc/passwd",
        "/abs/path/tiny.ipynb",
        "..\\..\\windows.ipynb",
        "nul\x00byte.ipynb",
        "x" * 500 + ".ipynb",
        "ünïcödé ✓.ipynb",
        ".hidden",
        "",
    ],
)
def test_names_participants_send_are_data_never_paths(course, solution, filename):
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        token = live.token("ann")
        r = client.post(
            "/api/submissions",
            data={"assignment": "tiny"},
            files=[("files", (filename, solution.read_bytes(), "application/json"))],
            headers=auth(token),
        )
        assert r.status_code == 202, r.text
        sub = live.queue.get(r.json()["id"])
        assert sub is not None
        stored = course.state / "service" / "uploads" / sub.id
        assert [p.name for p in stored.iterdir()] == ["tiny.ipynb"]
        assert sub.files[0]["name"] == "tiny.ipynb"
        assert "\x00" not in sub.files[0]["sent_as"] and len(sub.files[0]["sent_as"]) <= 120
    names = {p.name for p in course.root.rglob("*")}
    assert "passwd" not in names and "windows.ipynb" not in names


def test_a_file_name_too_long_to_be_a_header_is_refused_with_a_sentence(course, solution):
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        r = client.post(
            "/api/submissions",
            data={"assignment": "tiny"},
            files=[("files", ("x" * 20_000 + ".ipynb", solution.read_bytes(), "x"))],
            headers=auth(live.token("ann")),
        )
        assert r.status_code == 422 and "file name in the form is too long" in r.json()["error"]
        assert not (course.state / "service" / "uploads").exists() or not any(
            (course.state / "service" / "uploads").iterdir()
        )


def test_a_newer_submission_replaces_one_still_waiting(course, solution, unsolved):
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        token = live.token("ann")
        ids = []
        for path in (unsolved, solution):
            r = hand_in(client, token, path)
            ids.append(r.json()["id"])
        assert r.json()["replaced"] == [ids[0]]
        old = client.get(f"/api/submissions/{ids[0]}", headers=auth(token)).json()
        assert old["status"] == "replaced" and "newer submission" in old["message"]
        live.dispatcher.start()
        done = wait_for(client, r.json()["url"], token)
        assert done["score"] == 3.0


def _sub(sub_id: str, student: str, received: float) -> Submission:
    return Submission(
        sub_id, student, "a", "queued", received, None, None, 0, False, (), None, None, "", False
    )


def test_fair_order_is_round_robin_by_participant():
    # ann sends a burst of four before ben and cat send one each.
    queued = [_sub(f"ann{i}", "ann", i) for i in range(4)]
    queued += [_sub("ben0", "ben", 10), _sub("cat0", "cat", 11)]
    assert [s.id for s in fair_order(queued, {})] == [
        "ann0",
        "ben0",
        "cat0",
        "ann1",
        "ann2",
        "ann3",
    ]
    # Whoever started grading longest ago goes first.
    order = fair_order(queued, {"ann": 100.0, "ben": 50.0})
    assert [s.id for s in order][:3] == ["cat0", "ben0", "ann0"]


def test_the_roster_commands_print_tokens_once_and_links_always(course, tmp_path):
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["--course-dir", str(course.root), "roster", *args])

    out = run("add", "ann", "ben", "--json")
    assert out.exit_code == 0, out.output
    added = json.loads(out.output)
    assert [a["name"] for a in added] == ["ann", "ben"]
    token = added[0]["token"]
    assert len(token.split(".")[1]) >= 43  # 256 bits
    db = (course.root / "gradebook.db").read_bytes()
    assert token.encode() not in db and token.split(".")[1].encode() not in db
    listed = json.loads(run("list", "--json").output)
    assert listed[0]["link"] == added[0]["link"]
    assert run("add", "ann").exit_code != 0
    assert "already on the roster" in run("add", "ann").output
    assert run("add", "../evil").exit_code != 0
    names = tmp_path / "class.csv"
    names.write_text("name,email\ncat,cat@example.org\ndan,\n")
    imported = run("import", str(names), "--json")
    assert [a["name"] for a in json.loads(imported.output)] == ["cat", "dan"]
    assert run("revoke", "ann").exit_code == 0
    listed = {r["name"]: r for r in json.loads(run("list", "--json").output)}
    assert listed["ann"]["revoked_at"] and listed["ann"]["link"] is None
    assert listed["cat"]["email"] == "cat@example.org"


def test_walk_ins_join_with_the_code_and_a_free_name(course):
    options = ServiceOptions(join_code="kaust-2026")
    with (
        LiveService(course, options=options, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        r = client.post("/api/join", json={"code": "kaust-2026", "name": "walkin"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert client.get("/api/submissions", headers=auth(token)).json() == []
        taken = client.post("/api/join", json={"code": "kaust-2026", "name": "walkin"})
        assert taken.status_code == 422 and "taken" in taken.json()["error"]
        wrong = client.post("/api/join", json={"code": "guess", "name": "other"})
        assert wrong.status_code == 401
        bad = client.post("/api/join", json={"code": "kaust-2026", "name": "../x"})
        assert bad.status_code == 422
        # The personal link sets an HttpOnly, SameSite cookie that works in the browser.
        link = client.get(r.json()["link"].replace(live.url, ""), follow_redirects=False)
        assert link.status_code == 303
        cookie = link.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        home = client.get("/")
        assert home.status_code == 200 and "signed in as <strong>walkin</strong>" in home.text
        # A cookie does not carry a POST from another site.
        other_site = client.post(
            "/api/submissions",
            data={"assignment": "tiny"},
            files=[("files", ("t.ipynb", b'{"cells": []}', "x"))],
            headers={"Origin": "https://evil.example"},
        )
        assert other_site.status_code == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(course: Course, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autograder",
            "--course-dir",
            str(course.root),
            "serve",
            "--port",
            str(port),
            "--unsafe-no-sandbox",
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the service at {url} did not start")


def test_kill_9_loses_nothing_and_grades_each_submission_once(course, solution):
    from autograder.roster import Roster

    tokens = {name: Roster(course).add(name)[1] for name in ("ann", "ben", "cat", "dan")}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(course, port)
    try:
        _up(url)
        ids = {}
        with httpx.Client(base_url=url, timeout=30) as client:
            for name, token in tokens.items():
                r = hand_in(client, token, solution)
                assert r.status_code == 202
                ids[name] = r.json()["id"]
            # Kill it as soon as one is running (the others still wait in line).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = [
                    client.get(f"/api/submissions/{i}", headers=auth(tokens[n])).json()["status"]
                    for n, i in ids.items()
                ]
                if "running" in states:
                    break
                time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = _serve(course, port)
        _up(url)
        with httpx.Client(base_url=url, timeout=30) as client:
            done = {
                n: wait_for(client, f"{url}/api/submissions/{i}", tokens[n], timeout=240)
                for n, i in ids.items()
            }
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert {n: d["status"] for n, d in done.items()} == dict.fromkeys(tokens, "graded")
    rows = list(Queue(course.gradebook_url).all_of("tiny"))
    assert sorted(r.id for r in rows) == sorted(ids.values())  # nothing lost, nothing added
    # Recorded once each: one result per participant, carrying its submission's id.
    from autograder.gradebook import load_results

    recorded = {
        r.student: r.details["submission"] for r in load_results(course.gradebook_url, "tiny")
    }
    assert recorded == ids
    assert all(r.attempts <= 2 for r in rows)


def test_autograder_submit_hands_in_to_the_real_service_and_prints_the_verdict(
    course, solution, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    notebook = tmp_path / "hand-in" / "tiny.ipynb"
    notebook.parent.mkdir()
    notebook.write_bytes(solution.read_bytes())
    with LiveService(course) as live:
        token = live.token("ann")
        out = subprocess.run(
            [sys.executable, "-m", "autograder", "submit", str(notebook), "--server", live.url],
            env=dict(os.environ, AUTOGRADER_TOKEN=token),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "3 / 4 points" in out.stdout
        assert f"{live.url}/feedback/" in out.stdout
        assert token not in out.stdout + out.stderr
        [sub] = live.queue.of_student("ann")
        assert sub.status == "graded"


def test_an_upload_sent_twice_with_one_idempotency_key_is_one_submission(course, solution):
    with (
        LiveService(course, start_graders=False) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        token = live.token("ann")
        answers = [
            client.post(
                "/api/submissions",
                data={"assignment": "tiny"},
                files=notebook_files(solution),
                headers=auth(token) | {"Idempotency-Key": "k1"},
            ).json()
            for _ in range(2)
        ]
        assert answers[0]["id"] == answers[1]["id"]
        assert len(live.queue.of_student("ann")) == 1


def test_the_service_runs_on_postgresql_with_two_graders(tmp_path, postgres_url):
    import dataclasses

    course = dataclasses.replace(make_tiny_course(tmp_path / "pg-course"), gradebook=postgres_url)
    solution = tmp_path / "tiny.ipynb"
    nbformat.write(complete(course), solution)
    with (
        LiveService(course, workers=2) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        tokens = {name: live.token(name) for name in ("ann", "ben", "cat")}
        urls = {}
        for name, token in tokens.items():
            r = hand_in(client, token, solution)
            assert r.status_code == 202, r.text
            urls[name] = r.json()["url"]
        done = {n: wait_for(client, u, tokens[n]) for n, u in urls.items()}
        assert {n: (d["status"], d["score"]) for n, d in done.items()} == dict.fromkeys(
            tokens, ("graded", 3.0)
        )
        teacher = live.token("teacher", instructor=True)
        klass = client.get("/api/class/tiny", headers=auth(teacher)).json()
        assert sorted(r["student"] for r in klass) == ["ann", "ben", "cat"]
    assert not (course.root / "gradebook.db").exists()  # everything went to PostgreSQL


def test_a_grader_failure_is_retried_and_never_counts_against_the_quota(
    course, solution, monkeypatch
):
    import autograder.schedule as schedule

    _service_toml(course, "max_per_window = 1\n")
    real, calls = schedule.run_jobs, []

    def flaky(jobs, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the sandbox could not start (simulated)")
        return real(jobs, **kw)

    monkeypatch.setattr(schedule, "run_jobs", flaky)
    with LiveService(course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        token = live.token("ann")
        r = hand_in(client, token, solution)
        done = wait_for(client, r.json()["url"], token)
        assert (done["status"], done["score"]) == ("graded", 3.0)
        assert len(calls) == 2 and live.queue.get(done["id"]).attempts == 2
    # A submission the grader gave up on is not the participant's: it is not counted.
    monkeypatch.setattr(
        schedule, "run_jobs", lambda jobs, **kw: (_ for _ in ()).throw(OSError("down"))
    )
    with LiveService(course) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        token = live.token("ben")
        first = hand_in(client, token, solution).json()
        failed = wait_for(client, first["url"], token)
        assert failed["status"] == "error" and "the grader failed" in failed["message"]
        again = hand_in(client, token, solution)
        assert again.status_code == 202, again.text
