"""check-csv: every rule with its exact message, what is accepted, scoring, the command line."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from autograder.cli import cli
from autograder.competitions import COMPETITIONS, get_competition, resolve_rows
from autograder.config import Course
from autograder.csvcheck import (
    CsvReport,
    CsvScore,
    InvalidCsvError,
    check_csv,
    max_bytes,
    read_labels,
    read_predictions,
    score_csv,
)
from autograder.csvrules import KEEP_PER_RULE, RULES, CsvProblem
from autograder.datasets import FASHION_MNIST_DIR, prepare, read_idx, stratified_split
from autograder.errors import ConfigError, DataError

#: Kaggle's real digit-recognizer sample_submission.csv (28,000 rows), vendored.
KAGGLE_SAMPLE = Path(__file__).resolve().parent / "fixtures" / "kaggle" / "sample_submission.csv"
HEADER = "ImageId,Label\n"


def write(tmp_path: Path, content: str | bytes, name: str = "submission.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def rows(*labels: str, start: int = 1) -> str:
    return "".join(f"{i},{label}\n" for i, label in enumerate(labels, start=start))


def check(tmp_path: Path, content: str | bytes, n: int = 3, **kwargs) -> CsvReport:
    return check_csv(write(tmp_path, content), rows=n, **kwargs)


def problems(report: CsvReport) -> list[str]:
    return [str(p) for p in report.problems]


# --- accepted -----------------------------------------------------------------------------


@pytest.mark.skipif(
    not KAGGLE_SAMPLE.exists(), reason=f"Kaggle's real file {KAGGLE_SAMPLE} is absent"
)
def test_kaggles_own_sample_submission_is_valid_for_digit_recognizer():
    report = check_csv(KAGGLE_SAMPLE)
    assert report.valid, report.summary()
    assert report.rows_expected == report.rows_seen == 28_000
    assert report.summary() == "sample_submission.csv: valid for digit-recognizer (28,000 rows)"
    assert report.to_json()["counts"] == {}


def test_plain_file_is_valid(tmp_path):
    report = check(tmp_path, HEADER + rows("7", "2", "1"))
    assert report.valid
    assert report.problems == ()
    assert report.summary() == "submission.csv: valid for digit-recognizer (3 rows)"


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfImageId,Label\n1,7\n2,2\n3,1\n",  # UTF-8 byte-order mark (Excel)
        b"ImageId,Label\r\n1,7\r\n2,2\r\n3,1\r\n",  # CRLF (Windows, Kaggle's own sample)
        b"ImageId,Label\n1,7\n2,2\n3,1",  # no final newline
        b"ImageId,Label\r\n1,7\n2,2\r\n3,1",  # mixed line ends
        b"ImageId,Label\n3,1\n1,7\n2,2\n",  # ids in any order
    ],
    ids=["bom", "crlf", "no-final-newline", "mixed-ends", "any-order"],
)
def test_what_kaggle_accepts_is_accepted(tmp_path, content):
    assert check(tmp_path, content).valid


def test_cifar10_takes_class_names(tmp_path):
    report = check(tmp_path, "id,label\n1,cat\n2,truck\n3,airplane\n", competition="cifar-10")
    assert report.valid, report.summary()


def test_a_competition_object_works_like_its_name(tmp_path):
    report = check(tmp_path, HEADER + rows("1", "2", "3"), competition=get_competition("digits"))
    assert report.valid and report.competition == "digits"


# --- whole-file problems: one message each, never a flood of lines -----------------------------


def only(report: CsvReport) -> tuple[str, str]:
    assert not report.valid
    assert len(report.problems) == 1, problems(report)
    assert report.rows_seen == 0
    problem = report.problems[0]
    assert problem.line is None
    return problem.rule, problem.message


def test_missing_file(tmp_path):
    assert only(check_csv(tmp_path / "nope.csv")) == (
        "missing",
        "the file does not exist; check its name and the folder it is in",
    )


def test_folder(tmp_path):
    assert only(check_csv(tmp_path)) == (
        "not-a-file",
        "this is a folder, not a file; give the CSV file inside it",
    )


def test_symbolic_link_is_refused_not_followed(tmp_path):
    target = write(tmp_path, HEADER + rows("1", "2", "3"), name="real.csv")
    (tmp_path / "submission.csv").symlink_to(target)
    assert only(check_csv(tmp_path / "submission.csv", rows=3)) == (
        "not-a-file",
        "the file is a symbolic link; submit the file itself",
    )
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    assert only(check_csv(tmp_path / "dangling.csv", rows=3)) == (
        "not-a-file",
        "the file is a symbolic link; submit the file itself",
    )


def test_pipe_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")  # reading it would block forever
    assert only(check_csv(tmp_path / "fifo.csv")) == (
        "not-a-file",
        "this is not a regular file (a pipe or a device); give a CSV file",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, HEADER + rows("1", "2", "3"))
    path.chmod(0)
    assert only(check_csv(path, rows=3)) == (
        "unreadable",
        "the file cannot be opened (Permission denied); check its permissions",
    )


@pytest.mark.parametrize(
    "content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"], ids=["0-bytes", "blank", "bom"]
)
def test_empty_file(tmp_path, content):
    assert only(check(tmp_path, content)) == (
        "empty",
        "the file is empty; write the header ImageId,Label, then one row per test image",
    )


def test_oversized_file_is_not_read(tmp_path):
    competition = get_competition("digit-recognizer")
    assert max_bytes(competition, 3) == 4 * (3 + 13 + 2 + 3 * (1 + 1 + 3)) + 65_536 == 65_668
    assert max_bytes(competition, 28_000) == 1_073_608  # 4x the most 28,000 rows can need
    assert max_bytes(get_competition("cifar-10"), 300_000) == 22_865_588
    assert max_bytes(competition, 10**9) == 50 * 1024 * 1024  # never more than 50 MiB
    report = check(tmp_path, HEADER + "1,0\n" * 20_000)
    assert only(report) == (
        "too-large",
        "the file is 80.0 kB or more, far more than this competition's rows can need "
        "(the cap is 65.7 kB); is it the right file?",
    )


def test_gzip_file(tmp_path):
    assert only(check(tmp_path, gzip.compress((HEADER + rows("1", "2", "3")).encode()))) == (
        "gzip",
        "the file is gzip-compressed, not plain text; decompress it, or save the predictions "
        "as a plain UTF-8 CSV file, e.g. df.to_csv(path, index=False)",
    )


def test_zip_file_such_as_xlsx(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("submission.csv", HEADER + rows("1", "2", "3"))
    assert only(check(tmp_path, buffer.getvalue())) == (
        "zip",
        "the file is a zip archive (an Excel .xlsx or a Keras .keras file is one too), not "
        "plain text; save the predictions as a plain UTF-8 CSV file, e.g. "
        "df.to_csv(path, index=False)",
    )


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32")],
)
def test_utf16_and_utf32_text(tmp_path, encoding, name):
    content = (HEADER + rows("1", "2", "3")).encode(encoding)
    assert only(check(tmp_path, content)) == (
        "utf16",
        f"the file is {name} text (as Excel's 'Unicode Text' or PowerShell's > write it), not "
        "UTF-8; save the predictions as a plain UTF-8 CSV file, e.g. "
        "df.to_csv(path, index=False)",
    )


def test_binary_file_of_a_known_kind(tmp_path):
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    assert only(check(tmp_path, buffer.getvalue())) == (
        "binary",
        "the file is binary data, not CSV text (it looks like a NumPy .npy array (np.save)); "
        "save the predictions as a plain UTF-8 CSV file, e.g. df.to_csv(path, index=False)",
    )


def test_binary_file_of_an_unknown_kind(tmp_path):
    content = bytes([0xDE, 0xAD, 0xBE, 0xEF]) + bytes(range(256)) * 4
    assert only(check(tmp_path, content)) == (
        "binary",
        "the file is binary data, not CSV text (it starts with bytes de ad be ef); save the "
        "predictions as a plain UTF-8 CSV file, e.g. df.to_csv(path, index=False)",
    )


def test_old_mac_line_ends(tmp_path):
    assert only(check(tmp_path, "ImageId,Label\r1,0\r2,0\r3,0\r")) == (
        "line-ends",
        r"lines end with a bare carriage return (\r, old Mac style); end them with \n or \r\n",
    )


def test_far_too_many_lines_is_one_problem(tmp_path):
    report = check(tmp_path, HEADER + "\n" * 5000)
    assert only(report) == (
        "rows",
        "the file has 5,001 lines, far more than the 3 rows expected; is it the right file?",
    )


# --- line rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "ImageId,Prediction\n",
            "line 1: header is 'ImageId,Prediction', expected exactly 'ImageId,Label'",
        ),
        (
            "imageid,label\n",
            "line 1: header is 'imageid,label', expected exactly 'ImageId,Label'; column names "
            "are case-sensitive",
        ),
        (
            ",ImageId,Label\n",
            "line 1: header is ',ImageId,Label', expected exactly 'ImageId,Label'; the first "
            "column is a pandas index: write the file with index=False",
        ),
        (
            "ImageId;Label\n",
            "line 1: header is 'ImageId;Label', expected exactly 'ImageId,Label'; separate the "
            "columns with commas, not ';'",
        ),
        (
            "ImageId\tLabel\n",
            "line 1: header is 'ImageId\\tLabel', expected exactly 'ImageId,Label'; separate the "
            "columns with commas, not tabs",
        ),
        (
            '"ImageId","Label"\n',
            "line 1: header is '\"ImageId\",\"Label\"', expected exactly 'ImageId,Label'; write "
            "the column names without quotes",
        ),
        (
            "ImageId, Label\n",
            "line 1: header is 'ImageId, Label', expected exactly 'ImageId,Label'; remove the "
            "spaces",
        ),
        (
            "\ufeff\ufeffImageId,Label\n",  # a second byte-order mark: only one is taken off
            "line 1: header is '\\ufeffImageId,Label', expected exactly 'ImageId,Label'",
        ),
    ],
)
def test_header_rule(tmp_path, content, expected):
    report = check(tmp_path, content + rows("1", "2", "3"))
    assert problems(report) == [expected]
    assert report.counts == {"header": 1}


def test_long_header_is_cut_short(tmp_path):
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    report = check(tmp_path, header + "\n" + rows("1", "2", "3"))
    assert problems(report) == [
        "line 1: header is 'label,pixel0,pixel1,pixel2,pixel3,pixel4'... (6,951 characters), "
        "expected exactly 'ImageId,Label'"
    ]


def test_missing_header_is_named_and_the_first_line_checked_as_a_row(tmp_path):
    report = check(tmp_path, rows("1", "2", "3"))
    assert problems(report) == [
        "line 1: the header line is missing; the first line must be exactly 'ImageId,Label'"
    ]
    assert report.rows_seen == 3


def test_blank_lines(tmp_path):
    report = check(tmp_path, HEADER + "1,0\n\n2,0\n   \n3,0\n\n")
    assert problems(report) == [
        "line 3: blank line; remove it",
        "line 5: blank line; remove it",
        "line 7: blank line; remove it",
    ]
    assert report.rows_seen == 3


def test_columns(tmp_path):
    report = check(tmp_path, HEADER + "1,0,0.98\n2,0,\n3\n")
    assert problems(report) == [
        "line 2: 3 fields, expected 2 (ImageId,Label)",
        "line 3: 3 fields, expected 2 (ImageId,Label); remove the trailing comma",
        "line 4: 1 field, expected 2 (ImageId,Label)",
    ]
    assert report.counts == {"columns": 3}  # ids unread there are not also called missing


def test_pandas_index_column_is_named_once_then_counted(tmp_path):
    report = check(tmp_path, ",ImageId,Label\n0,1,7\n1,2,2\n2,3,1\n")
    assert report.counts == {"header": 1, "columns": 3}
    assert problems(report)[0].endswith(
        "the first column is a pandas index: write the file with index=False"
    )


def test_quotes(tmp_path):
    report = check(tmp_path, HEADER + '"1",0\n2,"0"\n3,\'0\'\n"4 ",x\n5,"1.0"\n', n=5)
    assert problems(report) == [
        "line 2: ImageId '\"1\"' is quoted; write 1",
        "line 3: Label '\"0\"' is quoted; write 0",
        "line 4: Label \"'0'\" is quoted; write 0",
        "line 5: ImageId '\"4 \"' is quoted; write 4",
        "line 5: Label 'x' is not one of 0..9",
        "line 6: Label '\"1.0\"' is quoted; write values without quotes",
    ]
    assert list(report.counts) == ["quotes", "label"]


def test_whitespace(tmp_path):
    report = check(tmp_path, HEADER + " 1,0\n2, 0\n3,0\t\n4, 1.0 \n", n=4)
    assert problems(report) == [
        "line 2: ImageId ' 1' has whitespace around it; write 1",
        "line 3: Label ' 0' has whitespace around it; write 0",
        "line 4: Label '0\\t' has whitespace around it; write 0",
        "line 5: Label ' 1.0 ' has whitespace around it; remove it",
    ]


def test_id_format(tmp_path):
    report = check(tmp_path, HEADER + "+1,0\n2.0,0\n03,0\n1e3,0\nabc,0\n,0\n", n=6)
    assert [p for p in problems(report) if "ImageId" in p] == [
        "line 2: ImageId '+1' is not written as a plain whole number; write 1",
        "line 3: ImageId '2.0' is not written as a plain whole number; write 2",
        "line 4: ImageId '03' is not written as a plain whole number; write 3",
        "line 5: ImageId '1e3' is not written as a plain whole number; write 1000",
        "line 6: ImageId 'abc' is not a whole number",
        "line 7: ImageId is empty",
    ]
    assert report.counts == {"id-format": 6}


def test_id_range(tmp_path):
    report = check(tmp_path, HEADER + "0,0\n2,0\n-3,0\n4,0\n")
    assert problems(report) == [
        "line 2: ImageId 0 is out of range; ImageIds run from 1 to 3",
        "line 4: ImageId -3 is out of range; ImageIds run from 1 to 3",
        "line 5: ImageId 4 is out of range; ImageIds run from 1 to 3",
        "the file has 4 rows, expected 3 (one per test image)",
        "ImageId 1 is missing",
        "ImageId 3 is missing",
    ]


def test_id_duplicate_names_the_first_line(tmp_path):
    content = HEADER + rows(*"0" * 10) + "".join(f"{i},0\n" for i in (5, 16, 5, 5))
    report = check(tmp_path, content, n=16)
    assert problems(report) == [
        "line 12: ImageId 5 appears twice (first on line 6)",
        "line 14: ImageId 5 appears 3 times (first on line 6)",
        "line 15: ImageId 5 appears 4 times (first on line 6)",
        "the file has 14 rows, expected 16 (one per test image)",
        "ImageId 11 is missing",
        "ImageId 12 is missing",
        "ImageId 13 is missing",
        "ImageId 14 is missing",
        "ImageId 15 is missing",
    ]


def test_the_example_from_the_style_guide(tmp_path):
    ids = [*range(1, 11), 17, *range(11, 15), 17, 15, 16]
    report = check(tmp_path, HEADER + "".join(f"{i},0\n" for i in ids), n=17)
    assert problems(report) == [
        "line 17: ImageId 17 appears twice (first on line 12)",
        "the file has 18 rows, expected 17 (one per test image)",
    ]


def test_labels(tmp_path):
    report = check(tmp_path, HEADER + "1,10\n2,1.0\n3,+7\n4,01\n5,\n6,seven\n", n=6)
    assert problems(report) == [
        "line 2: Label '10' is not one of 0..9",
        "line 3: Label '1.0' is not one of 0..9; write 1",
        "line 4: Label '+7' is not one of 0..9; write 7",
        "line 5: Label '01' is not one of 0..9; write 1",
        "line 6: Label is empty; expected one of 0..9",
        "line 7: Label 'seven' is not one of 0..9",
    ]
    assert report.counts == {"label": 6}


def test_cifar10_labels_suggest_the_class_name(tmp_path):
    report = check(tmp_path, "id,label\n1,Cat\n2,3\n3,kitten\n", competition="cifar-10")
    names = "airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck"
    assert problems(report) == [
        f"line 2: label 'Cat' is not one of {names}; write cat",
        f"line 3: label '3' is not one of {names}; write class names, not numbers (3 is cat in "
        "keras.datasets order)",
        f"line 4: label 'kitten' is not one of {names}",
    ]


def test_rows(tmp_path):
    report = check(tmp_path, HEADER + rows("1", "2"))
    assert problems(report) == [
        "the file has 2 rows, expected 3 (one per test image)",
        "ImageId 3 is missing",
    ]
    report = check(tmp_path, HEADER)
    assert problems(report)[0] == "the file has 0 rows, expected 3 (one per test image)"
    report = check(tmp_path, HEADER + rows("1"))
    assert problems(report)[0] == "the file has 1 row, expected 3 (one per test image)"


def test_bytes_that_are_not_utf8(tmp_path):
    report = check(tmp_path, b"ImageId,Label\n1,0\n2,\xe9\n3,0\n")
    assert problems(report) == ["line 3: byte 0xe9 is not UTF-8; save the file as UTF-8"]
    assert report.counts == {"encoding": 1}


def test_carriage_return_inside_a_line(tmp_path):
    report = check(tmp_path, "ImageId,Label\n1,0\r\r\n2,0\n3,0\n")
    assert problems(report) == [
        r"line 2: a carriage return (\r) inside the line; end lines with \n or \r\n"
    ]


def test_a_file_of_ids_only(tmp_path):
    report = check(tmp_path, "ImageId\n1\n2\n3\n")
    assert report.counts == {"header": 1, "columns": 3}


def test_every_rule_is_documented():
    tested = {
        "missing", "not-a-file", "unreadable", "too-large", "empty", "gzip", "zip", "utf16",
        "binary", "line-ends", "encoding", "header", "blank-line", "columns", "quotes",
        "whitespace", "id-format", "id-range", "id-duplicate", "id-missing", "label", "rows",
    }  # fmt: skip
    assert set(RULES) == tested


# --- many problems: the first few kept, all counted ---------------------------------------------


def test_a_flood_is_kept_short_and_counted(tmp_path):
    content = HEADER + "".join(f"{i},{i % 10}.0\n" for i in range(1, 28_001))
    report = check(tmp_path, content, n=28_000)
    assert report.counts == {"label": 28_000}
    assert len(report.problems) == KEEP_PER_RULE
    assert report.summary() == "\n".join(
        [
            "submission.csv: invalid for digit-recognizer (28,000 problems)",
            "  line 2: Label '1.0' is not one of 0..9; write 1",
            "  line 3: Label '2.0' is not one of 0..9; write 2",
            "  line 4: Label '3.0' is not one of 0..9; write 3",
            "  line 5: Label '4.0' is not one of 0..9; write 4",
            "  line 6: Label '5.0' is not one of 0..9; write 5",
            "  ... and 27,995 more label problems",
        ]
    )


def test_missing_ids_are_counted_past_the_ones_kept(tmp_path):
    report = check(tmp_path, HEADER + rows("0"), n=100)
    assert report.counts == {"rows": 1, "id-missing": 99}
    assert len([p for p in report.problems if p.rule == "id-missing"]) == KEEP_PER_RULE


def test_summary_groups_rules_in_the_order_they_first_fail(tmp_path):
    report = check(tmp_path, HEADER + "1,x\n1,y\n2,z\n", n=3)
    assert report.summary(max_per_rule=1) == "\n".join(
        [
            "submission.csv: invalid for digit-recognizer (5 problems)",
            "  line 2: Label 'x' is not one of 0..9",
            "  ... and 2 more label problems",
            "  line 3: ImageId 1 appears twice (first on line 2)",
            "  ImageId 3 is missing",
        ]
    )
    assert list(report.counts) == ["label", "id-duplicate", "id-missing"]
    assert report.summary(max_per_rule=0).splitlines()[1] == "  ... and 3 more label problems"


def test_summary_of_one_problem_is_singular(tmp_path):
    report = check_csv(tmp_path / "gone.csv")
    assert report.summary() == (
        "gone.csv: invalid for digit-recognizer (1 problem)\n"
        "  the file does not exist; check its name and the folder it is in"
    )


def test_to_json_shape(tmp_path):
    path = write(tmp_path, HEADER + "1,0\n1,0\n")
    assert check_csv(path, rows=2).to_json() == {
        "path": str(path),
        "competition": "digit-recognizer",
        "valid": False,
        "rows_expected": 2,
        "rows_seen": 2,
        "counts": {"id-duplicate": 1, "id-missing": 1},
        "problems": [
            {
                "rule": "id-duplicate",
                "line": 3,
                "message": "ImageId 1 appears twice (first on line 2)",
            },
            {"rule": "id-missing", "line": None, "message": "ImageId 2 is missing"},
        ],
    }


def test_problem_prints_its_line():
    assert str(CsvProblem("label", 4, "Label 'x' is not one of 0..9")) == (
        "line 4: Label 'x' is not one of 0..9"
    )
    assert str(CsvProblem("rows", None, "the file has 2 rows")) == "the file has 2 rows"


# --- never crash --------------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data) + 1)
        action = rng.randrange(4)
        if action == 0 and data:
            del data[where : where + rng.randint(1, 4)]
        elif action == 1:
            data[where:where] = rng.choice([b",", b"\n", b"\r", b'"', b" ", b"\x00", b"\xff", b"9"])
        elif action == 2 and data:
            data[min(where, len(data) - 1)] = rng.randrange(256)
        else:
            data[where:where] = rng.randbytes(rng.randint(1, 8))
    return data


def test_random_and_mutated_files_never_crash_the_checker(tmp_path):
    rng = random.Random(20240521)
    valid = (HEADER + rows(*(str(i % 10) for i in range(1, 31)))).encode()
    path = tmp_path / "fuzz.csv"
    for attempt in range(1500):
        if attempt % 3 == 0:
            data = rng.randbytes(rng.randint(0, 300))
        else:
            data = bytes(_mutate(rng, bytearray(valid)))
        path.write_bytes(data)
        report = check_csv(path, rows=30)
        assert report.valid == (not report.counts) == (not report.problems), data
        assert set(report.counts) <= set(RULES), data
        assert all(p.message for p in report.problems), data
        json.dumps(report.to_json())
        report.summary().encode("utf-8")  # no lone surrogates from undecodable bytes
        if report.valid:
            assert len(read_predictions(path, rows=30)) == 30


def test_huge_numbers_are_reported_not_raised(tmp_path):
    report = check(tmp_path, HEADER + "9" * 5000 + ",1\n2,1e999\n3," + "9" * 5000 + "\n")
    assert problems(report) == [
        f"line 2: ImageId {'9' * 40!r}... (5,000 characters) is not a whole number",
        "line 3: Label '1e999' is not one of 0..9",
        f"line 4: Label {'9' * 40!r}... (5,000 characters) is not one of 0..9",
    ]


# --- scoring --------------------------------------------------------------------------------------

LABELS = "ImageId,Label,Usage\n1,7,Public\n2,2,Private\n3,1,Private\n4,0,Private\n"


def test_score_public_private_and_overall(tmp_path):
    labels = write(tmp_path, LABELS, name="test-labels.csv")
    submission = write(tmp_path, HEADER + "4,0\n1,7\n2,3\n3,1\n")
    report = check_csv(submission, rows=4)
    score = score_csv(report, labels)
    assert score == CsvScore(
        public=1.0, private=2 / 3, overall=0.75, n_public=1, n_private=3, correct=3
    )
    assert score_csv(submission, labels) == score  # a path is checked with the labels' rows
    assert score.to_json() == {
        "public": 1.0,
        "private": 2 / 3,
        "overall": 0.75,
        "n_public": 1,
        "n_private": 3,
        "correct": 3,
    }


def test_read_predictions(tmp_path):
    path = write(tmp_path, "\ufeffImageId,Label\r\n2,5\r\n1,4")
    assert read_predictions(path, rows=2) == {1: "4", 2: "5"}
    path = write(tmp_path, "ImageId,Label\n2,5\n1,4\n\n", name="blank.csv")
    with pytest.raises(InvalidCsvError) as caught:
        read_predictions(path, "digit-recognizer", rows=2)
    assert str(caught.value) == (
        "the submission is not valid, so it has no predictions to score: blank.csv: invalid for "
        "digit-recognizer (1 problem);  line 4: blank line; remove it"
    )


def test_an_invalid_file_has_no_score(tmp_path):
    labels = write(tmp_path, LABELS, name="test-labels.csv")
    report = check_csv(write(tmp_path, HEADER + "1,7\n"), rows=4)
    with pytest.raises(InvalidCsvError) as caught:
        score_csv(report, labels)
    assert str(caught.value) == (
        "submission.csv is not a valid digit-recognizer submission, so it has no score; fix "
        "the problems check-csv lists"
    )


def test_a_file_changed_after_its_check_is_checked_again(tmp_path):
    labels = write(tmp_path, LABELS, name="test-labels.csv")
    submission = write(tmp_path, HEADER + "1,7\n2,2\n3,1\n4,0\n")
    report = check_csv(submission, rows=4)
    submission.write_text(HEADER + "1,7\n1,7\n1,7\n1,7\n")
    with pytest.raises(InvalidCsvError):
        score_csv(report, labels)


def test_labels_for_other_rows_are_refused(tmp_path):
    labels = write(tmp_path, LABELS, name="test-labels.csv")
    report = check_csv(write(tmp_path, HEADER + rows("1", "2", "3")), rows=3)
    with pytest.raises(DataError) as caught:
        score_csv(report, labels)
    assert str(caught.value) == (
        f"submission.csv was checked for 3 rows but {labels} has 4 labels; check it with rows=4"
    )
    other = write(tmp_path, "ImageId,Label,Usage\n2,1,Public\n3,1,Public\n", name="other.csv")
    with pytest.raises(DataError) as caught:
        score_csv(write(tmp_path, HEADER + "1,0\n2,0\n"), other)
    assert str(caught.value) == (
        f"{other} labels ImageIds 2..3, but the submission's run from 1 to 2; they belong to "
        "different data"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is not a test-labels.csv: its header is nothing, expected 'ImageId,Label,Usage'"),
        (
            "ImageId,Label\n1,2\n",
            "is not a test-labels.csv: its header is 'ImageId,Label', expected "
            "'ImageId,Label,Usage'",
        ),
        ("ImageId,Label,Usage\n", "has a header but no labels"),
        (
            "ImageId,Label,Usage\n1,2,Public\n2,3,Hidden\n",
            ", line 3: '2,3,Hidden' is not 'ImageId,Label,Public|Private'",
        ),
        ("ImageId,Label,Usage\n1,2,Public\n1,3,Private\n", ", line 3: ImageId 1 appears twice"),
    ],
)
def test_a_broken_labels_file_is_named(tmp_path, content, expected):
    path = write(tmp_path, content, name="test-labels.csv")
    with pytest.raises(DataError) as caught:
        read_labels(path)
    assert str(caught.value) == (
        f"{path}{'' if expected.startswith(',') else ' '}{expected}; run 'autograder data "
        "prepare' again to rewrite it"
    )


@pytest.fixture(scope="module")
def digits_course(tmp_path_factory) -> Course:
    course = Course.at(tmp_path_factory.mktemp("digits"))
    prepare("digits", course=course)
    return course


def test_prepared_digits_match_the_digits_competition(digits_course):
    manifest = json.loads((digits_course.data("digits") / "dataset.json").read_text())
    assert COMPETITIONS["digits"].rows == manifest["counts"]["test"] == 360
    sample = digits_course.data("digits") / "sample_submission.csv"
    report = check_csv(sample, competition="digits")
    assert report.valid, report.summary()
    labels_path = digits_course.heldout("digits") / "test-labels.csv"
    truth = read_labels(labels_path)
    score = score_csv(report, labels_path)
    zeros = sum(label == "0" for label, _ in truth.values())
    assert (score.n_public, score.n_private) == (90, 270)  # Kaggle's 25/75 split
    assert score.correct == zeros and score.overall == zeros / 360


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_competition_has_the_prepared_test_count():
    labels = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    test, _ = stratified_split(labels, (0.5, 0.5))  # as datasets.load_fashion_mnist_splits
    assert COMPETITIONS["fashion-mnist"].rows == len(test) == 5_000


# --- competitions -------------------------------------------------------------------------------


def test_the_registry():
    assert list(COMPETITIONS) == [
        "digit-recognizer",
        "digits",
        "fashion-mnist",
        "mnist",
        "cifar-10",
    ]
    assert {c.header for c in COMPETITIONS.values()} == {"ImageId,Label", "id,label"}
    assert COMPETITIONS["digit-recognizer"].rows == 28_000
    assert COMPETITIONS["cifar-10"].rows == 300_000
    assert COMPETITIONS["mnist"].rows is None
    assert all(c.id_start == 1 for c in COMPETITIONS.values())


def test_unknown_competition_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        check_csv(write(tmp_path, HEADER), competition="mnist-kaggle")
    assert str(caught.value) == (
        "unknown competition 'mnist-kaggle'; choose one of digit-recognizer, digits, "
        "fashion-mnist, mnist, cifar-10"
    )


def test_rows_come_from_the_argument_then_the_competition_then_the_prepared_data(tmp_path):
    course = Course.at(tmp_path)
    mnist = get_competition("mnist")
    assert resolve_rows(mnist, course=course, rows=7) == 7
    assert resolve_rows(get_competition("digits"), course=course) == 360
    with pytest.raises(ConfigError) as caught:
        resolve_rows(mnist, course=course)
    assert str(caught.value) == (
        f"competition 'mnist' has no fixed row count and its data set is not prepared in "
        f"{tmp_path}; pass --rows N (the number of rows of test.csv), or run 'autograder data "
        f"prepare mnist' in {tmp_path} first"
    )
    course.data("mnist").mkdir(parents=True)
    (course.data("mnist") / "dataset.json").write_text('{"counts": {"test": 5000}}')
    assert resolve_rows(mnist, course=course) == 5000
    # A grader names the data set the file predicts: its count wins over the competition's.
    assert resolve_rows(get_competition("digit-recognizer"), course=course, dataset="mnist") == 5000
    (course.data("mnist") / "dataset.json").write_text('{"counts": {}}')
    with pytest.raises(ConfigError) as caught:
        resolve_rows(mnist, course=course)
    assert str(caught.value).endswith("run 'autograder data prepare mnist' again")


def test_a_row_count_is_needed(tmp_path):
    with pytest.raises(ConfigError) as caught:
        check_csv(write(tmp_path, HEADER), competition="mnist")
    assert str(caught.value) == (
        "competition 'mnist' has no fixed row count; pass rows (--rows N): the number of rows "
        "of test.csv in data/mnist/"
    )


# --- command line -------------------------------------------------------------------------------


def run(tmp_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--course-dir", str(tmp_path), "check-csv", *args])


def test_cli_valid_file_exits_0(tmp_path):
    path = write(tmp_path, HEADER + rows("1", "2", "3"))
    result = run(tmp_path, str(path), "--rows", "3")
    assert result.exit_code == 0
    assert result.output == "submission.csv: valid for digit-recognizer (3 rows)\n"


def test_cli_invalid_file_exits_1(tmp_path):
    path = write(tmp_path, HEADER + "1,0\n1,0\n")
    result = run(tmp_path, str(path), "--rows", "2")
    assert result.exit_code == 1
    assert result.output == (
        "submission.csv: invalid for digit-recognizer (2 problems)\n"
        "  line 3: ImageId 1 appears twice (first on line 2)\n"
        "  ImageId 2 is missing\n"
    )


def test_cli_missing_file_is_invalid_not_a_usage_error(tmp_path):
    result = run(tmp_path, str(tmp_path / "nope.csv"))
    assert result.exit_code == 1
    assert "the file does not exist" in result.output


def test_cli_json(tmp_path):
    path = write(tmp_path, "id,label\n1,cat\n2,Dog\n")
    result = run(tmp_path, str(path), "--competition", "cifar-10", "--rows", "2", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data == check_csv(path, competition="cifar-10", rows=2).to_json()
    assert set(data) == {
        "path", "competition", "valid", "rows_expected", "rows_seen", "counts", "problems"
    }  # fmt: skip
    assert data["problems"][0]["rule"] == "label" and data["problems"][0]["line"] == 3


def test_cli_usage_errors_exit_2(tmp_path):
    path = write(tmp_path, HEADER)
    result = run(tmp_path, str(path), "--competition", "nope")
    assert result.exit_code == 2
    assert "error: unknown competition 'nope'; choose one of digit-recognizer" in result.output
    result = run(tmp_path, str(path), "--competition", "mnist")
    assert result.exit_code == 2
    assert "pass --rows N" in result.output
    result = run(tmp_path, str(path), "--rows", "0")
    assert result.exit_code == 2


def test_cli_takes_rows_from_the_prepared_data(tmp_path):
    course = Course.at(tmp_path)
    course.data("mnist").mkdir(parents=True)
    (course.data("mnist") / "dataset.json").write_text('{"counts": {"test": 2}}')
    path = write(tmp_path, HEADER + rows("1", "2"))
    result = run(tmp_path, str(path), "--competition", "mnist")
    assert (result.exit_code, result.output) == (0, "submission.csv: valid for mnist (2 rows)\n")


def test_cli_help_names_every_competition_and_the_exit_codes():
    result = CliRunner().invoke(cli, ["check-csv", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in COMPETITIONS:
        assert name in "".join(text.split())
    assert "0 the file is valid" in text
    assert "1 the file is invalid, including a missing, empty or unreadable file" in text
    assert "2 usage error: unknown competition, or a row count that is not known" in text


def test_cli_checks_for_the_competition_of_the_course(tmp_path):
    # A fashion course: its CSV check names no competition, and a file is checked as the
    # grader will check it, for fashion-mnist with the prepared test.csv's rows.
    source = tmp_path / "source" / "fashion"
    source.mkdir(parents=True)
    (source / "fashion.ipynb").write_text("{}")
    (source / "assignment.toml").write_text(
        "[assignment]\ndataset = 'fashion-mnist'\n\n"
        "[[checks]]\nid = 'csv'\nkind = 'csv'\npoints = 1\n"
    )
    course = Course.at(tmp_path)
    course.data("fashion-mnist").mkdir(parents=True)
    (course.data("fashion-mnist") / "dataset.json").write_text('{"counts": {"test": 2}}')
    path = write(tmp_path, HEADER + rows("1", "2"))
    result = run(tmp_path, str(path))
    assert (result.exit_code, result.output) == (
        0,
        "submission.csv: valid for fashion-mnist (2 rows)\n",
    )
    other = tmp_path / "source" / "other"
    other.mkdir()
    (other / "other.ipynb").write_text("{}")
    (other / "assignment.toml").write_text(
        "[[checks]]\nid = 'csv'\nkind = 'csv'\npoints = 1\ncompetition = 'cifar-10'\n"
    )
    result = run(tmp_path, str(path))
    assert result.exit_code == 2
    assert result.output == (
        "error: the course checks CSV files for more than one competition: cifar-10 (other); "
        "fashion-mnist (fashion); choose one with --competition NAME\n"
    )
