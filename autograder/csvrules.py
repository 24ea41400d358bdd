"""The rules of a submission file's text, checked line by line, each problem worded.

:data:`RULES` names every rule, those of the file as a whole too (reported by
:mod:`autograder.csvcheck` from :mod:`autograder.sniff`). :func:`check_text` gets the text
csvcheck has read and decoded and records each broken rule of its rows in :class:`Problems`,
with a message that says what to write instead where it is clear what was meant. Fields are only
split on commas and compared with known strings; nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

from .competitions import Competition

#: What each rule means; the rule names are the keys of ``CsvReport.counts``.
RULES: dict[str, str] = {
    "missing": "the file does not exist",
    "not-a-file": "the path is a folder, a link or a device, not a file",
    "unreadable": "the file cannot be opened",
    "too-large": "far more bytes than the format can need",
    "empty": "nothing but blank space",
    "gzip": "gzip-compressed, not plain text",
    "zip": "a zip archive (also .xlsx and .keras files)",
    "utf16": "UTF-16 or UTF-32 text instead of UTF-8",
    "binary": "binary data, not text",
    "line-ends": "carriage returns (\\r) that do not end a line",
    "encoding": "bytes that are not UTF-8",
    "header": "the first line is not exactly the competition's header",
    "blank-line": "an empty line between or after the rows",
    "columns": "not exactly two comma-separated fields",
    "quotes": "a field in quotes",
    "whitespace": "spaces or tabs around a field",
    "id-format": "an id that is not a plain whole number",
    "id-range": "an id outside the competition's range",
    "id-duplicate": "an id on more than one row",
    "id-missing": "an id on no row",
    "label": "a label the competition does not have",
    "rows": "not one row per test image",
}
#: Problems of one rule kept in a report; all of them are counted.
KEEP_PER_RULE = 10
_SURROGATE = re.compile(r"[\udc80-\udcff]")
_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_SEPARATORS = ((";", "';'"), ("\t", "tabs"), ("|", "'|'"))


@dataclasses.dataclass(frozen=True)
class CsvProblem:
    """One broken rule, at a line (1-based; the header is line 1) when it has one."""

    rule: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class Problems:
    """Collects problems: keeps the first few of each rule, counts them all."""

    def __init__(self) -> None:
        self.kept: list[CsvProblem] = []
        self.counts: dict[str, int] = {}

    def add(self, rule: str, line: int | None, message: str | Callable[[], str]) -> None:
        """Count a problem; keep it, with its message, while the rule has few (a message that
        takes work to write may be given as a function, called only then)."""
        count = self.counts.get(rule, 0)
        self.counts[rule] = count + 1
        if count < KEEP_PER_RULE:
            text = message if isinstance(message, str) else message()
            self.kept.append(CsvProblem(rule, line, text))


# --- checking the text ------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _row_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    """A row that needs no closer look: a plain id, a comma, an allowed label."""
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(0|[1-9][0-9]{{0,17}}),({alternatives})")


@functools.lru_cache(maxsize=32)
def _body_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    """Every row after the header needs no closer look (each ends with a newline)."""
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?:(?:0|[1-9][0-9]{{0,17}}),(?:{alternatives})\n)*")


_ROW_ID = re.compile(r"^[0-9]+", re.MULTILINE)
_ROW_LABEL = re.compile(r",(.*)$", re.MULTILINE)


def _valid_body(
    body: str, comp: Competition, rows: int, predictions: dict[int, str] | None
) -> bool:
    """True when the rows after a correct header break no rule, decided for the whole text at
    once (several times faster than line by line); False sends the file to the line checks,
    which find and word the problems."""
    if body and not body.endswith("\n"):
        body += "\n"
    if body.count("\n") != rows or not _body_pattern(comp.labels).fullmatch(body):
        return False
    ids = list(map(int, _ROW_ID.findall(body)))
    first_id = comp.id_start
    if min(ids) != first_id or max(ids) != first_id + rows - 1 or len(set(ids)) != rows:
        return False
    if predictions is not None:
        predictions.update(zip(ids, _ROW_LABEL.findall(body), strict=True))
    return True


def show_value(value: str) -> str:
    """A field as messages quote it: repr (control characters escaped), long ones cut short."""
    if len(value) > 40:
        return f"{value[:40]!r}... ({len(value):,} characters)"
    return repr(value)


def _as_integer(value: str) -> int | None:
    """The whole number ``value`` means in Python's float syntax (``+1``, ``1.0``, ``01``,
    ``1e3``), else None. Only parsed, never evaluated."""
    if len(value) > 40:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not number.is_integer() or abs(number) >= 1e15:  # is_integer() is False for inf, nan
        return None
    return int(number)


@functools.lru_cache(maxsize=32)
def _allowed_text(labels: tuple[str, ...]) -> str:
    numbers = tuple(str(i) for i in range(len(labels)))
    if len(labels) > 2 and labels == numbers:
        return f"{labels[0]}..{labels[-1]}"
    return ", ".join(labels)


def _label_hint(value: str, labels: tuple[str, ...]) -> str:
    """What to write instead of ``value``, when it is clear what was meant."""
    number = _as_integer(value)
    if number is not None and str(number) in labels:
        return f"; write {number}"
    if value.lower() in labels:
        return f"; write {value.lower()}"
    if number is not None and 0 <= number < len(labels) and not labels[0].isdigit():
        return (
            f"; write class names, not numbers ({number} is {labels[number]} in "
            "keras.datasets order)"
        )
    return ""


def _field_problem(
    column: str, value: str, number: int, out: Problems, plain: Callable[[str], bool]
) -> bool:
    """The quotes and whitespace rules, which apply to every field: True if one is broken.
    The message says what to write when the value inside is a ``plain`` one."""
    quoted = '"' in value or "'" in value
    if not quoted and value == value.strip():
        return False

    def message() -> str:
        inner = value.strip().strip("\"'").strip()
        if quoted:
            fix = f"write {inner}" if plain(inner) else "write values without quotes"
            return f"{column} {show_value(value)} is quoted; {fix}"
        fix = f"write {inner}" if plain(inner) else "remove it"
        return f"{column} {show_value(value)} has whitespace around it; {fix}"

    out.add("quotes" if quoted else "whitespace", number, message)
    return True


def _header_problem(header: str, comp: Competition) -> str:
    want = comp.header
    hint = ""
    first, _, rest = header.partition(",")
    if rest == want and first in ("", "Unnamed: 0"):
        hint = "; the first column is a pandas index: write the file with index=False"
    elif any(header.replace(sep, ",") == want for sep, _ in _SEPARATORS):
        name = next(name for sep, name in _SEPARATORS if header.replace(sep, ",") == want)
        hint = f"; separate the columns with commas, not {name}"
    elif header.replace('"', "").replace("'", "") == want:
        hint = "; write the column names without quotes"
    elif "".join(header.split()) == want:
        hint = "; remove the spaces"
    elif header.lower() == want.lower():
        hint = "; column names are case-sensitive"
    return f"header is {show_value(header)}, expected exactly {want!r}{hint}"


def check_text(
    text: str, comp: Competition, rows: int, out: Problems, predictions: dict[int, str] | None
) -> int:
    """Check decoded text line by line; returns the number of data rows seen."""
    header, _, body = text.partition("\n")
    if header == comp.header and _valid_body(body, comp, rows, predictions):
        return rows
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last row; it does not start a blank one
    if len(lines) > 2 * rows + 1000:
        # The wrong file (or a flood of blank lines): one message, not a million.
        out.add(
            "rows",
            None,
            f"the file has {len(lines):,} lines, far more than the {rows:,} rows expected; "
            "is it the right file?",
        )
        return 0

    header = lines[0]
    start = 1
    if header != comp.header:
        id_field, _, label_field = header.partition(",")
        if _PLAIN_INT.fullmatch(id_field) and "," not in label_field:
            # A data row where the header should be: say that, and check the row as a row.
            out.add(
                "header",
                1,
                f"the header line is missing; the first line must be exactly {comp.header!r}",
            )
            start = 0
        else:
            out.add("header", 1, _header_problem(header, comp))

    fast = _row_pattern(comp.labels)
    labels = frozenset(comp.labels)
    first_id, last_id = comp.id_start, comp.id_start + rows - 1
    first_line: dict[int, int] = {}
    times_seen: dict[int, int] = {}
    unread_ids = 0
    rows_seen = 0
    for index in range(start, len(lines)):
        line = lines[index]
        number = index + 1
        match = fast.fullmatch(line)
        if match is not None:
            rows_seen += 1
            image_id = int(match[1])
            label = match[2]
        else:
            if "\r" in line:
                out.add(
                    "line-ends",
                    number,
                    r"a carriage return (\r) inside the line; end lines with \n or \r\n",
                )
                rows_seen += 1
                unread_ids += 1
                continue
            if _SURROGATE.search(line):
                byte = ord(_SURROGATE.findall(line)[0]) - 0xDC00
                out.add(
                    "encoding",
                    number,
                    f"byte 0x{byte:02x} is not UTF-8; save the file as UTF-8",
                )
                rows_seen += 1
                unread_ids += 1
                continue
            if not line.strip():
                out.add("blank-line", number, "blank line; remove it")
                continue
            rows_seen += 1
            fields = line.split(",")
            if len(fields) != 2:
                trailing = "; remove the trailing comma" if fields[-1] == "" else ""
                out.add(
                    "columns",
                    number,
                    f"{len(fields)} fields, expected 2 ({comp.header}){trailing}"
                    if len(fields) > 1
                    else f"1 field, expected 2 ({comp.header})",
                )
                unread_ids += 1
                continue
            raw_id, label = fields
            parsed = _check_id(raw_id, comp, number, out)
            if parsed is None:
                unread_ids += 1
            if label not in labels:
                _check_label(label, comp, number, out)
                label = ""
            if parsed is None:
                continue
            image_id = parsed
        if not first_id <= image_id <= last_id:
            out.add(
                "id-range",
                number,
                f"{comp.id_column} {image_id} is out of range; {comp.id_column}s run from "
                f"{first_id} to {last_id}",
            )
            continue
        seen_on = first_line.setdefault(image_id, number)
        if seen_on != number:
            times = times_seen.get(image_id, 1) + 1
            times_seen[image_id] = times
            count = "twice" if times == 2 else f"{times} times"
            out.add(
                "id-duplicate",
                number,
                f"{comp.id_column} {image_id} appears {count} (first on line {seen_on})",
            )
        elif predictions is not None:
            predictions[image_id] = label

    if rows_seen != rows:
        out.add(
            "rows",
            None,
            f"the file has {rows_seen:,} row{'' if rows_seen == 1 else 's'}, expected {rows:,} "
            "(one per test image)",
        )
    # An id on a line that could not be read is not "missing": that line already has a problem.
    if unread_ids == 0 and len(first_line) < rows:
        missing = (i for i in range(first_id, last_id + 1) if i not in first_line)
        for kept, image_id in enumerate(missing):
            if kept < KEEP_PER_RULE:
                out.add("id-missing", None, f"{comp.id_column} {image_id} is missing")
            else:
                out.counts["id-missing"] += rows - len(first_line) - kept
                break
    return rows_seen


def _check_id(raw: str, comp: Competition, number: int, out: Problems) -> int | None:
    """The id a field holds, or None after recording why it holds none."""
    column = comp.id_column
    if _PLAIN_INT.fullmatch(raw):
        return int(raw)
    if _field_problem(column, raw, number, out, lambda inner: bool(_PLAIN_INT.fullmatch(inner))):
        return None

    def message() -> str:
        if raw == "":
            return f"{column} is empty"
        meant = _as_integer(raw)
        if meant is not None:
            return (
                f"{column} {show_value(raw)} is not written as a plain whole number; write {meant}"
            )
        return f"{column} {show_value(raw)} is not a whole number"

    out.add("id-format", number, message)
    return None


def _check_label(raw: str, comp: Competition, number: int, out: Problems) -> None:
    column = comp.label_column
    if _field_problem(column, raw, number, out, lambda inner: inner in comp.labels):
        return

    def message() -> str:
        allowed = _allowed_text(comp.labels)
        if raw == "":
            return f"{column} is empty; expected one of {allowed}"
        return f"{column} {show_value(raw)} is not one of {allowed}{_label_hint(raw, comp.labels)}"

    out.add("label", number, message)
