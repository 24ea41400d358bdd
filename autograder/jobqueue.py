"""The service's queue, in the course's database (the gradebook's SQLAlchemy URL).

One row per submission, with its timestamps (received, started, finished), its status
(``queued``, ``running``, then a grading status of ``results --json``, or ``replaced`` when a
newer submission of the same assignment took its place while it waited), and where its files
are (a folder named by the server-made id). The queue lives in the database, so a service
killed at any moment loses nothing: :meth:`Queue.recover` puts back what was running (or
finishes it from the gradebook when its result was already recorded), so each submission is
recorded once.

Fair order: the next submission is the oldest waiting one of the participant who started
grading longest ago (round-robin), so one participant's burst never starves the others.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Statuses of a submission that has not reached its verdict.
WAITING = ("queued", "running")
#: Statuses that are the grader's fault, not the participant's: retried, never counted.
GRADER_FAULTS = ("sandbox-error", "error")
#: Times a submission is tried before its grader failure is final.
MAX_ATTEMPTS = 3


@functools.cache
def _metadata() -> Any:
    import sqlalchemy as sa

    meta = sa.MetaData()
    sa.Table(
        "autograder_roster",
        meta,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("email", sa.String(200), nullable=False, default=""),
        sa.Column("token_id", sa.String(32), nullable=False, unique=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
    )
    sa.Table(
        "autograder_submissions",
        meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("student", sa.String(64), nullable=False, index=True),
        sa.Column("assignment", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("late", sa.Boolean, nullable=False, default=False),
        sa.Column("files", sa.Text, nullable=False, default="[]"),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("max_score", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False, default=""),
        sa.Column("grader_fault", sa.Boolean, nullable=False, default=False),
        # Queued by the instructor (a regrade): not the participant's, never in a quota.
        sa.Column("regrade", sa.Boolean, nullable=False, default=False),
        # The grader (and device) it runs or ran on.
        sa.Column("worker", sa.String(64), nullable=False, default=""),
    )
    sa.Table(
        "autograder_extensions",
        meta,
        sa.Column("student", sa.String(64), primary_key=True),
        sa.Column("assignment", sa.String(128), primary_key=True),
        sa.Column("until", sa.String(40), nullable=False),
    )
    sa.Table(
        "autograder_actions",
        meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, default=""),
    )
    sa.Table(
        "autograder_flags",
        meta,
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    return meta


def actions_table() -> Any:
    return _metadata().tables["autograder_actions"]


def flags_table() -> Any:
    return _metadata().tables["autograder_flags"]


def roster_table() -> Any:
    return _metadata().tables["autograder_roster"]


def submissions_table() -> Any:
    return _metadata().tables["autograder_submissions"]


def extensions_table() -> Any:
    return _metadata().tables["autograder_extensions"]


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def connect(url: str) -> Any:
    """One SQLAlchemy engine per database URL, with the service's tables created. SQLite gets
    write-ahead logging (readers never wait for the writer) and a generous busy timeout."""
    import sqlalchemy as sa

    with _ENGINES_LOCK:
        if url in _ENGINES:
            return _ENGINES[url]
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi: Any, _record: Any) -> None:
                cursor = dbapi.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        _metadata().create_all(engine)
        _ENGINES[url] = engine
        return engine


@dataclass(frozen=True)
class Submission:
    """One row of the queue."""

    id: str
    student: str
    assignment: str
    status: str
    received_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    late: bool
    files: tuple[dict[str, str], ...]
    score: float | None
    max_score: float | None
    message: str
    grader_fault: bool
    regrade: bool = False
    worker: str = ""

    @property
    def done(self) -> bool:
        return self.status not in WAITING


def _submission(row: Any) -> Submission:
    data = dict(row)
    data["files"] = tuple(json.loads(data["files"] or "[]"))
    data["late"] = bool(data["late"])
    data["grader_fault"] = bool(data["grader_fault"])
    data["regrade"] = bool(data.get("regrade"))
    data["worker"] = data.get("worker") or ""
    return Submission(**data)


def fair_order(queued: Sequence[Submission], last_started: dict[str, float]) -> list[Submission]:
    """``queued`` in the order they will be graded: round-robin by participant, each
    participant's own in the order received; whoever started grading longest ago goes first."""
    heads: dict[str, list[Submission]] = {}
    for sub in sorted(queued, key=lambda s: (s.received_at, s.id)):
        heads.setdefault(sub.student, []).append(sub)
    turn = {s: (0, last_started.get(s, -1.0)) for s in heads}
    order: list[Submission] = []
    while heads:
        student = min(heads, key=lambda s: (turn[s], heads[s][0].received_at, s))
        order.append(heads[student].pop(0))
        turn[student] = (1, float(len(order)))
        if not heads[student]:
            del heads[student]
    return order


