"""A throwaway PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` into a temp folder.

The server listens on a unix socket inside its own folder only (no TCP port, so two test
sessions never collide), trusts local connections, and runs without fsync: its data lives
as long as the test session. As root (postgres refuses to run as root) the server runs as an
unprivileged user that owns the folder. Debian's ``postgresql`` package puts the binaries
under ``/usr/lib/postgresql/<version>/bin``, which is not on PATH.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: How to get the binaries when they are missing (the tests that need them skip with it).
INSTALL = "apt-get install postgresql"
#: The superuser initdb creates, and the name of the database :func:`start` creates.
USER = "autograder"
DATABASE = "autograder"
#: Settings appended to postgresql.conf: a socket in the folder, no TCP, speed over safety.
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
}
#: Unprivileged users to run the server as when the tests run as root, first one found.
SERVER_USERS = ("postgres", "nobody")
#: The binaries used.
TOOLS = ("initdb", "pg_ctl", "createdb")


class ServerError(RuntimeError):
    """The server could not be set up or started; the message carries its log."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``createdb``: $PG_BINDIR, else the newest
    ``/usr/lib/postgresql/<version>/bin``, else where PATH's ``pg_ctl`` links to; None when
    PostgreSQL is not installed."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)] or [0],
        reverse=True,
    )
    if os.environ.get("PG_BINDIR"):
        candidates = [Path(os.environ["PG_BINDIR"])]
    elif shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl") or "").resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in TOOLS):
            return folder
    return None


@dataclasses.dataclass
class PostgresServer:
    """A running server: :attr:`url` is the SQLAlchemy URL of its database."""

    bindir: Path
    root: Path
    #: The uid the server runs as (None: this process's own).
    user: pwd.struct_passwd | None
    url: str = ""
    _created: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg 3, over the socket)."""
        return f"postgresql+psycopg://{USER}@/{database}?host={self.root}"

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (``name``, or a fresh one), empty or a copy of ``template`` (a
        database nobody is connected to), and return its URL."""
        if name is None:
            self._created += 1
            name = f"test_{self._created}"
        copy = ("-T", template) if template else ()
        self._run("createdb", "-h", str(self.root), "-U", USER, *copy, name)
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server at once (nothing it holds is kept) and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {
            "PATH": f"{self.bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LC_ALL": "C",
            "HOME": str(self.root),
        }
        try:
            done = subprocess.run(
                [str(self.bindir / tool), *args],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kwargs,  # type: ignore[arg-type]
            )
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{tool} {' '.join(args)} did not finish in {timeout:g} s" + self._log_tail()
            ) from None
        if done.returncode != 0:
            raise ServerError(
                f"{tool} {' '.join(args)} failed (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}" + self._log_tail()
            )

    def _log_tail(self) -> str:
        """The end of the server's log, to show with an error ("" when there is none)."""
        if not self.log.exists():
            return ""
        return f"\n--- the end of {self.log} ---\n{self.log.read_text(errors='replace')[-4000:]}"


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerError(
        f"running as root, and none of the users {SERVER_USERS} exists to run "
        "postgres as (it refuses root); create one: useradd --system postgres"
    )


def start(*, bindir: Path | None = None, timeout: float = 30) -> PostgresServer:
    """Start a server in a new temp folder, create :data:`DATABASE`, and return it.

    Raises :class:`ServerError` with the server's log when it fails or is not ready in
    ``timeout`` seconds; the folder is removed then."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise ServerError(f"PostgreSQL is not installed; install it: {INSTALL}")
    user = _server_user()
    # Not under pytest's tmp_path: /tmp/pytest-of-root is closed to the server's user. The
    # socket lives here too, so the path must stay short (unix sockets: 107 bytes).
    root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp" if user else None))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PostgresServer(bindir, root, user)
    try:
        server._run(
            "initdb", "-D", str(server.data), "-U", USER, "--auth=trust", "--no-sync",
            "--encoding=UTF8", "--locale=C", timeout=120,
        )  # fmt: skip
        settings = {**SETTINGS, "unix_socket_directories": f"'{root}'"}
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        server._run(
            "pg_ctl", "start", "-D", str(server.data), "-l", str(server.log), "-w",
            "-t", str(int(timeout)), timeout=timeout + 10,
        )  # fmt: skip
        server.url = server.create_database(DATABASE)
    except BaseException:
        server.stop()
        raise
    return server
