"""A real workshop service for tests: uvicorn on a loopback port, in a thread of the test
process, over a course of the tests' own; graded inline (no sandbox) unless told otherwise."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from autograder.config import Course
from autograder.dispatch import Dispatcher
from autograder.job import GradeSettings
from autograder.jobqueue import Queue
from autograder.roster import Roster
from autograder.service import Service, ServiceOptions
from autograder.webapp import create_app


class LiveService:
    """``with LiveService(course) as live:`` serves ``course`` at ``live.url``."""

    def __init__(
        self,
        course: Course,
        *,
        options: ServiceOptions | None = None,
        start_graders: bool = True,
        backend: str = "inline",
        workers: int = 1,
    ) -> None:
        self.course = course
        self.roster = Roster(course)
        self.queue = Queue(course.gradebook_url)
        self.dispatcher = Dispatcher(
            course,
            self.queue,
            settings=GradeSettings(sandbox=False),
            workers=workers,
            backend=backend,
            poll_s=0.05,
        )
        self.service = Service(
            course,
            roster=self.roster,
            queue=self.queue,
            options=options or ServiceOptions(),
            notify=self.dispatcher.notify,
        )
        self.service.on_stale_page = self.dispatcher.write_page
        self.start_graders = start_graders
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> LiveService:
        import uvicorn

        config = uvicorn.Config(
            create_app(self.service),
            host="127.0.0.1",
            port=0,
            access_log=False,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        if self.start_graders:
            self.dispatcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispatcher.stop()
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)

    def token(self, name: str, *, instructor: bool = False) -> str:
        """A new roster entry's token."""
        return self.roster.add(name, instructor=instructor)[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def notebook_files(path: Path, name: str | None = None) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart ``files`` part of one notebook."""
    return [("files", (name or path.name, path.read_bytes(), "application/x-ipynb+json"))]


def hand_in(client: Any, token: str, path: Path, assignment: str = "tiny") -> Any:
    """POST one notebook to ``/api/submissions`` as the holder of ``token``; the response."""
    return client.post(
        "/api/submissions",
        data={"assignment": assignment},
        files=notebook_files(path),
        headers=auth(token),
    )


def wait_for(client: Any, url: str, token: str, *, timeout: float = 120) -> dict[str, Any]:
    """Poll a submission until it has its verdict; its last status."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url, headers=auth(token)).json()
        if body["status"] not in ("queued", "running"):
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"not graded within {timeout} s: {body}")
        time.sleep(0.1)
