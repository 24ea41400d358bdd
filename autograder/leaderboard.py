"""``autograder leaderboard``: the class ranking on the Kaggle CSV, and a class summary.

During the workshop the ranking uses the public part of the held-back test labels, as Kaggle's
public leaderboard does; the private scores (and the overall score, from which the private one
could be worked out) are left out of the page entirely. ``--final`` ranks on the private
scores and shows both. Ties go to the earlier submission. Students without a valid, scored
CSV are listed below the ranking with the reason only on the instructor's copy
(``reasons=True``, ``leaderboard --reasons``): the page the class sees names nobody who
failed, nor why. The summary is a histogram of total scores
and the pass rate of every item. One self-contained file, like the feedback pages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .config import Course, load_assignment
from .errors import ConfigError
from .feedback import graded_results
from .pages import histogram, render, write_page
from .results import HAND_GRADED_KINDS, SubmissionResult


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ranked student."""

    rank: int
    student: str
    public: float
    #: None unless the ranking is final.
    private: float | None
    submitted_at: str | None
    score: float
    max_score: float


@dataclasses.dataclass(frozen=True)
class Unranked:
    """A student without a scored CSV, and why."""

    student: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ItemSummary:
    """How the class did on one item."""

    id: str
    kind: str
    passed: int
    total: int

    @property
    def rate(self) -> float | None:
        return (
            self.passed / self.total if self.total and self.kind not in HAND_GRADED_KINDS else None
        )


def rank(
    results: Sequence[SubmissionResult], check_id: str, *, final: bool = False
) -> tuple[list[Entry], list[Unranked]]:
    """Rank ``results`` on the CSV item ``check_id``: the public score (``final``: the private
    score), higher first; ties go to the earlier submission, then by name."""
    scored: list[tuple[float, str, SubmissionResult, float, float]] = []
    unranked: list[Unranked] = []
    for result in results:
        try:
            item = result.item(check_id)
        except KeyError:
            unranked.append(Unranked(result.student, f"no {check_id} result was recorded"))
            continue
        if "public" not in item.details or "private" not in item.details:
            unranked.append(Unranked(result.student, item.message or result.message))
            continue
        public, private = float(item.details["public"]), float(item.details["private"])
        # No timestamp sorts after every real one: a known earlier submission wins the tie.
        when = result.submitted_at or "~"
        scored.append((private if final else public, when, result, public, private))
    scored.sort(key=lambda s: (-s[0], s[1], s[2].student))
    entries: list[Entry] = []
    for i, (key, when, result, public, private) in enumerate(scored):
        previous = entries[-1] if entries else None
        same = previous is not None and scored[i - 1][0] == key and scored[i - 1][1] == when
        entries.append(
            Entry(
                rank=previous.rank if same and previous else i + 1,
                student=result.student,
                public=public,
                private=private if final else None,
                submitted_at=result.submitted_at,
                score=result.score,
                max_score=result.max_score,
            )
        )
    return entries, sorted(unranked, key=lambda u: u.student)


def summarize(results: Sequence[SubmissionResult]) -> list[ItemSummary]:
    """Pass counts of every item, in the order items first appear."""
    order: list[str] = []
    kinds: dict[str, str] = {}
    passed: dict[str, int] = {}
    total: dict[str, int] = {}
    for result in results:
        for item in result.items:
            if item.id not in kinds:
                order.append(item.id)
                kinds[item.id] = item.kind
            total[item.id] = total.get(item.id, 0) + 1
            passed[item.id] = passed.get(item.id, 0) + int(item.passed)
    return [ItemSummary(i, kinds[i], passed[i], total[i]) for i in order]


def write_leaderboard(
    course: Course,
    assignment: str,
    *,
    final: bool = False,
    output: Path | None = None,
    reasons: bool = False,
) -> Path:
    """Write the leaderboard of ``assignment`` (default ``<course>/leaderboard.html``) and
    return its path. Without ``final`` no private score appears anywhere in the file; without
    ``reasons`` (the instructor's copy) no participant who is not ranked, nor why."""
    config = load_assignment(course, assignment)
    csv_checks = [c for c in config.checks if c.kind == "csv"]
    if not csv_checks:
        raise ConfigError(
            f"{assignment} has no csv check in its assignment.toml, and the leaderboard ranks "
            "Kaggle CSV scores; add a [[checks]] table with kind = 'csv', or use "
            f"'autograder results {assignment}'"
        )
    check = csv_checks[0]
    results = graded_results(course, assignment)
    entries, unranked = rank(results, check.id, final=final)
    max_score = max((r.max_score for r in results), default=0.0)
    html = render(
        "leaderboard.html.j2",
        title=config.title or config.name,
        assignment=config.name,
        check_id=check.id,
        final=final,
        entries=entries,
        unranked=unranked if reasons else [],
        n=len(results),
        mean=sum(r.score for r in results) / len(results),
        max_score=max_score,
        chart=histogram(
            [r.score for r in results], maximum=max_score, title="total scores of the class"
        ),
        items=summarize(results),
    )
    return write_page(output or course.root / "leaderboard.html", html)
