"""What the CLI shows on the terminal: the grading progress bar and the results table.

Part of the command line, not of the library: :mod:`autograder.cli` and the demo use it;
rich is imported when something is shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .results import SubmissionResult


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences, carriage returns,
    bells) from a submission are shown as ``\\xNN`` instead of acting on the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in text)


class ConsoleProgress:
    """A progress bar (done, failed, running, time left) and one line per finished submission."""

    def __init__(self, title: str = "") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        #: Printed, with the number of workers, once the run is planned (after the checks
        #: that may refuse it).
        self.title = title
        self.done = self.failed = self.running = 0
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn(
                "{task.completed}/{task.total} done, {task.fields[failed]} failed, "
                "{task.fields[running]} running"
            ),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("grading", total=0, failed=0, running=0)

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar.live.is_started:
            self.bar.stop()

    def planned(self, total: int, skipped: int, workers: int) -> None:
        # The bar starts here, once the run passed its checks: a refusal prints only itself.
        if self.title:
            click.echo(f"{self.title} with {workers} worker(s)")
        self.bar.start()
        self.bar.update(self.task, total=total)

    def started(self, student: str) -> None:
        self.running += 1
        self.bar.update(self.task, running=self.running)

    def finished(self, result: SubmissionResult) -> None:
        self.done += 1
        self.running = max(0, self.running - 1)
        self.failed += result.status != "graded"
        self.bar.update(self.task, completed=self.done, failed=self.failed, running=self.running)
        click.echo(
            f"  {result.student:<24} {result.status:<16} {result.score:>6g} / "
            f"{result.max_score:<6g} {result.duration_s:6.1f} s  {result.device:<7} "
            f"{printable(result.message)}"
        )


def results_table(results: Sequence[SubmissionResult]) -> None:
    """Print a table of results (one row per submission, failed items named) to the terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{results[0].assignment}: {len(results)} submission(s)" if results else "")
    for column, justify in (
        ("student", "left"),
        ("status", "left"),
        ("score", "right"),
        ("lost points on", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        failed = [i for i in result.items if i.score < i.max_score]
        # Items that failed for the submission's own reason are named, not repeated.
        same = [i.id for i in failed if result.message and i.message == result.message]
        lost = [f"{i.id}: {i.message}" for i in failed if i.id not in same]
        if same:
            lost.insert(0, f"{', '.join(same)}: see the status")
        status = result.status if not result.message else f"{result.status}\n{result.message}"
        # Text, not strings: rich would read "[/]" in a message as its own markup.
        table.add_row(
            Text(printable(result.student)),
            Text(printable(status)),
            f"{result.score:g} / {result.max_score:g}",
            Text(printable("\n".join(lost) or "-")),
        )
    Console(width=160).print(table)
