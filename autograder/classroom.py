"""What the service's pages show and do beyond the API: the participant's workshop, the
instructor's view of the room, and the instructor's actions (regrade, extend, reveal), each
recorded with who did it and when."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import time
from datetime import UTC, datetime
from typing import Any

from .config import load_assignment, parse_time
from .dispatch import pages, uploads
from .intake import Refused
from .jobqueue import actions_table, extensions_table, flags_table
from .roster import Member


def csrf_token(service: Any, member: Member) -> str:
    """The form token of ``member``'s pages: an HMAC of their token id under the course key
    (another site can neither read nor make it)."""
    mac = hmac.new(service.roster.key, f"csrf:{member.token_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def check_csrf(service: Any, member: Member, sent: object) -> None:
    if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_token(service, member)):
        raise Refused(403, "this form is out of date or came from another site; reload the page")


def record_action(service: Any, member: Member, action: str, detail: str) -> None:
    table = actions_table()
    with service.queue.engine.begin() as conn:
        conn.execute(
            table.insert().values(
                id=secrets.token_hex(8),
                at=time.time(),
                who=member.name,
                action=action,
                detail=detail[:500],
            )
        )


def recent_actions(service: Any, limit: int = 50) -> list[dict[str, Any]]:
    table = actions_table()
    with service.queue.engine.connect() as conn:
        rows = conn.execute(table.select().order_by(table.c.at.desc()).limit(limit)).mappings()
        return [
            {
                "at": datetime.fromtimestamp(r["at"], UTC).isoformat(timespec="seconds"),
                "who": r["who"],
                "action": r["action"],
                "detail": r["detail"],
            }
            for r in rows
        ]


def revealed(service: Any, assignment: str) -> bool:
    """Whether the final (private) leaderboard of ``assignment`` has been revealed."""
    table = flags_table()
    with service.queue.engine.connect() as conn:
        row = conn.execute(table.select().where(table.c.name == f"final:{assignment}")).first()
    return row is not None


def reveal(service: Any, member: Member, assignment: str) -> None:
    table = flags_table()
    with service.queue.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.name == f"final:{assignment}"))
        conn.execute(table.insert().values(name=f"final:{assignment}", value=member.name))
    service.forget_leaderboard(assignment)
    record_action(service, member, "reveal", f"final leaderboard of {assignment}")


def extend(service: Any, member: Member, student: str, assignment: str, until: str) -> str:
    if service.roster.get(student) is None:
        raise Refused(422, f"{student!r} is not on the roster")
    load_assignment(service.course, assignment)
    try:
        when = parse_time(until.strip(), "the new deadline").isoformat()
    except Exception as exc:
        raise Refused(422, str(exc)) from None
    table = extensions_table()
    with service.queue.engine.begin() as conn:
        conn.execute(
            table.delete().where(table.c.student == student, table.c.assignment == assignment)
        )
        conn.execute(table.insert().values(student=student, assignment=assignment, until=when))
    record_action(service, member, "extend", f"{student} may submit {assignment} until {when}")
    return when


def regrade(service: Any, member: Member, assignment: str, student: str | None) -> list[str]:
    """Queue again the latest graded submission of ``student`` (of everyone, for None): a new
    submission with the same files, which does not count against their quota."""
    latest: dict[str, Any] = {}
    for sub in service.queue.all_of(assignment):
        if sub.status in ("queued", "running", "replaced") or (student and sub.student != student):
            continue
        if sub.student not in latest or sub.received_at > latest[sub.student].received_at:
            latest[sub.student] = sub
    if student and student not in latest:
        raise Refused(422, f"{student} has no graded submission of {assignment} to regrade")
    made = []
    for sub in latest.values():
        new_id = service.queue.new_id()
        shutil.copytree(uploads(service.course) / sub.id, uploads(service.course) / new_id)
        service.queue.add(
            new_id,
            student=sub.student,
            assignment=assignment,
            files=list(sub.files),
            late=sub.late,
            now=sub.received_at,
            regrade=True,
        )
        made.append(new_id)
    service.notify()
    who = student or f"all {len(made)} participant(s)"
    record_action(service, member, "regrade", f"{assignment}: {who}")
    return made


def room(service: Any, assignment: str) -> dict[str, Any]:
    """The instructor's view of ``assignment``: each participant's latest submission, the
    queue, per-item pass rates and the score histogram."""
    from .gradebook import load_results
    from .leaderboard import summarize
    from .pages import histogram

    config = load_assignment(service.course, assignment)
    latest: dict[str, Any] = {}
    for sub in service.queue.all_of(assignment):
        if sub.status == "replaced":
            continue
        if sub.student not in latest or sub.received_at > latest[sub.student].received_at:
            latest[sub.student] = sub
    results = {r.student: r for r in load_results(service.course.gradebook_url, assignment)}
    rows = []
    for member in service.roster.members():
        if member.instructor or member.revoked_at:
            continue
        sub = latest.get(member.name)
        result = results.get(member.name)
        rows.append(
            {
                "name": member.name,
                "status": sub.status if sub else "nothing handed in",
                "score": result.score if result else None,
                "max_score": result.max_score if result else None,
                "late": bool(sub and sub.late),
                "flagged": bool(
                    (
                        sub
                        and (sub.grader_fault or sub.status not in ("graded", "queued", "running"))
                    )
                    or (result and result.flags)
                ),
                "flags": result.flags if result else [],
                "feedback": sub.id
                if sub and (pages(service.course) / f"{sub.id}.html").is_file()
                else None,
            }
        )
    now = time.time()
    queue = [
        {
            "id": s.id,
            "student": s.student,
            "status": s.status,
            "waiting_s": round(now - s.received_at),
            "running_s": round(now - s.started_at) if s.started_at else None,
            "worker": s.worker,
        }
        for s in service.queue.waiting()
        if s.assignment == assignment
    ]
    graded = list(results.values())
    maximum = max((r.max_score for r in graded), default=0.0)
    return {
        "name": assignment,
        "title": config.title or assignment,
        "rows": rows,
        "queue": queue,
        "item_rates": summarize(graded),
        "chart": histogram([r.score for r in graded], maximum=maximum or 1.0, title="total scores"),
        "revealed": revealed(service, assignment),
        "has_csv": any(c.kind == "csv" for c in config.checks),
    }
