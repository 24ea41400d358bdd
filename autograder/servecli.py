"""The service's commands: ``autograder serve`` and ``autograder roster ...``.

Registered on the ``autograder`` group by :mod:`autograder.cli`; what they run is imported
when they run, so ``autograder --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .clioptions import grade_settings, gradebook_option, with_run_options


def _course(ctx: click.Context) -> Any:
    return ctx.find_root().obj


@click.group("roster")
def roster_cmd() -> None:
    """Participants and instructors of the workshop service, each with a personal token."""


def _roster(ctx: click.Context) -> Any:
    from .roster import Roster

    return Roster(_course(ctx))


def _link(base: str, roster: Any, member: Any) -> str:
    return f"{base.rstrip('/')}/me?token={roster.token_for(member)}"


_URL_HELP = (
    "Address participants reach the service at, for the links (default: http://127.0.0.1:8000)."
)


@roster_cmd.command("add")
@click.argument("names", nargs=-1, required=True)
@click.option("--instructor", is_flag=True, help="Their token sees every submission and the class.")
@click.option("--email", default="", help="E-mail address (with a single NAME).")
@click.option("--json", "as_json", is_flag=True, help='Print [{"name", "token", "link"}].')
@click.option("--url", default="http://127.0.0.1:8000", help=_URL_HELP)
@click.pass_context
def roster_add(
    ctx: click.Context,
    names: tuple[str, ...],
    instructor: bool,
    email: str,
    as_json: bool,
    url: str,
) -> None:
    """Add NAME... to the roster and print each personal token (the only time it is shown)."""
    roster = _roster(ctx)
    if email and len(names) != 1:
        raise click.UsageError("--email goes with one NAME; use 'roster import FILE' for many")
    added = [roster.add(name, instructor=instructor, email=email) for name in names]
    _print_added(roster, added, url, as_json)


def _print_added(roster: Any, added: list[Any], url: str, as_json: bool) -> None:
    if as_json:
        rows = [{"name": m.name, "token": t, "link": _link(url, roster, m)} for m, t in added]
        click.echo(json.dumps(rows, indent=2))
        return
    for member, token in added:
        click.echo(f"{member.name} ({member.role}): token {token}")
        click.echo(f"  personal link: {_link(url, roster, member)}")


@roster_cmd.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help='Print [{"name", "token", "link"}].')
@click.option("--url", default="http://127.0.0.1:8000", help=_URL_HELP)
@click.pass_context
def roster_import(ctx: click.Context, file: Path, as_json: bool, url: str) -> None:
    """Add everyone in FILE (CSV: a name and an optional e-mail per line)."""
    from .roster import read_roster_file

    roster = _roster(ctx)
    _print_added(roster, roster.add_many(read_roster_file(file)), url, as_json)


@roster_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the roster as JSON.")
@click.option("--url", default="http://127.0.0.1:8000", help=_URL_HELP)
@click.pass_context
def roster_list(ctx: click.Context, as_json: bool, url: str) -> None:
    """Everyone on the roster with their personal link (revoked entries have none)."""
    roster = _roster(ctx)
    rows = [
        {
            "name": m.name,
            "role": m.role,
            "email": m.email,
            "created_at": m.created_at,
            "revoked_at": m.revoked_at,
            "link": None if m.revoked_at else _link(url, roster, m),
        }
        for m in roster.members()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("the roster is empty; add people with 'autograder roster add NAME...'")
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else row["link"]
        click.echo(f"{row['name']:<24} {row['role']:<12} {state}")


@roster_cmd.command("revoke")
@click.argument("name")
@click.pass_context
def roster_revoke(ctx: click.Context, name: str) -> None:
    """Revoke NAME's token now ('roster add NAME' gives them a new one)."""
    member = _roster(ctx).revoke(name)
    click.echo(f"revoked {member.name}'s token; their link no longer works")


@roster_cmd.command("extend")
@click.argument("name")
@click.argument("assignment")
@click.option(
    "--until", "until", required=True, help="New deadline, e.g. 2026-12-02T18:00:00+00:00."
)
@click.pass_context
def roster_extend(ctx: click.Context, name: str, assignment: str, until: str) -> None:
    """Give NAME until UNTIL for ASSIGNMENT (both deadlines move for them)."""
    from .config import load_assignment, parse_time
    from .jobqueue import extensions_table

    roster = _roster(ctx)
    if roster.get(name) is None:
        raise click.UsageError(f"{name!r} is not on the roster; see 'autograder roster list'")
    load_assignment(_course(ctx), assignment)
    when = parse_time(until, "--until").isoformat()
    table = extensions_table()
    with roster.engine.begin() as conn:
        conn.execute(
            table.delete().where(table.c.student == name, table.c.assignment == assignment)
        )
        conn.execute(table.insert().values(student=name, assignment=assignment, until=when))
    click.echo(f"{name} may submit {assignment} until {when}")


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: the workshop network).",
)
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--certfile",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="TLS certificate (PEM); with --keyfile, serve HTTPS.",
)
@click.option(
    "--keyfile",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="TLS private key (PEM).",
)
@click.option(
    "--public-url", default="", help="Address participants use, behind a proxy (https://...)."
)
@click.option(
    "--join-code", default="", help="Walk-ins with this code pick a name and get a token."
)
@click.option(
    "--max-upload", default="", help="Upload limit where assignment.toml sets none, e.g. 50M."
)
@click.option(
    "--workers", type=int, default=None, help="Submissions graded at once (default: as grade)."
)
@click.option(
    "--gpus", default="none", show_default=True, help="GPUs: a list like 0,1, 'all' or 'none'."
)
@click.option("--per-gpu", type=int, default=None, help="Kernels sharing each GPU (default: 1).")
@click.option("--backend", default="local", show_default=True, help="local, inline or dask.")
@click.option("--scheduler", help="Dask scheduler address (with --backend dask).")
@with_run_options
@gradebook_option
@click.pass_context
def serve_cmd(ctx: click.Context, **options: Any) -> None:
    """The workshop service: participants hand in over HTTP and get their feedback."""
    from .serving import serve

    course = _course(ctx)
    settings = grade_settings(
        unsafe=options["unsafe"],
        timeout_cell=options["timeout_cell"],
        timeout_total=options["timeout_total"],
        memory_limit=options["memory_limit"],
        params=options["params"],
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    serve(course, settings=settings, **{k: options[k] for k in SERVE_KEYS})


SERVE_KEYS = (
    "host",
    "port",
    "certfile",
    "keyfile",
    "public_url",
    "join_code",
    "max_upload",
    "workers",
    "gpus",
    "per_gpu",
    "backend",
    "scheduler",
)