class Queue:
    """The queue's operations; safe to use from several threads of one process."""

    def __init__(self, url: str) -> None:
        self.engine = connect(url)
        self.table = submissions_table()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def add(
        self,
        sub_id: str,
        *,
        student: str,
        assignment: str,
        files: Sequence[dict[str, str]],
        late: bool,
        now: float | None = None,
        regrade: bool = False,
    ) -> list[str]:
        """Queue a submission; return the ids of the older ones of the same participant and
        assignment it replaced (they were still waiting)."""
        t = self.table
        now = time.time() if now is None else now
        with self._lock, self.engine.begin() as conn:
            replaced = [
                r[0]
                for r in conn.execute(
                    t.select()
                    .with_only_columns(t.c.id)
                    .where(
                        t.c.student == student,
                        t.c.assignment == assignment,
                        t.c.status == "queued",
                    )
                )
            ]
            if replaced:
                conn.execute(
                    t.update()
                    .where(t.c.id.in_(replaced))
                    .values(
                        status="replaced",
                        finished_at=now,
                        message="a newer submission of this assignment replaced this one "
                        "before it was graded",
                    )
                )
            conn.execute(
                t.insert().values(
                    id=sub_id,
                    student=student,
                    assignment=assignment,
                    status="queued",
                    received_at=now,
                    attempts=0,
                    late=late,
                    files=json.dumps(list(files)),
                    message="",
                    grader_fault=False,
                    regrade=regrade,
                )
            )
        return replaced

    def get(self, sub_id: str) -> Submission | None:
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(t.select().where(t.c.id == sub_id)).mappings().first()
        return _submission(row) if row is not None else None

    def of_student(self, student: str, limit: int = 200) -> list[Submission]:
        """The participant's submissions, newest first."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(
                t.select()
                .where(t.c.student == student)
                .order_by(t.c.received_at.desc())
                .limit(limit)
            ).mappings()
            return [_submission(r) for r in rows]

    def waiting(self) -> list[Submission]:
        """Every queued submission in the order it will be graded, then the running ones."""
        t = self.table
        with self.engine.connect() as conn:
            rows = [
                _submission(r)
                for r in conn.execute(t.select().where(t.c.status.in_(WAITING))).mappings()
            ]
            started = self._last_started(conn)
        queued = [r for r in rows if r.status == "queued"]
        running = sorted(
            (r for r in rows if r.status == "running"), key=lambda r: r.started_at or 0
        )
        return fair_order(queued, started) + running

    def _last_started(self, conn: Any) -> dict[str, float]:
        import sqlalchemy as sa

        t = self.table
        rows = conn.execute(
            sa.select(t.c.student, sa.func.max(t.c.started_at))
            .where(t.c.started_at.isnot(None))
            .group_by(t.c.student)
        ).all()
        return {student: float(when) for student, when in rows if when is not None}

    def positions(self) -> dict[str, int]:
        """1-based place in line of every queued submission."""
        return {
            sub.id: i
            for i, sub in enumerate((s for s in self.waiting() if s.status == "queued"), start=1)
        }

    def claim(self, worker: str = "") -> Submission | None:
        """Take the next submission in fair order and mark it running on ``worker``; None
        when none waits."""
        t = self.table
        with self._lock, self.engine.begin() as conn:
            rows = [
                _submission(r)
                for r in conn.execute(t.select().where(t.c.status.in_(WAITING))).mappings()
            ]
            # One participant's two submissions of an assignment never run at once: both
            # would be placed in the same submitted/ folder.
            busy = {(r.student, r.assignment) for r in rows if r.status == "running"}
            queued = [
                r for r in rows if r.status == "queued" and (r.student, r.assignment) not in busy
            ]
            if not queued:
                return None
            nxt = fair_order(queued, self._last_started(conn))[0]
            now = time.time()
            conn.execute(
                t.update()
                .where(t.c.id == nxt.id, t.c.status == "queued")
                .values(status="running", started_at=now, attempts=nxt.attempts + 1, worker=worker)
            )
        return self.get(nxt.id)

    def requeue(self, sub_id: str, message: str = "") -> None:
        """Put a running submission back in line (a grader failure, or a restart)."""
        t = self.table
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.id == sub_id, t.c.status == "running")
                .values(status="queued", message=message)
            )

    def finish(
        self,
        sub_id: str,
        *,
        status: str,
        score: float | None,
        max_score: float | None,
        message: str,
        grader_fault: bool = False,
    ) -> None:
        t = self.table
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.id == sub_id)
                .values(
                    status=status,
                    score=score,
                    max_score=max_score,
                    message=message,
                    finished_at=time.time(),
                    grader_fault=grader_fault,
                )
            )

    def running(self) -> list[Submission]:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(t.select().where(t.c.status == "running")).mappings()
            return [_submission(r) for r in rows]

    def counted(self, student: str, assignment: str, since: float) -> list[float]:
        """Times the participant's submissions of ``assignment`` were received since
        ``since``, oldest first, leaving out those that failed by the grader's fault."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(
                t.select()
                .with_only_columns(t.c.received_at)
                .where(
                    t.c.student == student,
                    t.c.assignment == assignment,
                    t.c.received_at >= since,
                    t.c.grader_fault.is_(False),
                    t.c.regrade.is_(False),
                )
                .order_by(t.c.received_at)
            ).all()
        return [float(r[0]) for r in rows]

    def all_of(self, assignment: str) -> Iterator[Submission]:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(t.select().where(t.c.assignment == assignment)).mappings().all()
        return (_submission(r) for r in rows)
