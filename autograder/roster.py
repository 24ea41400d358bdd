"""Who may hand in to the workshop service: participants and instructors, each with a token.

A token is ``<id>.<secret>``: ``id`` is 16 random bytes, ``secret`` an HMAC of the id under the
course's service key (``.autograder/service.key``, 32 random bytes, mode 0600). The database
keeps the id and a salted scrypt hash of the whole token, never the token: a copy of the
database alone lets nobody in. The key lets ``roster list`` show each personal link again,
and a revoked entry's id is never accepted, whatever the key.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import hmac
import io
import os
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Course, check_name
from .errors import ConfigError

#: scrypt's cost: about 30 ms here, once per token per service run (verified tokens are
#: remembered in memory for VERIFIED_TTL_S).
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
VERIFIED_TTL_S = 600.0
ROLES = ("participant", "instructor")
#: Longest display name a participant may pick with a join code.
MAX_NAME_CHARS = 40


@dataclasses.dataclass(frozen=True)
class Member:
    """One roster entry (never its token)."""

    name: str
    role: str
    email: str
    token_id: str
    created_at: str
    revoked_at: str | None

    @property
    def instructor(self) -> bool:
        return self.role == "instructor"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def service_key(course: Course) -> bytes:
    """The course's service key, created (mode 0600) on first use."""
    path = course.state / "service.key"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        course.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return data
    if len(data) != 32:
        raise ConfigError(
            f"{path} is not a service key (32 bytes); remove it and add the roster again"
        )
    return data


def _hash(token: str, salt: bytes) -> str:
    return _b64(hashlib.scrypt(token.encode(), salt=salt, **SCRYPT, dklen=32))


