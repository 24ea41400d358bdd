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
    bells, NUL) and invisible ones (bidi overrides such as U+202E, zero-width spaces) from a
    submission are shown as ``\\xNN`` instead of acting on the terminal. Printed with
    ``click.echo``, never through rich, so ``[bold]`` or ``[/]`` stays text."""
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
        line = (
            f"  {printable(result.student):<24} {result.status:<16} {result.score:>6g} / "
            f"{result.max_score:<6g} {result.duration_s:6.1f} s  {result.device:<7} "
            f"{printable(result.message).replace(chr(10), ' ')}"
        )
        click.echo(_cut(line.rstrip(), TABLE_WIDTH))


#: The results table's width: it fits a terminal of 100 columns, one line per submission.
TABLE_WIDTH = 100


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def results_table(results: Sequence[SubmissionResult], *, width: int = TABLE_WIDTH) -> None:
    """Print the results, one line per submission and at most ``width`` columns: student,
    status, score, and the items that lost points, with the first reason (the status's own
    when the notebook did not run to the end; the rest are in ``--json`` and on the pages)."""
    if not results:
        return
    name_w = min(20, max(7, *(len(printable(r.student)) for r in results)))
    status_w = max(6, *(len(r.status) for r in results))
    scores = [f"{r.score:g} / {r.max_score:g}" for r in results]
    score_w = max(5, *(len(s) for s in scores))
    click.echo(f"{results[0].assignment}: {len(results)} submission(s)")
    head = f"{'student':<{name_w}}  {'status':<{status_w}}  {'score':>{score_w}}  lost points on"
    click.echo(_cut(head, width))
    for result, score in zip(results, scores, strict=True):
        failed = [i for i in result.items if i.score < i.max_score]
        lost = ", ".join(i.id for i in failed)
        # One reason, never the same sentence once per item: the submission's own, else the
        # first item's.
        if result.message:
            note = result.message  # what stopped the notebook explains every lost point
        else:
            reason = next((i.message for i in failed if i.message), "")
            note = f"{lost} ({reason})" if reason else lost or "-"
        if result.flags:
            # A notebook that changed how IPython runs code: the instructor looks first.
            note = f"FLAGGED: {result.flags[0]}"
        line = (
            f"{_cut(printable(result.student), name_w):<{name_w}}  {result.status:<{status_w}}  "
            f"{score:>{score_w}}  {printable(note).replace(chr(10), ' ')}"
        )
        click.echo(_cut(line, width))
