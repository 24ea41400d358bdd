"""``autograder serve``: the workshop service's HTTP side, an ASGI app on Starlette.

A thin door in front of the grading code (DESIGN.md, *The workshop service*): authenticate
(the personal token as ``Authorization: Bearer T`` or the cookie its link sets), check the
limits (size while the body arrives, file types by content, the participant's rate, the
deadline), store the files under a server-made id, queue a row, answer 202. Grading happens
in :mod:`autograder.dispatch`'s threads, never here. Every error is ``{"error": sentence}``
with the contract's status code; names a participant sends are data, never paths.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from .config import Course, load_assignment, parse_size
from .dispatch import pages, uploads
from .errors import AutograderError
from .intake import Refused, classify
from .jobqueue import Queue, Submission
from .roster import Member, Roster, check_member_name

log = logging.getLogger("autograder.service")

COOKIE = "autograder_token"
#: Bad tokens one address may send per minute before it is made to wait.
BAD_TOKENS_PER_MINUTE = 10
#: Files one submission may carry, and the longest field value read.
MAX_FILES = 8
MAX_FIELD_CHARS = 200
#: The Content-Security-Policy of every HTML answer (the feedback pages' own).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclasses.dataclass
class ServiceOptions:
    """What ``serve`` was told beyond the course."""

    #: The address participants use (links in answers); "" for the address of each request.
    public_url: str = ""
    #: Lets a walk-in pick a name and get a token (``POST /api/join``); "" turns it off.
    join_code: str = ""
    #: Upload limit when the assignment's ``[service] max_upload`` is left at its default.
    max_upload: int | None = None
    #: Cookies only over HTTPS (on when serving TLS or behind an HTTPS proxy).
    secure_cookies: bool = False


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else None


def _clean(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Participant text for a message: printable, one line, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Service:
    """The state behind the app: the course, its roster and queue, and the dispatcher."""

    def __init__(
        self,
        course: Course,
        *,
        roster: Roster,
        queue: Queue,
        options: ServiceOptions | None = None,
        notify: Any = None,
    ) -> None:
        self.course, self.roster, self.queue = course, roster, queue
        self.options = options or ServiceOptions()
        self.notify = notify or (lambda: None)
        self.bad_tokens: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._lock = threading.Lock()
        self._leaderboards: dict[str, tuple[float, str]] = {}
        self._keys: dict[tuple[str, str], tuple[float, str]] = {}
        #: Called with (submission, result) when its page shows older scores than the
        #: gradebook's (the dispatcher writes it again); None: pages are served as written.
        self.on_stale_page: Any = None

    #: How long an upload's ``Idempotency-Key`` is remembered.
    IDEMPOTENCY_S = 3600.0

    def repeated(self, member: Member, key: str) -> Submission | None:
        """The submission an earlier upload with the same ``Idempotency-Key`` made."""
        if not key:
            return None
        with self._lock:
            seen = self._keys.get((member.name, key))
        if seen is None or time.monotonic() - seen[0] > self.IDEMPOTENCY_S:
            return None
        return self.queue.get(seen[1])

    def remember(self, member: Member, key: str, sub_id: str) -> None:
        if key:
            with self._lock:
                now = time.monotonic()
                self._keys = {
                    k: v for k, v in self._keys.items() if now - v[0] < self.IDEMPOTENCY_S
                }
                self._keys[(member.name, key)] = (now, sub_id)

    def forget_leaderboard(self, assignment: str) -> None:
        with self._lock:
            self._leaderboards.pop(assignment, None)

    def leaderboard(self, assignment: str, max_age_s: float = 10.0) -> str:
        """The leaderboard page (public scores; private ones once the instructor revealed
        them), rendered at most every ``max_age_s``."""
        from .classroom import revealed
        from .leaderboard import write_leaderboard

        if assignment not in self.course.assignments():
            raise Refused(404, f"no assignment {_clean(assignment)!r}")
        with self._lock:
            cached = self._leaderboards.get(assignment)
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        output = self.course.state / "service" / f"leaderboard-{assignment}.html"
        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            final = revealed(self, assignment)
            page = write_leaderboard(self.course, assignment, final=final, output=output)
            html = page.read_text()
        except AutograderError as exc:
            raise Refused(404, str(exc)) from None
        if not final:
            # During the workshop the page reloads itself (no script: a meta refresh).
            html = html.replace("<head>", '<head>\n<meta http-equiv="refresh" content="30">', 1)
        with self._lock:
            self._leaderboards[assignment] = (time.monotonic(), html)
        return html

    # --- who is asking ----------------------------------------------------------------------

    def member(self, request: Any) -> Member:
        """The caller; 401 without a valid token, 429 for an address that keeps guessing."""
        address = request.client.host if request.client else "?"
        self._check_guessing(address)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        via_cookie = not token
        token = token or request.cookies.get(COOKIE, "")
        if not token:
            raise Refused(
                401,
                "no token: send your personal token as 'Authorization: Bearer <token>', or "
                "open your personal link once in this browser",
            )
        member = self.roster.authenticate(token)
        if member is None:
            self._bad_token(address)
            raise Refused(
                401,
                "this token is not valid (mistyped, or revoked); use the personal link or "
                "token your instructor gave you",
            )
        if via_cookie and request.method not in ("GET", "HEAD"):
            # A cookie rides along on requests other sites make; only this site's pages may
            # change anything with it.
            origin = request.headers.get("origin") or request.headers.get("referer") or ""
            if not origin.startswith(self.base_url(request)):
                raise Refused(403, "this request came from another site; submit from this site")
        return member

    def _check_guessing(self, address: str) -> None:
        with self._lock:
            seen = self.bad_tokens[address]
            now = time.monotonic()
            while seen and now - seen[0] > 60:
                seen.popleft()
            if len(seen) >= BAD_TOKENS_PER_MINUTE:
                wait = max(1, math.ceil(60 - (now - seen[0])))
                raise Refused(
                    429,
                    f"too many invalid tokens from this address; wait {wait} s and check your "
                    "token",
                    {"Retry-After": str(wait)},
                )

    def _bad_token(self, address: str) -> None:
        with self._lock:
            self.bad_tokens[address].append(time.monotonic())

    def base_url(self, request: Any) -> str:
        if self.options.public_url:
            return self.options.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def link(self, request: Any, member: Member) -> str:
        return f"{self.base_url(request)}/me?token={self.roster.token_for(member)}"

    # --- assignments ------------------------------------------------------------------------

    def assignments(self) -> list[dict[str, Any]]:
        out = []
        for name in self.course.assignments():
            config = load_assignment(self.course, name)
            release = self.course.release(name)
            files = (
                sorted(
                    p.relative_to(release).as_posix()
                    for p in release.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.parts)
                )
                if release.is_dir()
                else []
            )
            out.append(
                {
                    "name": name,
                    "title": config.title or name,
                    "deadline": config.service.deadline or None,
                    "hard_deadline": config.service.hard_deadline or None,
                    "notebooks": [f"{nb}.ipynb" for nb in config.notebooks],
                    "files": files,
                    "max_upload_bytes": self.upload_limit(config),
                }
            )
        return out

    def upload_limit(self, config: Any) -> int:
        default = parse_size("20M")
        limit = parse_size(config.service.max_upload)
        if limit == default and self.options.max_upload:
            return self.options.max_upload
        return limit

    def largest_upload(self) -> int:
        limits = [
            self.upload_limit(load_assignment(self.course, a)) for a in self.course.assignments()
        ]
        return max(limits or [parse_size("20M")])

    # --- submissions ------------------------------------------------------------------------

    def status(self, request: Any, sub: Submission, positions: dict[str, int]) -> dict[str, Any]:
        """A submission as ``GET /api/submissions/{id}`` answers it; once graded, its scores
        as the gradebook holds them now (hand grades included) while it is the latest."""
        base = self.base_url(request)
        out: dict[str, Any] = {
            "id": sub.id,
            "student": sub.student,
            "assignment": sub.assignment,
            "status": sub.status,
            "position": positions.get(sub.id) if sub.status == "queued" else None,
            "score": sub.score,
            "max_score": sub.max_score,
            "submitted_at": _iso(sub.received_at),
            "feedback_url": None,
            "url": f"{base}/api/submissions/{sub.id}",
            "late": sub.late,
            "message": sub.message,
            "started_at": _iso(sub.started_at),
            "finished_at": _iso(sub.finished_at),
        }
        if sub.done and sub.status != "replaced":
            live = self.live_result(sub)
            if live is not None:
                out.update(score=live.score, max_score=live.max_score)
                out["items"] = [item.to_json() for item in live.items]
            if (pages(self.course) / f"{sub.id}.html").is_file():
                out["feedback_url"] = f"{base}/feedback/{sub.id}"
        return out

    def live_result(self, sub: Submission) -> Any:
        """The gradebook's current result of ``sub`` (None when a later submission of the same
        assignment has been recorded since, or nothing was)."""
        from types import SimpleNamespace

        import sqlalchemy as sa
        from sqlalchemy.orm import Session

        from .results import SubmissionResult
        from .scores import grade_rows, grader_comments, joined

        engine = self.queue.engine
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.text(
                        "SELECT record FROM autograder_results WHERE student = :s AND "
                        "assignment = :a"
                    ),
                    {"s": sub.student, "a": sub.assignment},
                ).first()
        except sa.exc.DBAPIError:
            return None
        if row is None:
            return None
        result = SubmissionResult.from_record(json.loads(row[0]))
        if result.details.get("submission") != sub.id:
            return None
        with Session(engine) as session:
            holder = SimpleNamespace(db=session)
            grades = grade_rows(holder, sub.assignment, sub.student)
            comments = grader_comments(holder, sub.assignment, sub.student)
        return joined(result, grades.get(sub.student, {}), comments)

    def owned(self, member: Member, sub_id: str) -> Submission:
        """The submission ``sub_id`` if the caller may see it; 404 otherwise, with no hint
        that it exists."""
        sub = self.queue.get(sub_id) if len(sub_id) <= 64 else None
        if sub is None or (sub.student != member.name and not member.instructor):
            raise Refused(404, "no such submission of yours; 'GET /api/submissions' lists them")
        return sub

    def check_window(self, member: Member, config: Any, now: float) -> bool:
        """Refuse past the hard deadline (422) or over the rate (429); True when late."""
        from .jobqueue import extensions_table

        service = config.service
        hard, soft = service.hard_deadline_at(), service.deadline_at()
        extension = None
        table = extensions_table()
        with self.queue.engine.connect() as conn:
            row = conn.execute(
                table.select().where(
                    table.c.student == member.name, table.c.assignment == config.name
                )
            ).first()
        if row is not None:
            from .config import parse_time

            extension = parse_time(row.until, "extension")
        when = datetime.fromtimestamp(now, UTC)
        if hard is not None and when > max(hard, extension or hard):
            raise Refused(
                422,
                f"{config.name} closed at {hard.isoformat()}; submissions are no longer "
                "accepted (ask the instructor for an extension)",
            )
        late = soft is not None and when > max(soft, extension or soft)
        if service.min_interval_s or service.max_per_window:
            times = self.queue.counted(member.name, config.name, now - service.window_s)
            wait = 0.0
            if service.min_interval_s and times:
                wait = max(wait, times[-1] + service.min_interval_s - now)
            if service.max_per_window and len(times) >= service.max_per_window:
                wait = max(wait, times[-service.max_per_window] + service.window_s - now)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                at = datetime.fromtimestamp(now + seconds, UTC).isoformat(timespec="seconds")
                raise Refused(
                    429,
                    f"too many submissions of {config.name}: the next one is allowed in "
                    f"{seconds} s (at {at})",
                    {"Retry-After": str(seconds)},
                )
        return late

    async def receive_files(self, request: Any) -> tuple[str, list[tuple[str, bytes]]]:
        """The form's assignment and files, the body counted while it arrives (413 over the
        largest limit; the assignment's own limit is checked once it is known)."""
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise Refused(
                415,
                "send the submission as multipart/form-data with a field 'assignment' and "
                "the files in 'files'",
            )
        limit = self.largest_upload()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"the upload is larger than {limit // 2**20} MiB; send less")
        received = 0

        async def counted() -> AsyncGenerator[bytes, None]:
            nonlocal received
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise Refused(413, f"the upload is larger than {limit // 2**20} MiB; send less")
                yield chunk

        parser = MultiPartParser(
            request.headers,
            counted(),
            max_files=MAX_FILES,
            max_fields=6,
            # A part sent without a file name arrives as a field: as large as a file may be.
            max_part_size=limit,
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            if "header size" in str(exc.__context__ or ""):
                raise Refused(
                    422, "a file name in the form is too long; rename the file and send it again"
                ) from None
            raise Refused(415, f"the form could not be read ({_clean(str(exc))})") from None
        assignment = form.get("assignment")
        if not isinstance(assignment, str) or not assignment.strip():
            raise Refused(422, "the form has no 'assignment' field; name the assignment")
        files = []
        for value in form.getlist("files"):
            if isinstance(value, UploadFile):
                data = await value.read()
                await value.close()
                if data or value.filename:
                    # A form's file input left empty sends an empty part with no name.
                    files.append((_clean(value.filename or "", 120), data))
            else:
                files.append(("", str(value).encode("utf-8")))
        if not files:
            raise Refused(415, "the form has no files; send the notebook in 'files'")
        request.state.received = received
        csrf = form.get("csrf")
        request.state.form_csrf = csrf if isinstance(csrf, str) else ""
        return assignment.strip()[:MAX_FIELD_CHARS], files

    def accept(
        self, request: Any, member: Member, name: str, files: list[tuple[str, bytes]], key: str
    ) -> dict[str, Any]:
        """Check, store and queue one upload; its status as the 202 answer says it. The same
        ``Idempotency-Key`` again (a client retrying after a lost answer) is the submission it
        made already, not a second one."""
        earlier = self.repeated(member, key)
        if earlier is not None:
            return self.status(request, earlier, self.queue.positions()) | {"replaced": []}
        if name not in self.course.assignments():
            known = ", ".join(self.course.assignments()) or "none"
            raise Refused(422, f"no assignment {_clean(name)!r}; the assignments are {known}")
        config = load_assignment(self.course, name)
        limit = self.upload_limit(config)
        if request.state.received > limit:
            raise Refused(413, f"the upload is larger than {limit // 2**20} MiB; send less")
        late = self.check_window(member, config, time.time())
        sub_id, replaced = self.store(member, config, files, late)
        self.remember(member, key, sub_id)
        sub = self.queue.get(sub_id)
        assert sub is not None
        return self.status(request, sub, self.queue.positions()) | {"replaced": replaced}

    def store(
        self, member: Member, config: Any, files: list[tuple[str, bytes]], late: bool
    ) -> tuple[str, list[str]]:
        """Sort the files by content, write them under a new id with the names the
        assignment gives them, and queue the submission."""
        notebooks, csvs = classify(config, files)
        sub_id = self.queue.new_id()
        folder = uploads(self.course) / sub_id
        folder.mkdir(parents=True, exist_ok=False)
        stored = []
        for target, (original, data) in {**notebooks, **csvs}.items():
            (folder / target).write_bytes(data)
            stored.append({"name": target, "sent_as": original, "bytes": str(len(data))})
        replaced = self.queue.add(
            sub_id, student=member.name, assignment=config.name, files=stored, late=late
        )
        self.notify()
        return sub_id, replaced


def check_join(service: Service, code: str, name: str) -> str:
    """A walk-in's chosen name, checked: the code right, the name valid and free."""
    if not service.options.join_code or not hmac.compare_digest(
        code.encode(), service.options.join_code.encode()
    ):
        raise Refused(401, "this join code is not right; ask the instructor for it")
    try:
        name = check_member_name(name)
    except AutograderError as exc:
        raise Refused(422, str(exc)) from None
    if service.roster.get(name) is not None:
        raise Refused(422, f"the name {name!r} is taken; pick another")
    return name