class Roster:
    """The roster table in the course's database (the gradebook's, any SQLAlchemy URL)."""

    def __init__(self, course: Course, engine: Any | None = None) -> None:
        from .jobqueue import connect

        self.course = course
        self.engine = engine or connect(course.gradebook_url)
        self.key = service_key(course)
        self._verified: dict[str, tuple[float, Member]] = {}
        self._lock = threading.Lock()

    # --- tokens -------------------------------------------------------------------------

    def token_for(self, member: Member) -> str:
        """The token of ``member`` (derived from the key; shown in links, never stored)."""
        mac = hmac.new(self.key, member.token_id.encode(), hashlib.sha256).digest()
        return f"{member.token_id}.{_b64(mac)}"

    def authenticate(self, token: str) -> Member | None:
        """The active member whose token this is, or None. Constant-time where it matters."""
        if not isinstance(token, str) or len(token) > 200 or token.count(".") != 1:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._verified.get(digest)
        if hit and time.monotonic() - hit[0] < VERIFIED_TTL_S:
            member = self.get_by_token_id(hit[1].token_id)
            return member if member and member.revoked_at is None else None
        token_id = token.split(".", 1)[0]
        row = self._row("token_id", token_id)
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(_hash(token, base64.b64decode(row["salt"])), row["token_hash"]):
            return None
        member = _member(row)
        with self._lock:
            self._verified[digest] = (time.monotonic(), member)
        return member

    # --- entries ------------------------------------------------------------------------

    def add(self, name: str, *, instructor: bool = False, email: str = "") -> tuple[Member, str]:
        """Add ``name`` (or give a revoked entry a new token); return it and its token."""
        from .jobqueue import roster_table

        name = check_member_name(name)
        email = email.strip()
        if len(email) > 200 or any(c.isspace() or not c.isprintable() for c in email):
            raise ConfigError(f"e-mail {email[:60]!r} of {name} is not an address")
        token_id = _b64(secrets.token_bytes(16))
        salt = secrets.token_bytes(16)
        role = "instructor" if instructor else "participant"
        member = Member(name, role, email, token_id, _now(), None)
        token = self.token_for(member)
        values = {
            "name": name,
            "role": role,
            "email": email,
            "token_id": token_id,
            "salt": base64.b64encode(salt).decode(),
            "token_hash": _hash(token, salt),
            "created_at": member.created_at,
            "revoked_at": None,
        }
        table = roster_table()
        with self.engine.begin() as conn:
            existing = conn.execute(table.select().where(table.c.name == name)).mappings().first()
            if existing is not None and existing["revoked_at"] is None:
                raise ConfigError(
                    f"{name} is already on the roster; 'autograder roster list' shows their "
                    f"link, or revoke it first ('autograder roster revoke {name}') for a new one"
                )
            if existing is not None:
                conn.execute(table.update().where(table.c.name == name).values(**values))
            else:
                conn.execute(table.insert().values(**values))
        return member, token

    def add_many(self, rows: Iterable[tuple[str, str]]) -> list[tuple[Member, str]]:
        """Add each (name, email); names already on the roster are refused before any is
        added, so an import is all or nothing."""
        rows = list(rows)
        names = [check_member_name(name) for name, _ in rows]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"the file names {', '.join(twice)} more than once")
        taken = [n for n in names if (m := self.get(n)) is not None and m.revoked_at is None]
        if taken:
            raise ConfigError(
                f"already on the roster: {', '.join(taken)}; remove them from the file "
                "(their links are in 'autograder roster list')"
            )
        return [self.add(name, email=email) for name, email in rows]

    def revoke(self, name: str) -> Member:
        from .jobqueue import roster_table

        member = self.get(name)
        if member is None or member.revoked_at is not None:
            raise ConfigError(
                f"{name!r} is not on the roster (or already revoked); see 'autograder roster list'"
            )
        table = roster_table()
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.name == name).values(revoked_at=_now()))
        with self._lock:
            self._verified.clear()
        return dataclasses.replace(member, revoked_at=_now())

    def get(self, name: str) -> Member | None:
        row = self._row("name", name)
        return _member(row) if row is not None else None

    def get_by_token_id(self, token_id: str) -> Member | None:
        row = self._row("token_id", token_id)
        return _member(row) if row is not None else None

    def members(self) -> list[Member]:
        from .jobqueue import roster_table

        table = roster_table()
        with self.engine.connect() as conn:
            rows = conn.execute(table.select().order_by(table.c.name)).mappings().all()
        return [_member(r) for r in rows]

    def _row(self, column: str, value: str) -> Any:
        from .jobqueue import roster_table

        table = roster_table()
        with self.engine.connect() as conn:
            return conn.execute(table.select().where(table.c[column] == value)).mappings().first()


def _member(row: Any) -> Member:
    return Member(
        name=row["name"],
        role=row["role"],
        email=row["email"] or "",
        token_id=row["token_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def check_member_name(name: str) -> str:
    """A roster name is a student folder name too (``submitted/<name>/``): letters, digits,
    ``_ - .``, at most :data:`MAX_NAME_CHARS`."""
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"names have at most {MAX_NAME_CHARS} characters")
    return check_name("participant", name)


def read_roster_file(path: Path) -> list[tuple[str, str]]:
    """(name, email) rows of a CSV file: a ``name`` column and an optional ``email`` one (a
    header row), or rows of ``name[,email]`` without a header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise ConfigError(f"{path} holds no names; write one name (and e-mail) per line")
    header = [c.strip().lower() for c in rows[0]]
    if "name" in header:
        at, mail = header.index("name"), header.index("email") if "email" in header else None
        rows = rows[1:]
    else:
        at, mail = 0, 1
    out = []
    for line, row in enumerate(rows, start=2 if "name" in header else 1):
        name = row[at].strip() if at < len(row) else ""
        email = row[mail].strip() if mail is not None and mail < len(row) else ""
        try:
            check_member_name(name)
        except ConfigError as exc:
            raise ConfigError(f"{path}, line {line}: {exc}") from None
        out.append((name, email))
    return out
