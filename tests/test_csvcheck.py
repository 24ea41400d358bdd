"""check-csv: every rule has its exact message; Kaggle's real sample file is valid."""

from __future__ import annotations

import gzip
import json
import random
import zipfile

import pytest
from click.testing import CliRunner
from conftest import SHARED

from autograder.cli import cli
from autograder.competitions import COMPETITIONS, get_competition
from autograder.csvcheck import check_csv, score_csv
from autograder.errors import ConfigError

KAGGLE_SAMPLE = SHARED / "data" / "kaggle-digit-recognizer" / "sample_submission.csv"


def problems(tmp_path, text: str | bytes, rows: int = 3, competition: str = "digits"):
    path = tmp_path / "submission.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    report = check_csv(path, competition=competition, rows=rows)
    return [str(p) for p in report.problems]


@pytest.mark.skipif(not KAGGLE_SAMPLE.exists(), reason=f"{KAGGLE_SAMPLE} not found")
def test_kaggles_real_sample_submission_is_valid():
    report = check_csv(KAGGLE_SAMPLE, competition="digit-recognizer")
    assert report.valid
    assert report.rows_seen == 28000
    assert report.summary() == "sample_submission.csv: valid for digit-recognizer (28,000 rows)"


@pytest.mark.parametrize(
    "text",
    [
        "ImageId,Label\n1,0\n2,1\n3,9\n",
        "\ufeffImageId,Label\n1,0\n2,1\n3,9\n",  # UTF-8 BOM
        "ImageId,Label\r\n1,0\r\n2,1\r\n3,9\r\n",  # CRLF
        "ImageId,Label\n3,9\n1,0\n2,1",  # any order, no final newline
    ],
)
def test_accepted_variations(tmp_path, text):
    assert problems(tmp_path, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ImageId,Label\n1,0\n1,4\n3,2\n",
            ["line 3: ImageId 1 appears twice (first on line 2)", "ImageId 2 is missing"],
        ),
        ("ImageId,Label\n1,0\n2,12\n3,2\n", ["line 3: Label '12' is not one of 0..9"]),
        ("ImageId,Label\n1,0\n2,cat\n3,2\n", ["line 3: Label 'cat' is not one of 0..9"]),
        (
            "ImageId,Label\n1,0\n2,1\n4,2\n",
            ["line 4: ImageId 4 is out of range (1..3)", "ImageId 3 is missing"],
        ),
        (
            "ImageId,Label\n1,0\n2,1\n0,2\n",
            ["line 4: ImageId 0 is out of range (1..3)", "ImageId 3 is missing"],
        ),
        (
            "ImageId,Label\n1,0\n2,1\n",
            [
                "the file has 2 rows; digits needs exactly 3 (one per test image)",
                "ImageId 3 is missing",
            ],
        ),
        (
            "ImageId,Label\n1,0\n2,1\n3,2\n4,2\n",
            [
                "line 5: ImageId 4 is out of range (1..3)",
                "the file has 4 rows; digits needs exactly 3 (one per test image)",
            ],
        ),
        (
            "ImageId,Label\n1,0\n\n2,1\n3,2\n",
            ["line 3: blank line; remove it"],
        ),
        (
            "ImageId,Label\n1,0,extra\n2,1\n3,2\n",
            ["line 2: expected 2 columns (ImageId,Label), found 3", "ImageId 1 is missing"],
        ),
        (
            'ImageId,Label\n"1",0\n2,1\n3,2\n',
            ['line 2: ImageId "1" is quoted; write 1', "ImageId 1 is missing"],
        ),
        (
            "ImageId,Label\n 1,0\n2,1\n3,2\n",
            ["line 2: ImageId ' 1' has spaces around it; write 1", "ImageId 1 is missing"],
        ),
        (
            "ImageId,Label\n+1,0\n2,1\n3,2\n",
            [
                "line 2: ImageId +1 is not written as a plain whole number; write 1",
                "ImageId 1 is missing",
            ],
        ),
        (
            "ImageId,Label\n1.0,0\n2,1\n3,2\n",
            [
                "line 2: ImageId 1.0 is not written as a plain whole number; write 1",
                "ImageId 1 is missing",
            ],
        ),
        (
            "ImageId,Label\n01,0\n2,1\n3,2\n",
            [
                "line 2: ImageId 01 is not written as a plain whole number; write 1",
                "ImageId 1 is missing",
            ],
        ),
        (
            "ImageId,Label\nabc,0\n2,1\n3,2\n",
            ["line 2: ImageId 'abc' is not a whole number from 1 to 3", "ImageId 1 is missing"],
        ),
        (
            "ImageId,Label\n1,5.0\n2,1\n3,2\n",
            ["line 2: Label 5.0 is not written as a plain whole number; write 5"],
        ),
        ('ImageId,Label\n1,"5"\n2,1\n3,2\n', ['line 2: Label "5" is quoted; write 5']),
        ("ImageId,Label\n1, 5\n2,1\n3,2\n", ["line 2: Label ' 5' has spaces around it; write 5"]),
        ("ImageId,Label\n1,\n2,1\n3,2\n", ["line 2: Label '' is not one of 0..9"]),
    ],
)
def test_each_rule_names_itself_and_its_line(tmp_path, text, expected):
    assert problems(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        (
            ",ImageId,Label",
            "the file has an extra first column (pandas: call to_csv with index=False)",
        ),
        ("ImageId;Label", "the columns are separated by ';' or tabs; separate them with commas"),
        ('"ImageId","Label"', "the column names are quoted; write them without quotes"),
        ("ImageId, Label", "the header has spaces; write it without spaces"),
        ("imageid,label", "the column names must match exactly, capitals included"),
        ("id,prediction", "the first line must name the two columns"),
    ],
)
def test_header_mistakes_get_a_hint(tmp_path, header, hint):
    found = problems(tmp_path, f"{header}\n1,0\n2,1\n3,2\n")
    assert found[0] == f"line 1: the header is {header!r}, expected 'ImageId,Label': {hint}"


