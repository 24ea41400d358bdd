"""Kaggle submission files: validated rule by rule, then scored like Kaggle scores them.

:func:`check_csv` reads a (possibly hostile) file and returns a :class:`CsvReport` whose every
problem names its rule and line, e.g. ``line 17: ImageId 17 appears twice (first on line 12)``.
A UTF-8 BOM, CRLF line ends and a missing final newline are accepted, as Kaggle accepts them;
quoted fields, padded fields, ``+1``, ``1.0`` and ``01`` are not, because a grader that guesses
what a participant meant is a grader that can be gamed. :func:`score_csv` computes the accuracy
on the public and private parts of the held-back labels.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .competitions import Competition, get_competition
from .errors import ConfigError

#: Problems of one rule kept in a report (all of them are counted).
KEEP_PER_RULE = 50
#: No submission file is allowed to be larger than this, whatever its competition.
MAX_BYTES = 50 * 1024 * 1024

RULE_TITLES = {
    "file": "file",
    "header": "header",
    "columns": "column",
    "blank": "blank line",
    "format": "format",
    "id": "ImageId",
    "duplicate": "duplicate",
    "label": "label",
    "rows": "row count",
    "missing": "missing id",
}


@dataclasses.dataclass(frozen=True)
class CsvProblem:
    """One broken rule, at a line (1-based, the header is line 1) when it has one."""

    rule: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


@dataclasses.dataclass(frozen=True)
class CsvReport:
    """The verdict on one file."""

    path: str
    competition: str
    rows_expected: int
    rows_seen: int
    problems: tuple[CsvProblem, ...]
    counts: dict[str, int]
    #: id -> label of a valid file (empty otherwise); what scoring reads.
    predictions: dict[int, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def valid(self) -> bool:
        return not self.counts

    def summary(self, max_per_rule: int = 5) -> str:
        """Plain text: a verdict line, then the first few problems of each rule and a count."""
        name = Path(self.path).name
        if self.valid:
            return f"{name}: valid for {self.competition} ({self.rows_seen:,} rows)"
        total = sum(self.counts.values())
        lines = [f"{name}: not valid for {self.competition} ({total:,} problem(s))"]
        for rule, count in self.counts.items():
            shown = [p for p in self.problems if p.rule == rule][:max_per_rule]
            lines.extend(f"  {p}" for p in shown)
            if count > len(shown):
                lines.append(f"  ... and {count - len(shown):,} more {RULE_TITLES[rule]} problems")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as ``check-csv --json`` prints it."""
        return {
            "file": self.path,
            "competition": self.competition,
            "valid": self.valid,
            "rows_expected": self.rows_expected,
            "rows_seen": self.rows_seen,
            "counts": dict(self.counts),
            "problems": [
                {"rule": p.rule, "line": p.line, "message": p.message} for p in self.problems
            ],
        }


class _Collector:
    def __init__(self) -> None:
        self.problems: list[CsvProblem] = []
        self.counts: dict[str, int] = {}

    def add(self, rule: str, line: int | None, message: str) -> None:
        count = self.counts.get(rule, 0)
        self.counts[rule] = count + 1
        if count < KEEP_PER_RULE:
            self.problems.append(CsvProblem(rule, line, message))


def _size_cap(comp: Competition, rows: int) -> int:
    widest = max(len(str(comp.id_start + rows)), 1) + max(len(x) for x in comp.labels) + 3
    return min(MAX_BYTES, len(comp.header) + 3 + rows * widest * 4 + 65536)


def _file_problem(path: Path, data: bytes | None, cap: int, comp: Competition) -> str | None:
    if data is None:
        return None
    if not data:
        return "the file is empty; write the header and one row per test image"
    if len(data) > cap:
        return (
            f"the file is over {cap / 1e6:.1f} MB, far more than a {comp.name} submission needs; "
            "is this the right file?"
        )
    head = data[:64]
    if head.startswith(b"\x1f\x8b"):
        return "the file is gzip-compressed; submit the plain .csv file (gunzip it first)"
    if head.startswith(b"PK\x03\x04"):
        return "the file is a zip archive (or an Excel .xlsx); submit a plain .csv file"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\x00" in data[:4096]):
        return (
            "the file is UTF-16 or binary, not UTF-8 text; save it as CSV UTF-8 (pandas: "
            "df.to_csv(path, index=False))"
        )
    return None


def _read(path: Path, cap: int) -> tuple[bytes | None, str | None]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return None, f"{path} is a folder, not a CSV file"
    if not stat.S_ISREG(info.st_mode):
        return None, f"{path} is not a regular file"
    try:
        with open(path, "rb") as fh:
            return fh.read(cap + 1), None
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror})"


