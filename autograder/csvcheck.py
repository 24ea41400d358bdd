"""Kaggle submission files: checked rule by rule, then scored the way Kaggle scores them.

:func:`check_csv` reads a file that may be anything (hostile, binary, huge, missing) and
returns a :class:`CsvReport` whose every problem names its rule (the line-by-line rules are
:mod:`autograder.csvrules`) and its line, e.g.
``line 17: ImageId 17 appears twice (first on line 12)``. A UTF-8 byte-order mark, CRLF line
ends and a missing final newline are accepted, as Kaggle accepts them. Quoted fields, padded
fields, ``+1``, ``1.0`` and ``01`` are not: a grader that guesses what a participant meant can
be gamed, and the message says what to write instead.

:func:`score_csv` computes accuracy on the public and private parts of the held-back labels
(``test-labels.csv``, grader only). Nothing from a submission is executed or evaluated; it is
only split on commas and compared with known strings.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from .competitions import Competition, get_competition
from .csvrules import CsvProblem, Problems, check_text, show_value
from .errors import AutograderError, ConfigError, DataError
from .sniff import UTF8_BOM, read_capped, sniff

#: No submission may be larger than this, whatever its competition says it can need.
MAX_BYTES = 50 * 1024 * 1024
_LABEL_ROW = re.compile(r"^(0|[1-9][0-9]{0,17}),([^,\n]*),(Public|Private)$", re.MULTILINE)


class InvalidCsvError(AutograderError):
    """A submission file that breaks the competition's rules was asked for its predictions."""