def test_pandas_index_column_is_caught(tmp_path):
    found = problems(tmp_path, ",ImageId,Label\n0,1,0\n1,2,1\n2,3,2\n")
    assert found[0].endswith("(pandas: call to_csv with index=False)")
    assert found[1] == "line 2: expected 2 columns (ImageId,Label), found 3"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty; write the header and one row per test image"),
        (
            gzip.compress(b"ImageId,Label\n1,0\n"),
            "the file is gzip-compressed; submit the plain .csv file (gunzip it first)",
        ),
        (
            "ImageId,Label\n1,0\n".encode("utf-16"),
            "the file is UTF-16 or binary, not UTF-8 text; save it as CSV UTF-8 (pandas: df.to_csv(path, index=False))",
        ),
        (
            b"\x00\x01\x02\x03binary",
            "the file is UTF-16 or binary, not UTF-8 text; save it as CSV UTF-8 (pandas: df.to_csv(path, index=False))",
        ),
        (
            b"ImageId,Label\n1,\xe9\n",
            "the file is not UTF-8 text (byte 16); save it as CSV UTF-8 (pandas: df.to_csv(path, index=False))",
        ),
    ],
)
def test_files_that_are_not_csv_text_get_one_plain_message(tmp_path, data, message):
    assert problems(tmp_path, data) == [message]


def test_zip_and_oversized_and_missing_files(tmp_path):
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("submission.csv", "ImageId,Label\n1,0\n")
    report = check_csv(archive, competition="digits", rows=3)
    assert [str(p) for p in report.problems] == [
        "the file is a zip archive (or an Excel .xlsx); submit a plain .csv file"
    ]
    big = tmp_path / "big.csv"
    big.write_text("ImageId,Label\n" + "1,0\n" * 200_000)
    report = check_csv(big, competition="digits", rows=3)
    assert [str(p) for p in report.problems] == [
        "the file is over 0.1 MB, far more than a digits submission needs; is this the right file?"
    ]
    report = check_csv(tmp_path / "nope.csv", competition="digits")
    assert [str(p) for p in report.problems] == [f"{tmp_path / 'nope.csv'} does not exist"]
    report = check_csv(tmp_path, competition="digits")
    assert [str(p) for p in report.problems] == [f"{tmp_path} is a folder, not a CSV file"]


