"""The ``autograder`` command line: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .clioptions import Registered, grade_settings, gradebook_option, with_run_options
from .config import Course
from .errors import AutograderError
from .fastimport import skip_slow_optional_imports
from .servecli import roster_cmd, serve_cmd
from .submitcli import submit_cmd

skip_slow_optional_imports()


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
@click.option(
    "--gradebook",
    "gradebook_url",
    default=None,
    envvar="AUTOGRADER_GRADEBOOK",
    help="Gradebook database URL. Default: sqlite:///<course>/gradebook.db.",
)
@click.pass_context
def cli(ctx: click.Context, course_dir: Path | None, gradebook_url: str | None) -> None:
    """Release, run and grade the Keras workshop notebooks.

    Run it in the course folder (source/, release/, submitted/<student>/<assignment>/), or
    name that folder with --course-dir.
    """
    ctx.obj = Course.at(course_dir, gradebook=gradebook_url)


def _assignments(course: Course, names: tuple[str, ...]) -> list[str]:
    chosen = list(names) or course.assignments()
    if not chosen:
        raise AutograderError(
            f"no assignments in {course.root / 'source'}; create source/<assignment>/ first"
        )
    return chosen


@cli.command("release")
@click.argument("assignments", nargs=-1)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if release/ is stale.")
@click.pass_obj
def release_cmd(course: Course, assignments: tuple[str, ...], check: bool) -> None:
    """Turn source/ASSIGNMENT into the student version in release/ (default: all)."""
    from .release import release

    stale = []
    for name in _assignments(course, assignments):
        report = release(course, name, check=check)
        if check:
            stale.extend(report.problems())
        else:
            changed = len(report.written) + len(report.extra)
            click.echo(f"{name}: {changed} file(s) updated in {course.release(name)}")
    if check:
        if stale:
            for line in stale:
                click.echo(line)
            click.echo("run 'autograder release' to bring release/ up to date", err=True)
            sys.exit(1)
        click.echo("release/ is up to date with source/")


_allow_stale = click.option(
    "--allow-stale",
    is_flag=True,
    help="Run even when release/ is out of date with source/ (default: refuse).",
)


@cli.command("validate")
@click.argument("assignment")
@with_run_options
@_allow_stale
@click.pass_obj
def validate_cmd(
    course: Course,
    assignment: str,
    timeout_cell: float | None,
    timeout_total: float | None,
    memory_limit: str | None,
    params: tuple[str, ...],
    unsafe: bool,
    allow_stale: bool,
) -> None:
    """Grade the instructor solution of ASSIGNMENT; every test and check must pass."""
    from .validate import validate

    settings = grade_settings(
        unsafe=unsafe,
        timeout_cell=timeout_cell,
        timeout_total=timeout_total,
        memory_limit=memory_limit,
        params=params,
    )
    report = validate(course, assignment, settings=settings, allow_stale=allow_stale)
    result = report.result
    click.echo(
        f"{assignment}: {result.score:g} / {result.max_score:g} points, status {result.status}, "
        f"{result.duration_s:.0f} s"
    )
    for line in report.figures:
        click.echo(f"  {line}")
    if not report.ok:
        if report.result.status != "graded":
            click.echo(f"  FAIL {report.problems[0]}")
        sys.exit(1)
    click.echo("  every test and check passes")


@cli.command("grade")
@click.argument("assignment")
@click.option(
    "--submissions",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of <student>/<assignment>/ submissions (default: <course>/submitted).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Kernels at once (default: one per GPU, else one per two cores).",
)
@click.option(
    "--gpus",
    default="none",
    show_default=True,
    help="GPUs to use: a list like 0,1, 'all' or 'none'.",
)
@click.option("--per-gpu", type=int, default=None, help="Kernels sharing each GPU (default: 1).")
@click.option(
    "--backend",
    type=Registered("autograder.schedule", "BACKENDS", "get_backend"),
    default="local",
    show_default=True,
    help="local (process pool), inline or dask.",
)
@click.option("--scheduler", help="Dask scheduler address (with --backend dask).")
@click.option(
    "--force", is_flag=True, help="Grade again even unchanged, already graded submissions."
)
@click.option("--student", "students", multiple=True, help="Grade only this student (repeatable).")
@click.option(
    "--prestart/--no-prestart",
    default=None,
    help="Start each submission's held-out evaluator, and each worker's next kernel (local "
    "backend), while the current notebook runs (default: on when there are more CPU cores "
    "than workers, or GPUs).",
)
@with_run_options
@_allow_stale
@gradebook_option
@click.pass_obj
def grade_cmd(
    course: Course,
    assignment: str,
    submissions: Path | None,
    workers: int | None,
    gpus: str,
    per_gpu: int | None,
    backend: str,
    scheduler: str | None,
    force: bool,
    students: tuple[str, ...],
    prestart: bool | None,
    timeout_cell: float | None,
    timeout_total: float | None,
    memory_limit: str | None,
    params: tuple[str, ...],
    unsafe: bool,
    allow_stale: bool,
) -> None:
    """Grade every new or changed submission of ASSIGNMENT and record it in the gradebook."""
    from .console import ConsoleProgress
    from .grade import grade
    from .schedule import parse_gpus

    settings = grade_settings(
        unsafe=unsafe,
        timeout_cell=timeout_cell,
        timeout_total=timeout_total,
        memory_limit=memory_limit,
        params=params,
    )
    gpu_list = parse_gpus(gpus)
    watcher = ConsoleProgress(title=f"grading {assignment}")
    try:
        with watcher:
            report = grade(
                course,
                assignment,
                submissions=submissions,
                settings=settings,
                force=force,
                workers=workers,
                backend=backend,
                scheduler=scheduler,
                gpus=gpu_list,
                per_gpu=per_gpu,
                students=students or None,
                progress=watcher,
                prestart=prestart,
                allow_stale=allow_stale,
            )
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: {watcher.done} submission(s) were graded and recorded; run the same "
            "command again to grade the rest",
            err=True,
        )
        sys.exit(130)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    again = " (--force grades them again)" if report.skipped else ""
    click.echo(
        f"{len(report.graded)} graded, {len(report.skipped)} unchanged{again}; see "
        f"'autograder results {assignment}'"
    )


@cli.command("results")
@click.argument("assignment")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list, one object per submission."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a CSV with nbgrader's export columns (then status and per-item scores).",
)
@gradebook_option
@click.pass_obj
def results_cmd(course: Course, assignment: str, as_json: bool, csv_path: Path | None) -> None:
    """Show the recorded results of ASSIGNMENT."""
    import json

    from .console import results_table
    from .gradebook import load_results, write_csv

    results = load_results(course.gradebook_url, assignment)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    if csv_path is not None:
        write_csv(results, csv_path, course=course)
        click.echo(f"wrote {len(results)} row(s) to {csv_path}", err=as_json)
    if not as_json and csv_path is None:
        if not results:
            click.echo(f"no results for {assignment} yet; run 'autograder grade {assignment}'")
            return
        results_table(results)


@cli.command("feedback")
@click.argument("assignment")
@click.option("--student", "students", multiple=True, help="Only this student (repeatable).")
@click.option("--final", is_flag=True, help="Show the CSV's private score too (after the end).")
@gradebook_option
@click.pass_obj
def feedback_cmd(course: Course, assignment: str, students: tuple[str, ...], final: bool) -> None:
    """Write feedback/<student>/ASSIGNMENT/index.html, one self-contained page per student."""
    from .console import printable
    from .feedback import write_feedback

    paths = write_feedback(course, assignment, students=students or None, final=final)
    click.echo(f"wrote {len(paths)} feedback page(s) under {course.root / 'feedback'}")
    for path in paths:
        click.echo(f"  {printable(str(path))}")


@cli.command("leaderboard")
@click.argument("assignment")
@click.option("--final", is_flag=True, help="Rank on the private scores and show them.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the page (default: <course>/leaderboard.html).",
)
@click.option(
    "--reasons",
    is_flag=True,
    help="The instructor's copy: also list who is not ranked and why (do not publish it).",
)
@gradebook_option
@click.pass_obj
def leaderboard_cmd(
    course: Course, assignment: str, final: bool, output: Path | None, reasons: bool
) -> None:
    """Write the class leaderboard of ASSIGNMENT (public scores; --final: private)."""
    from .leaderboard import write_leaderboard

    path = write_leaderboard(course, assignment, final=final, output=output, reasons=reasons)
    click.echo(f"wrote {'final' if final else 'public'} leaderboard {path}")


@cli.command("check-csv")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--competition",
    type=Registered("autograder.competitions", "COMPETITIONS", "get_competition"),
    default=None,
    help="Format to check: digit-recognizer, digits, fashion-mnist, mnist or cifar-10. "
    "Default: the one the course's CSV checks use, else digit-recognizer.",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows the file must have. Default: the competition's own count, else the test.csv "
    "count in <course>/data/<data set>/dataset.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as a JSON object.")
@click.pass_context
def check_csv_cmd(
    ctx: click.Context, file: Path, competition: str | None, rows: int | None, as_json: bool
) -> None:
    """Check a Kaggle submission FILE: header, row count, ids, labels, encoding.

    Every problem names its rule and line; the first few of each rule are shown.

    \b
    Exit status:
      0  the file is valid
      1  the file is invalid, including a missing, empty or unreadable file
      2  usage error: unknown competition, or a row count that is not known
    """
    import json

    from .competitions import course_competition, get_competition, resolve_rows
    from .csvcheck import check_csv

    dataset = None
    if competition is None:
        competition, dataset = course_competition(ctx.obj)
    chosen = get_competition(competition)
    if rows is None and dataset is not None and (ctx.obj.data(dataset) / "dataset.json").exists():
        rows = resolve_rows(chosen, course=ctx.obj, dataset=dataset)  # as the grader counts
    expected = resolve_rows(chosen, course=ctx.obj, rows=rows)
    report = check_csv(file, competition=chosen, rows=expected)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.summary())
    ctx.exit(0 if report.valid else 1)


@cli.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-course"),
    show_default=True,
    help="Fresh folder for the demo course (replaced if it holds an earlier demo).",
)
@click.option("--workers", type=int, default=None, help="Kernels at once.")
@click.option("--unsafe-no-sandbox", "unsafe", is_flag=True, help="Run without the sandbox.")
def demo_cmd(folder: Path, workers: int | None, unsafe: bool) -> None:
    """The whole loop on the embedded digits: prepare, release, submit, grade, report."""
    from .console import ConsoleProgress
    from .demo import run_demo

    with ConsoleProgress() as watcher:
        run_demo(folder, workers=workers, sandbox=not unsafe, echo=click.echo, progress=watcher)


@cli.command("new")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", default="digits", show_default=True, help="The course's data set.")
def new_cmd(folder: Path, dataset: str) -> None:
    """Make a course in FOLDER, with a first assignment that validates."""
    from .scaffold import new_course

    new_course(folder, dataset=dataset)
    click.echo(f"wrote {folder}; next: cd {folder} && autograder data prepare {dataset} && "
               "autograder validate first")  # fmt: skip


@cli.command("new-assignment")
@click.argument("name")
@click.option("--dataset", default="digits", show_default=True, help="Its data set.")
@click.pass_obj
def new_assignment_cmd(course: Course, name: str, dataset: str) -> None:
    """Add assignment NAME (every cell kind, both checks) to the course, released."""
    from .scaffold import new_assignment

    click.echo(f"wrote {new_assignment(course, name, dataset=dataset)}; next: autograder "
               f"data prepare {dataset} && autograder validate {name}")  # fmt: skip


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


@cli.group("kaggle")
def kaggle_group() -> None:
    """Download a competition's files and submit CSVs with the kaggle client.

    Credentials are the kaggle client's own: KAGGLE_API_TOKEN or ~/.kaggle/access_token (a
    token from https://www.kaggle.com/settings/api), KAGGLE_USERNAME and KAGGLE_KEY or
    kaggle.json (a legacy key), or 'kaggle auth login'.
    """


_competition_option = click.option(
    "-c",
    "--competition",
    required=True,
    help="Competition name, the last part of its address (e.g. digit-recognizer).",
)


@kaggle_group.command("download")
@_competition_option
@click.option(
    "-p",
    "--path",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the files (same-named files are replaced). Default: ./COMPETITION.",
)
def kaggle_download(competition: str, folder: Path | None) -> None:
    """Download and unzip the files of a Kaggle competition."""
    from .kaggle import download_competition

    folder = folder if folder is not None else Path(competition)
    files = download_competition(competition, folder)
    click.echo(f"{competition}: {len(files)} file(s) in {folder}")
    for name in files:
        click.echo(f"  {name}")


@kaggle_group.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_competition_option
@click.option("-m", "--message", required=True, help="Description shown with the submission.")
def kaggle_submit(file: Path, competition: str, message: str) -> None:
    """Check FILE like 'autograder check-csv' and submit it only if it is valid."""
    from .kaggle import submit

    result = submit(file, competition=competition, message=message)
    click.echo(result.check_summary)
    click.echo(f"submitted {file} to {competition}: {result.kaggle_message}")
    click.echo(f"  scores: {result.url}")


cli.add_command(serve_cmd)
cli.add_command(roster_cmd)
cli.add_command(submit_cmd)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="autograder")
