"""The ``autograder`` command line: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .config import Course
from .errors import AutograderError


class _Group(click.Group):
    """Turns an AutograderError into its message and exit status 2, without a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AutograderError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autograder")
@click.option(
    "--course-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="AUTOGRADER_COURSE",
    help="Course folder (source/, release/, submitted/...). Default: the current folder.",
)
@click.pass_context
def cli(ctx: click.Context, course_dir: Path | None) -> None:
    """Release, run and grade the Keras workshop notebooks."""
    ctx.obj = Course.at(course_dir)


@cli.group()
def data() -> None:
    """Prepare data sets in the Kaggle digit-recognizer layout."""


@data.command("prepare")
@click.argument("name")
@click.pass_obj
def data_prepare(course: Course, name: str) -> None:
    """Prepare data set NAME: digits (offline default), fashion-mnist, mnist,
    kaggle:digit-recognizer."""
    from .datasets import prepare

    prepared = prepare(name, course=course)
    counts = ", ".join(f"{k} {v:,}" for k, v in prepared.counts.items())
    click.echo(f"{name}: {counts} images ({prepared.source})")
    click.echo(f"  released inputs: {prepared.released}")
    click.echo(f"  grader only:     {prepared.heldout}")


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="autograder")