def _plain_int(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def _field_problem(kind: str, raw: str, allowed: str) -> str:
    """Why ``raw`` is not a plain value, naming the fix."""
    stripped = raw.strip()
    if stripped != raw:
        return f"{kind} {raw!r} has spaces around it; write {stripped}"
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return f"{kind} {raw} is quoted; write {raw[1:-1]}"
    if raw == "":
        return f"{kind} is empty"
    try:
        number = float(raw)
    except ValueError:
        return f"{kind} {raw!r} is not {allowed}"
    if number.is_integer() and abs(number) < 1e15:
        return f"{kind} {raw} is not written as a plain whole number; write {int(number)}"
    return f"{kind} {raw} is not {allowed}"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) pairs: CRLF or LF ends, a missing final newline accepted."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return enumerate(text.split("\n"), start=1)


def check_csv(
    path: str | os.PathLike[str],
    *,
    competition: str | Competition = "digit-recognizer",
    rows: int | None = None,
) -> CsvReport:
    """Validate a submission file for ``competition`` (``rows`` overrides its row count)."""
    comp = get_competition(competition) if isinstance(competition, str) else competition
    expected = rows if rows is not None else comp.rows
    if expected is None:
        raise ConfigError(
            f"the row count of {comp.name} depends on the prepared data; pass rows (--rows N) "
            f"or run 'autograder data prepare {comp.dataset}' first"
        )
    path = Path(path)
    out = _Collector()
    cap = _size_cap(comp, expected)
    data, unreadable = _read(path, cap)
    problem = unreadable or _file_problem(path, data, cap, comp)
    if problem is None:
        assert data is not None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = (
                f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8 (pandas: "
                "df.to_csv(path, index=False))"
            )
    if problem is not None:
        out.add("file", None, problem)
        return CsvReport(str(path), comp.name, expected, 0, tuple(out.problems), out.counts)

    fast = _fast_valid(text, comp, expected)
    if fast is not None:
        return CsvReport(str(path), comp.name, expected, expected, (), {}, fast)
    lines = _lines(text)
    _, header = next(lines)
    _check_header(header, comp, out)
    allowed_labels = set(comp.labels)
    label_text = (
        f"one of {comp.labels[0]}..{comp.labels[-1]}"
        if comp.labels == tuple(str(i) for i in range(len(comp.labels)))
        else f"one of {', '.join(comp.labels)}"
    )
    last_id = comp.id_start + expected - 1
    id_text = f"a whole number from {comp.id_start} to {last_id}"
    # Most lines of most files are fine: one regex decides those; the rest are diagnosed.
    plain_line = re.compile(
        r"(0|[1-9][0-9]{0,17}),(" + "|".join(re.escape(x) for x in comp.labels) + ")"
    ).fullmatch
    first_seen: dict[int, int] = {}
    predictions: dict[int, str] = {}
    rows_seen = 0
    for number, line in lines:
        match = plain_line(line)
        if match is not None:
            rows_seen += 1
            image_id = int(match.group(1))
            if comp.id_start <= image_id <= last_id and image_id not in first_seen:
                first_seen[image_id] = number
                predictions[image_id] = match.group(2)
                continue
        elif not line.strip():
            out.add("blank", number, "blank line; remove it")
            continue
        else:
            rows_seen += 1
            fields = line.split(",")
            if len(fields) != 2:
                out.add(
                    "columns", number, f"expected 2 columns ({comp.header}), found {len(fields)}"
                )
                continue
            raw_id, raw_label = fields
            if raw_label not in allowed_labels:
                _label_problem(comp, raw_label, allowed_labels, label_text, number, out)
            if not _plain_int(raw_id):
                out.add("format", number, _field_problem(comp.id_column, raw_id, id_text))
                continue
            image_id = int(raw_id)
        if not comp.id_start <= image_id <= last_id:
            out.add(
                "id",
                number,
                f"{comp.id_column} {image_id} is out of range ({comp.id_start}..{last_id})",
            )
        elif image_id in first_seen:
            out.add(
                "duplicate",
                number,
                f"{comp.id_column} {image_id} appears twice (first on line {first_seen[image_id]})",
            )
        else:
            first_seen[image_id] = number
            predictions[image_id] = fields[1] if match is None else match.group(2)
    if rows_seen != expected:
        out.add(
            "rows",
            None,
            f"the file has {rows_seen:,} rows; {comp.name} needs exactly {expected:,} (one per "
            "test image)",
        )
    if len(first_seen) < expected and "header" not in out.counts:
        for image_id in range(comp.id_start, last_id + 1):
            if image_id not in first_seen:
                out.add("missing", None, f"{comp.id_column} {image_id} is missing")
    valid = not out.counts
    return CsvReport(
        str(path),
        comp.name,
        expected,
        rows_seen,
        tuple(out.problems),
        out.counts,
        predictions if valid else {},
    )


def _fast_valid(text: str, comp: Competition, expected: int) -> dict[int, str] | None:
    """The predictions of a file that is valid, found with whole-file regexes (the common
    case, a few milliseconds); None when anything is off, so the line-by-line check runs."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    header, _, body = text.partition("\n")
    if header != comp.header or not body:
        return None
    if not body.endswith("\n"):
        body += "\n"
    labels = "|".join(re.escape(x) for x in comp.labels)
    if re.fullmatch(rf"(?:(?:0|[1-9][0-9]{{0,17}}),(?:{labels})\n)+", body) is None:
        return None
    pairs = re.findall(r"([0-9]+),([^\n]*)\n", body)
    if len(pairs) != expected:
        return None
    predictions = {int(i): label for i, label in pairs}
    last = comp.id_start + expected - 1
    if len(predictions) != expected:
        return None
    if min(predictions) != comp.id_start or max(predictions) != last:
        return None
    return predictions


def _label_problem(
    comp: Competition,
    raw: str,
    allowed: set[str],
    label_text: str,
    number: int,
    out: _Collector,
) -> None:
    """A label that is not allowed: a formatting slip of an allowed one, or simply wrong."""
    slip = raw.strip() in allowed or raw.strip("\"'") in allowed
    if not slip:
        try:
            as_number = float(raw)
            slip = as_number.is_integer() and str(int(as_number)) in allowed
        except ValueError:
            slip = False
    if slip:
        out.add("format", number, _field_problem(comp.label_column, raw, label_text))
    else:
        out.add("label", number, f"{comp.label_column} {raw!r} is not {label_text}")


def _check_header(header: str, comp: Competition, out: _Collector) -> None:
    if header == comp.header:
        return
    want = comp.header
    if (header.startswith(",") and header[1:] == want) or header.startswith("Unnamed: 0,"):
        hint = "the file has an extra first column (pandas: call to_csv with index=False)"
    elif header.replace(";", ",") == want or header.replace("\t", ",") == want:
        hint = "the columns are separated by ';' or tabs; separate them with commas"
    elif header.replace('"', "").replace("'", "") == want:
        hint = "the column names are quoted; write them without quotes"
    elif header.replace(" ", "") == want:
        hint = "the header has spaces; write it without spaces"
    elif header.lower() == want.lower():
        hint = "the column names must match exactly, capitals included"
    else:
        hint = "the first line must name the two columns"
    out.add("header", 1, f"the header is {header[:80]!r}, expected {want!r}: {hint}")


# --- scoring ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CsvScore:
    """Accuracy on the held-back labels: the public part (the leaderboard during the workshop),
    the private part (revealed at the end) and all of them."""

    public: float
    private: float
    overall: float
    n_public: int
    n_private: int
    correct: int


def read_labels(path: Path) -> dict[int, tuple[str, str]]:
    """The grader-only ``test-labels.csv``: id -> (label, 'Public' or 'Private')."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:3] != ["ImageId", "Label", "Usage"]:
            raise ConfigError(f"{path} is not a test-labels.csv (header {header!r})")
        return {int(row[0]): (row[1], row[2]) for row in reader if row}


def score_csv(report: CsvReport, labels_path: Path) -> CsvScore:
    """Score a valid report's predictions; ValueError for an invalid one (it has none)."""
    if not report.valid:
        raise ValueError("an invalid submission file has no score; fix it first")
    labels = read_labels(labels_path)
    if set(labels) != set(report.predictions):
        raise ConfigError(
            f"{labels_path} does not match {report.competition}: "
            f"{len(labels)} labels for {len(report.predictions)} predictions"
        )
    hits = {"Public": 0, "Private": 0}
    sizes = {"Public": 0, "Private": 0}
    for image_id, (label, usage) in labels.items():
        part = "Public" if usage == "Public" else "Private"
        sizes[part] += 1
        hits[part] += report.predictions[image_id] == label
    total = sizes["Public"] + sizes["Private"]
    correct = hits["Public"] + hits["Private"]
    return CsvScore(
        public=hits["Public"] / sizes["Public"] if sizes["Public"] else 0.0,
        private=hits["Private"] / sizes["Private"] if sizes["Private"] else 0.0,
        overall=correct / total if total else 0.0,
        n_public=sizes["Public"],
        n_private=sizes["Private"],
        correct=correct,
    )


def rows_for(competition: Competition, data_dir: Path) -> int | None:
    """The row count of a local competition, from its prepared data set's dataset.json."""
    import json

    if competition.rows is not None:
        return competition.rows
    if competition.dataset is None:
        return None
    manifest = data_dir / competition.dataset / "dataset.json"
    if not manifest.is_file():
        return None
    return int(json.loads(manifest.read_text())["counts"]["test"])
