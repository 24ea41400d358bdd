"""assignment.toml: typos and bad values are caught with messages that name the fix."""

from __future__ import annotations

import pytest

from autograder.config import Course, load_assignment, parse_assignment, parse_size
from autograder.errors import ConfigError


def _err(data, where="a.toml") -> str:
    with pytest.raises(ConfigError) as err:
        parse_assignment("a", data, where=where)
    return err.value.message


def test_a_full_config_parses_with_types_and_defaults():
    config = parse_assignment(
        "ex",
        {
            "assignment": {"title": "Exercise", "dataset": "digits", "notebooks": ["ex.ipynb"]},
            "execute": {"timeout_cell": 60, "parameters": {"EPOCHS": 2, "FAST": True}},
            "checks": [
                {"id": "acc", "kind": "accuracy", "points": 4, "threshold": 0.9},
                {
                    "id": "csv",
                    "kind": "csv",
                    "points": 2,
                    "competition": "digits",
                    "min_score": 0.8,
                },
            ],
        },
        where="x",
    )
    assert config.notebooks == ("ex",)
    assert config.execute.timeout_cell == 60.0
    assert config.execute.timeout_total == 1800.0
    assert config.execute.parameters == {"EPOCHS": 2, "FAST": True}
    assert [c.kind for c in config.checks] == ["accuracy", "csv"]
    assert config.checks[0].variable == "model"
    assert config.max_check_points == 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"execute": {"timeout_cel": 5}},
            "a.toml [execute]: unknown key(s) timeout_cel; valid keys are cpu_limit, "
            "disk_limit, max_files, max_notebook_output_bytes, max_output_bytes, "
            "max_output_lines, max_processes, memory_limit, parameters, prestart_imports, "
            "timeout_cell, timeout_total",
        ),
        (
            {"execute": {"disk_limit": "lots"}},
            "a.toml [execute]: size 'lots' is not understood; write e.g. 2G, 512M or 1000000",
        ),
        (
            {"execute": {"disk_limit": "10K"}},
            "a.toml [execute]: disk_limit '10K' is under 1M; give e.g. 1G",
        ),
        (
            {"execute": {"cpu_limit": -1}},
            "a.toml [execute]: cpu_limit must not be negative (0: four times timeout_total)",
        ),
        (
            {"checks": [{"id": "x", "kind": "speed", "points": 1}]},
            "a.toml [[checks]] #1: kind must be one of accuracy, csv, got 'speed'",
        ),
        (
            {"checks": [{"id": "x", "kind": "accuracy", "points": 1}]},
            "a.toml [[checks]] #1: missing required key(s) threshold",
        ),
        (
            {"checks": [{"id": "x", "kind": "accuracy", "points": 1, "threshold": 98}]},
            "a.toml: check 'x' threshold 98.0 must be between 0 and 1",
        ),
        (
            {"checks": [{"id": "x", "kind": "accuracy", "points": "five", "threshold": 0.9}]},
            "a.toml [[checks]] #1: points must be a number, got 'five'",
        ),
        (
            {
                "checks": [
                    {"id": "x", "kind": "csv", "points": 1},
                    {"id": "x", "kind": "csv", "points": 1},
                ]
            },
            "a.toml: two checks have the id 'x'; ids must differ",
        ),
        (
            {"grading": {}},
            "a.toml: unknown table(s) grading; valid tables are [assignment], [execute], "
            "[service], [submission] and [[checks]]",
        ),
        (
            {"assignment": {"dataset": "../secrets"}},
            "dataset name '../secrets' is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit",
        ),
        (
            {"checks": [{"id": "x", "kind": "csv", "points": 1, "min_score": "high"}]},
            "a.toml [[checks]] #1: min_score must be a number, got 'high'",
        ),
        (
            {"service": {"deadline": "friday"}},
            "a.toml [service]: deadline 'friday' is not a time; write it as "
            "2026-12-01T18:00:00+03:00",
        ),
        (
            {"service": {"hard_deadline": "2026-12-01T18:00"}},
            "a.toml [service]: hard_deadline '2026-12-01T18:00' has no time zone; add one, "
            "e.g. 2026-12-01T18:00+00:00 for UTC",
        ),
        (
            {"service": {"max_upload": "huge"}},
            "a.toml [service]: size 'huge' is not understood; write e.g. 2G, 512M or 1000000",
        ),
        (
            {"service": {"max_per_window": -1}},
            "a.toml [service]: limits must not be negative",
        ),
        (
            {"service": {"quota": 3}},
            "a.toml [service]: unknown key(s) quota; valid keys are deadline, hard_deadline, "
            "max_per_window, max_upload, min_interval_s, url, window_s",
        ),
        (
            {"service": {"url": "workshop.example.org"}},
            "a.toml [service]: url 'workshop.example.org' is not a web address; write the "
            'service\'s address as participants reach it, e.g. url = "https://workshop.example.org"',
        ),
        (
            {"service": {"url": "ftp://workshop.example.org"}},
            "a.toml [service]: url 'ftp://workshop.example.org' is not a web address; write the "
            'service\'s address as participants reach it, e.g. url = "https://workshop.example.org"',
        ),
        (
            {"service": {"url": "https://host:port"}},
            "a.toml [service]: url 'https://host:port' is not a web address; write the "
            'service\'s address as participants reach it, e.g. url = "https://workshop.example.org"',
        ),
    ],
)
def test_mistakes_are_named(data, message):
    assert _err(data) == message


def test_missing_assignment_and_broken_toml(tmp_path):
    course = Course.at(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_assignment(course, "ghost")
    assert "no assignment 'ghost'" in err.value.message
    (tmp_path / "source" / "bad").mkdir(parents=True)
    (tmp_path / "source" / "bad" / "assignment.toml").write_text("[execute\n")
    with pytest.raises(ConfigError) as err:
        load_assignment(course, "bad")
    assert err.value.message.startswith(
        f"{tmp_path / 'source/bad/assignment.toml'}: not valid TOML"
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", int(1.5 * 2**30)), ("1000", 1000)],
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_bad_size_says_how_to_write_one():
    with pytest.raises(ConfigError) as err:
        parse_size("lots")
    assert err.value.message == "size 'lots' is not understood; write e.g. 2G, 512M or 1000000"


def test_student_names_cannot_escape_the_course():
    course = Course.at("/tmp/c")
    with pytest.raises(ConfigError):
        course.submitted("../../etc", "a")


def test_checks_inherit_the_assignments_data_set_and_its_format():
    # A fashion course's checks, written as the README's example without a dataset, score on
    # Fashion-MNIST and count its rows, not the embedded digits'.
    config = parse_assignment(
        "fashion",
        {
            "assignment": {"dataset": "fashion-mnist"},
            "checks": [
                {"id": "acc", "kind": "accuracy", "points": 4, "threshold": 0.8},
                {"id": "csv", "kind": "csv", "points": 2, "min_score": 0.75},
                {"id": "own", "kind": "csv", "points": 1, "dataset": "digits"},
            ],
        },
        where="x",
    )
    assert [c.dataset for c in config.checks] == ["fashion-mnist", "fashion-mnist", "digits"]
    assert [c.competition for c in config.checks[1:]] == ["fashion-mnist", "digits"]
    bare = parse_assignment("a", {"checks": [{"id": "c", "kind": "csv", "points": 1}]}, where="x")
    assert (bare.checks[0].dataset, bare.checks[0].competition) == ("digits", "digits")
