"""``autograder submit``: hand in from a laptop through the workshop service, wait, print the
verdict.

The command's own part: the files read from paths and checked, the assignment picked from
the notebook's name. The client itself is :mod:`autograder.submit` (standard library only, so
a notebook cell can carry it); it is imported when the command runs, which keeps
``autograder --help`` fast.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .submit import Upload


def read_files(paths: Sequence[str | os.PathLike[str]]) -> list[Upload]:
    """The files as (base name, content), checked as :func:`autograder.submit.check_uploads`
    checks them; SubmitError (exit status 2) naming a file that is missing or unreadable."""
    from .submit import MAX_UPLOAD_BYTES, SubmitError, check_uploads

    uploads = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            raise SubmitError(f"{path} is a folder; name the notebook file inside it", 2)
        try:
            with path.open("rb") as file:  # at most one byte more than the limit
                uploads.append((path.name, file.read(MAX_UPLOAD_BYTES + 1)))
        except FileNotFoundError:
            raise SubmitError(f"{path}: no such file; check its name and your folder", 2) from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SubmitError(f"{path}: cannot read it ({why}); check its permissions", 2) from None
    check_uploads(uploads)
    return uploads


def pick_assignment(assignments: object, notebook: str) -> str:
    """The one assignment whose released ``files`` include ``notebook`` (a base name; if none
    does, Colab's "Copy of " and a download's " (1)" are tried away); SubmitError (exit
    status 2) naming the assignments when none or several do."""
    from .submit import SubmitError, clean

    if not isinstance(assignments, list):
        raise SubmitError("the server's list of assignments is not a list: is it the service?")
    valid = [a for a in assignments if isinstance(a, dict) and isinstance(a.get("name"), str)]
    entries = [(a["name"], [f for f in a.get("files") or () if isinstance(f, str)]) for a in valid]

    def plain(name: str) -> str:
        return re.sub(r"^copy of |\s*\(\d+\)(?=\.ipynb$)", "", name.strip().lower())

    for same in (lambda f: f == notebook, lambda f: plain(f) == plain(notebook)):
        found = [name for name, files in entries if any(same(f) for f in files)]
        if len(found) == 1:
            return found[0]
        if found:
            raise SubmitError(
                f"several assignments release a notebook named {clean(notebook)}: "
                f"{', '.join(clean(n, 80) for n in found)}; choose one with --assignment NAME",
                2,
            )
    names = ", ".join(clean(name, 80) for name, _ in entries) or "none"
    raise SubmitError(
        f"no assignment releases a notebook named {clean(notebook)}; choose one with "
        f"--assignment NAME (the server has: {names})",
        2,
    )


@click.command("submit")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(path_type=Path))
@click.option(
    "--server",
    required=True,
    envvar="AUTOGRADER_SERVER",
    metavar="URL",
    help="The workshop service's address, e.g. https://workshop.example.org "
    "(default: $AUTOGRADER_SERVER).",
)
@click.option(
    "--token",
    metavar="T",
    default=None,
    help="Your personal token. Default: $AUTOGRADER_TOKEN, else the one saved at its first "
    "use (~/.config/autograder/tokens.json), else asked for on a terminal.",
)
@click.option(
    "--assignment",
    metavar="A",
    default=None,
    help="The assignment. Default: the one whose released notebook has NOTEBOOK's name.",
)
@click.option("--no-wait", is_flag=True, help="Print the queue position and status link; exit.")
def submit_cmd(
    notebook: Path,
    files: tuple[Path, ...],
    server: str,
    token: str | None,
    assignment: str | None,
    no_wait: bool,
) -> None:
    """Hand in NOTEBOOK (and FILE..., e.g. its CSV) to the workshop service; wait for the
    verdict and print the score, the items that lost points and the feedback link.

    Exit status: 0 graded (any verdict) or queued with --no-wait, 1 refused by the server or
    not reachable, 2 a usage error (arguments, files, no token), 130 on Ctrl-C while waiting
    (the submission stays queued).
    """
    import getpass

    from .submit import SubmitError, hand_in

    try:
        uploads = read_files([notebook, *files])
    except SubmitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
    name = uploads[0][0]
    sys.exit(
        hand_in(
            uploads,
            server=server,
            token=token,
            assignment=assignment or (lambda listed: pick_assignment(listed, name)),
            wait=not no_wait,
            ask=getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None,
        )
    )