@dataclasses.dataclass(frozen=True)
class CsvReport:
    """The verdict on one file: the first :data:`~autograder.csvrules.KEEP_PER_RULE` problems of
    each rule, and how many problems each rule found in all (``counts``, in the order the rules
    first failed)."""

    path: str
    competition: str
    rows_expected: int
    rows_seen: int
    problems: tuple[CsvProblem, ...]
    counts: dict[str, int]

    @property
    def valid(self) -> bool:
        return not self.counts

    @property
    def name(self) -> str:
        return Path(self.path).name or self.path

    def summary(self, max_per_rule: int = 5) -> str:
        """Plain text: a verdict line, then the first problems of each rule and a count."""
        if self.valid:
            return f"{self.name}: valid for {self.competition} ({self.rows_seen:,} rows)"
        total = sum(self.counts.values())
        lines = [
            f"{self.name}: invalid for {self.competition} "
            f"({total:,} problem{'' if total == 1 else 's'})"
        ]
        for rule, count in self.counts.items():
            shown = [p for p in self.problems if p.rule == rule][: max(max_per_rule, 0)]
            lines.extend(f"  {problem}" for problem in shown)
            if count > len(shown):
                lines.append(f"  ... and {count - len(shown):,} more {rule} problems")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as ``autograder check-csv --json`` prints it."""
        return {
            "path": self.path,
            "competition": self.competition,
            "valid": self.valid,
            "rows_expected": self.rows_expected,
            "rows_seen": self.rows_seen,
            "counts": dict(self.counts),
            "problems": [
                {"rule": p.rule, "line": p.line, "message": p.message} for p in self.problems
            ],
        }


@dataclasses.dataclass(frozen=True)
class CsvScore:
    """Accuracy on the held-back labels, as Kaggle reports it: on the public part (the
    leaderboard during the workshop), the private part (revealed at the end) and all of them.
    A part with no labels scores 0.0."""

    public: float
    private: float
    overall: float
    n_public: int
    n_private: int
    correct: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- size ------------------------------------------------------------------------


def max_bytes(competition: Competition, rows: int) -> int:
    """The size cap for a file of ``rows`` rows: four times the most the format can need (every
    id at its widest, the longest label, CRLF ends), never more than :data:`MAX_BYTES`."""
    widest_id = len(str(competition.id_start + rows - 1))
    widest_label = max((len(label) for label in competition.labels), default=1)
    need = len(UTF8_BOM) + len(competition.header) + 2 + rows * (widest_id + widest_label + 3)
    return min(MAX_BYTES, 4 * need + 65_536)


# --- checking a file -----------------------------------------------------------------


def _competition(competition: str | Competition) -> Competition:
    return get_competition(competition) if isinstance(competition, str) else competition


def _check(
    path: str | os.PathLike[str],
    comp: Competition,
    rows: int | None,
    predictions: dict[int, str] | None,
) -> CsvReport:
    expected = rows if rows is not None else comp.rows
    if expected is None:
        raise ConfigError(
            f"competition {comp.name!r} has no fixed row count; pass rows (--rows N): the "
            f"number of rows of test.csv in data/{comp.dataset}/"
        )
    if expected < 1:
        raise ConfigError(f"the row count must be at least 1, got {expected}")
    path = Path(path)
    out = Problems()
    rows_seen = 0
    data = read_capped(path, limit=max_bytes(comp, expected))
    if isinstance(data, tuple):
        out.add(data[0], None, data[1])
    elif not data.removeprefix(UTF8_BOM).strip():
        out.add(
            "empty",
            None,
            f"the file is empty; write the header {comp.header}, then one row per test image",
        )
    elif (binary := sniff(data)) is not None:
        out.add(binary[0], None, binary[1])
    else:
        try:
            text = data.removeprefix(UTF8_BOM).decode("utf-8")
        except UnicodeDecodeError:
            # Bad bytes become lone surrogates that the line checks report one line at a time.
            text = data.removeprefix(UTF8_BOM).decode("utf-8", "surrogateescape")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\n" not in text and "\r" in text.rstrip("\r"):
                out.add(
                    "line-ends",
                    None,
                    r"lines end with a bare carriage return (\r, old Mac style); end them with "
                    r"\n or \r\n",
                )
        if not out.counts:
            rows_seen = check_text(text, comp, expected, out, predictions)
    return CsvReport(
        path=str(path),
        competition=comp.name,
        rows_expected=expected,
        rows_seen=rows_seen,
        problems=tuple(out.kept),
        counts=out.counts,
    )


def check_csv(
    path: str | os.PathLike[str],
    *,
    competition: str | Competition = "digit-recognizer",
    rows: int | None = None,
) -> CsvReport:
    """Check a submission file against ``competition``'s format; never raises for what the file
    holds (ConfigError only for an unknown competition or an unknown row count).

    ``rows`` (the test.csv row count of the prepared data) overrides the competition's own;
    :func:`autograder.competitions.resolve_rows` finds it.
    """
    return _check(path, _competition(competition), rows, None)


# --- scoring ----------------------------------------------------------------------------------


def read_predictions(
    path: str | os.PathLike[str],
    competition: str | Competition = "digit-recognizer",
    *,
    rows: int | None = None,
) -> dict[int, str]:
    """id -> label of a valid submission file; InvalidCsvError (with the report's summary) for
    an invalid one. The file is checked again, so it cannot change between check and score."""
    predictions: dict[int, str] = {}
    report = _check(path, _competition(competition), rows, predictions)
    if not report.valid:
        raise InvalidCsvError(
            "the submission is not valid, so it has no predictions to score: "
            + report.summary(max_per_rule=2).replace("\n", ";")
        )
    return predictions


def read_labels(path: str | os.PathLike[str]) -> dict[int, tuple[str, str]]:
    """The grader-only ``test-labels.csv`` (``ImageId,Label,Usage``): id -> (label, usage),
    usage ``Public`` or ``Private``. DataError names the line of anything else."""
    path = Path(path)
    redo = "run 'autograder data prepare' again to rewrite it"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"the labels file {path} cannot be read ({exc}); {redo}") from exc
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "ImageId,Label,Usage":
        head = show_value(lines[0]) if lines else "nothing"
        raise DataError(
            f"{path} is not a test-labels.csv: its header is {head}, expected "
            f"'ImageId,Label,Usage'; {redo}"
        )
    if len(lines) == 1:
        raise DataError(f"{path} has a header but no labels; {redo}")
    body = text.partition("\n")[2]
    labels = {int(i): (label, usage) for i, label, usage in _LABEL_ROW.findall(body)}
    if len(labels) == len(lines) - 1:
        return labels
    # Some line is malformed or repeats an id: find the first, line by line, to name it.
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        match = _LABEL_ROW.fullmatch(line)
        if match is None:
            raise DataError(
                f"{path}, line {number}: {show_value(line)} is not 'ImageId,Label,Public|Private'; "
                f"{redo}"
            )
        if match[1] in seen:
            raise DataError(f"{path}, line {number}: ImageId {match[1]} appears twice; {redo}")
        seen.add(match[1])
    raise AssertionError("unreachable: the lines above differ from the labels read")


def score_csv(
    report_or_path: CsvReport | str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    competition: str | Competition | None = None,
) -> CsvScore:
    """Accuracy of a submission on the held-back labels, public and private parts apart.

    Give the :class:`CsvReport` of :func:`check_csv` (its file is read again and must still be
    valid) or a path (checked here, for ``competition``, default ``digit-recognizer``, with as
    many rows as ``labels_path`` has labels). InvalidCsvError for an invalid file; DataError when
    the labels do not cover exactly the submission's ids.
    """
    labels = read_labels(labels_path)
    if isinstance(report_or_path, CsvReport):
        report = report_or_path
        comp = _competition(competition or report.competition)
        if not report.valid:
            raise InvalidCsvError(
                f"{report.name} is not a valid {report.competition} submission, so it has no "
                "score; fix the problems check-csv lists"
            )
        if report.rows_expected != len(labels):
            raise DataError(
                f"{report.name} was checked for {report.rows_expected:,} rows but "
                f"{labels_path} has {len(labels):,} labels; check it with rows={len(labels)}"
            )
        path: str | os.PathLike[str] = report.path
    else:
        comp = _competition(competition or "digit-recognizer")
        path = report_or_path
    predictions = read_predictions(path, comp, rows=len(labels))
    if predictions.keys() != labels.keys():
        raise DataError(
            f"{labels_path} labels ImageIds {min(labels)}..{max(labels)}, but the submission's "
            f"run from {min(predictions)} to {max(predictions)}; they belong to different data"
        )
    correct = n_public = public_correct = 0
    for image_id, (label, usage) in labels.items():
        hit = predictions[image_id] == label
        correct += hit
        if usage == "Public":
            n_public += 1
            public_correct += hit
    n_private = len(labels) - n_public
    return CsvScore(
        public=public_correct / n_public if n_public else 0.0,
        private=(correct - public_correct) / n_private if n_private else 0.0,
        overall=correct / len(labels),
        n_public=n_public,
        n_private=n_private,
        correct=correct,
    )