def test_summary_shows_the_first_of_each_rule_and_counts_the_rest(tmp_path):
    rows = "\n".join(f"{i},11" for i in range(1, 361))
    path = tmp_path / "s.csv"
    path.write_text(f"ImageId,Label\n{rows}\n")
    report = check_csv(path, competition="digits")
    assert report.counts == {"label": 360}
    assert report.summary(max_per_rule=2).splitlines() == [
        "s.csv: not valid for digits (360 problem(s))",
        "  line 2: Label '11' is not one of 0..9",
        "  line 3: Label '11' is not one of 0..9",
        "  ... and 358 more label problems",
    ]


def test_class_name_labels_for_cifar(tmp_path):
    assert problems(tmp_path, "id,label\n1,cat\n2,ship\n", rows=2, competition="cifar-10") == []
    assert problems(tmp_path, "id,label\n1,cat\n2,3\n", rows=2, competition="cifar-10") == [
        "line 3: label '3' is not one of airplane, automobile, bird, cat, deer, dog, frog, "
        "horse, ship, truck"
    ]


def test_random_bytes_never_crash_the_checker(tmp_path):
    rng = random.Random(7)
    alphabet = b'0123456789,\n\r" .+-eImageLbl\xef\xbb\xbf\x00\xff'
    path = tmp_path / "fuzz.csv"
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.5:
            data = b"ImageId,Label\n" + data
        path.write_bytes(data)
        report = check_csv(path, competition="digits", rows=3)
        assert report.valid == (not report.problems)
        json.dumps(report.to_json())


def test_scoring_splits_public_and_private(tmp_path):
    labels = tmp_path / "test-labels.csv"
    labels.write_text("ImageId,Label,Usage\n1,0,Public\n2,1,Private\n3,2,Private\n4,3,Private\n")
    path = tmp_path / "s.csv"
    path.write_text("ImageId,Label\n1,0\n2,1\n3,9\n4,9\n")
    report = check_csv(path, competition="digits", rows=4)
    score = score_csv(report, labels)
    assert (score.public, score.private, score.overall, score.correct) == (1.0, 1 / 3, 0.5, 2)
    with pytest.raises(ValueError):
        score_csv(check_csv(tmp_path / "none.csv", competition="digits", rows=4), labels)


def test_registry_is_data_and_unknown_names_are_listed():
    assert {c.header for c in COMPETITIONS.values()} == {"ImageId,Label", "id,label"}
    with pytest.raises(ConfigError) as err:
        get_competition("titanic")
    assert err.value.message == (
        "unknown competition 'titanic'; known competitions are digit-recognizer, digits, "
        "fashion-mnist, mnist, cifar-10"
    )


def test_cli_exit_codes_and_json(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("ImageId,Label\n" + "".join(f"{i},1\n" for i in range(1, 361)))
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,1\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["check-csv", str(good), "--competition", "digits"])
    assert ok.exit_code == 0 and ok.output == "good.csv: valid for digits (360 rows)\n"
    res = runner.invoke(cli, ["check-csv", str(bad), "--competition", "digits", "--json"])
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert data["valid"] is False and data["rows_expected"] == 360 and data["rows_seen"] == 1
    assert data["problems"][0] == {
        "rule": "rows",
        "line": None,
        "message": "the file has 1 rows; digits needs exactly 360 (one per test image)",
    }
    usage = runner.invoke(cli, ["check-csv", str(good), "--competition", "titanic"])
    assert usage.exit_code == 2
    unknown_rows = runner.invoke(
        cli, ["--course-dir", str(tmp_path), "check-csv", str(good), "--competition", "mnist"]
    )
    assert unknown_rows.exit_code == 2
    assert (
        "pass rows (--rows N) or run 'autograder data prepare mnist' first" in unknown_rows.stderr
    )
    assert (
        runner.invoke(
            cli, ["check-csv", str(good), "--competition", "mnist", "--rows", "360"]
        ).exit_code
        == 0
    )
