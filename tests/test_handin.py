"""What is taken from a submission folder: the notebooks and the named files, nothing else.

``[submission] files`` is checked when ``assignment.toml`` is read (a name that would hand in
what a check scores is refused with a sentence); :func:`take_submission` copies, leaves the
rest out with one note, and keeps a CSV handed in under a scored name out of the work folder.
The attacks graded end to end are in ``test_hostile_files.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autograder.config import parse_assignment
from autograder.errors import ConfigError, InvalidNotebookError
from autograder.handin import named, take_submission

CSV_CHECK = {"id": "kaggle", "kind": "csv", "points": 2, "file": "submission.csv"}


def _config(files, *, dataset="digits", checks=(CSV_CHECK,)):
    return parse_assignment(
        "a",
        {
            "assignment": {"dataset": dataset, "notebooks": ["a"]},
            "checks": list(checks),
            "submission": {"files": files},
        },
        where="assignment.toml",
    )


def test_named_files_are_read_from_the_submission_table():
    config = _config(["helpers.py", "images/*.png", "model weights.txt"])
    assert config.submission.files == ("helpers.py", "images/*.png", "model weights.txt")
    assert _config([]).submission.files == ()
    assert parse_assignment("a", {}, where="x").submission.files == ()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            ["submission.csv"],
            "assignment.toml [submission]: files: 'submission.csv' would take submission.csv, "
            "the file check 'kaggle' scores, from the submission; a check scores only what the "
            "notebook writes while it is graded: remove it, or give the check another file",
        ),
        (["*.csv"], "files: '*.csv' would take submission.csv, the file check 'kaggle' scores"),
        (["*"], "files: '*' would take submission.csv"),
        (["sub?ission.*"], "files: 'sub?ission.*' would take submission.csv"),
        (
            ["data/train.csv"],
            "assignment.toml [submission]: files: 'data/train.csv' is inside data/, where the "
            "released data is mounted; remove it",
        ),
        (["d*/x.npy"], "files: 'd*/x.npy' is inside data/"),
        (["*/x.npy"], "files: '*/x.npy' is inside outbox/, where the grader collects the model;"),
        (["outbox/model.keras"], "files: 'outbox/model.keras' is inside outbox/, where the grader"),
        (
            ["other.ipynb"],
            "assignment.toml [submission]: files: 'other.ipynb' names a notebook; the "
            "assignment's notebooks are always taken and no other is: remove it",
        ),
        (
            ["../source/a.ipynb"],
            "assignment.toml [submission]: files: '../source/a.ipynb' is not a file name inside "
            "the submission folder (no leading '/', no '..', no hidden names, no backslashes; "
            "'*' and '?' match within one folder); write e.g. 'helpers.py' or 'images/*.png'",
        ),
        (["/etc/passwd"], "'/etc/passwd' is not a file name inside the submission folder"),
        ([".env"], "'.env' is not a file name inside the submission folder"),
        (["lib/.cache/x"], "'lib/.cache/x' is not a file name"),
        (["a\\b.py"], "'a\\\\b.py' is not a file name"),
        (["src/**/*.py"], "'src/**/*.py' is not a file name"),
        (["ok.py", ""], "'' is not a file name"),
        ("helpers.py", "files must be a list of file names such as ['helpers.py', 'images/*.png']"),
        ([3], "files must be a list of file names"),
    ],
)
def test_names_that_would_hand_in_what_the_grader_scores_or_makes_are_refused(files, message):
    with pytest.raises(ConfigError) as caught:
        _config(files)
    assert message in str(caught.value)


def test_the_submission_table_takes_only_files_and_is_listed_among_the_tables():
    with pytest.raises(ConfigError, match=r"\[submission\]: unknown key\(s\) extra; the valid"):
        parse_assignment("a", {"submission": {"extra": 1}}, where="x")
    with pytest.raises(ConfigError, match=r"\[service\], \[submission\] and \[\[checks\]\]"):
        parse_assignment("a", {"submisson": {}}, where="x")


def test_data_may_be_named_when_the_assignment_releases_no_data():
    assert _config(["data/extra.csv"], dataset="").submission.files == ("data/extra.csv",)


def test_patterns_match_one_folder_level_and_never_a_hidden_file_or_a_notebook():
    assert named("helpers.py", ["*.py"]) and named("img/a.png", ["img/*.png"])
    assert not named("img/sub/a.png", ["img/*.png"]) and not named("a.png", ["img/*.png"])
    assert not named(".env", ["*"]) and not named("lib/.secret.py", ["lib/*.py"])
    assert not named("other.ipynb", ["*"])
    assert named("Helpers.PY", ["Helpers.PY"]) and not named("helpers.py", ["Helpers.py"])


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _take(src: Path, dest: Path, **options):
    defaults = {
        "notebooks": ["a"],
        "files": ["helpers.py", "cache/*.csv"],
        "outputs": ["submission.csv"],
        "skip_data": True,
        "skipped_dirs": frozenset({".ipynb_checkpoints"}),
        "max_files": 100,
        "max_bytes": 10**6,
    }
    return take_submission(src, dest, **{**defaults, **options})


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_only_the_notebook_and_the_named_files_are_copied_the_rest_is_listed(tmp_path):
    src, dest = tmp_path / "student" / "a", tmp_path / "work"
    _write(
        src,
        {
            "a.ipynb": "{}",
            "helpers.py": "X = 1",
            "cache/preds.csv": "ImageId,Label\n",
            "cache/notes.txt": "not named",
            "submission.csv": "ImageId,Label\n1,7\n",
            "my.csv": "ImageId,Label\n1,7\n",
            "other.ipynb": "{}",
            ".env": "TOKEN=x",
            ".hidden/secret.py": "",
            "data/train.csv": "label,pixel0\n9,9\n",
            "extra/sub/deep.txt": "",
            "extra/b.txt": "",
            "timestamp.txt": "2026-01-01 10:00:00.000000 UTC",
            ".ipynb_checkpoints/a-checkpoint.ipynb": "{}",
        },
    )
    dest.mkdir()
    taken = _take(src, dest)
    assert _tree(dest) == ["a.ipynb", "cache/preds.csv", "helpers.py"]
    assert taken.handed_in == {"submission.csv": src / "submission.csv"}
    assert taken.notes == [
        "not used for grading: .env, .hidden/ (1 file), cache/ (1 file), extra/ (2 files), "
        "my.csv, other.ipynb; only the notebook and the files the assignment names are taken "
        "from a submission, and a CSV counts only when the notebook writes it while it is graded"
    ]


def test_a_single_notebook_under_another_name_is_taken_several_are_not(tmp_path):
    src, dest = tmp_path / "s" / "a", tmp_path / "work"
    _write(src, {"a (1).ipynb": "{}"})
    dest.mkdir()
    assert _take(src, dest).notes == [] and _tree(dest) == ["a (1).ipynb"]
    _write(src, {"b.ipynb": "{}"})
    other = tmp_path / "work2"
    other.mkdir()
    assert _tree(other) == [] and "a (1).ipynb, b.ipynb" in _take(src, other).notes[0]


def test_links_are_never_followed_or_copied(tmp_path):
    src, dest = tmp_path / "s" / "a", tmp_path / "work"
    secret = tmp_path / "secret"
    _write(secret, {"labels.csv": "ImageId,Label\n1,7\n", "helpers.py": "LEAK = 1"})
    src.mkdir(parents=True)
    dest.mkdir()
    os.symlink(secret / "labels.csv", src / "submission.csv")
    os.symlink(secret / "helpers.py", src / "helpers.py")
    os.link(secret / "labels.csv", src / "a.ipynb")
    taken = _take(src, dest)
    assert _tree(dest) == []
    # Recorded, so that its report can say it is a link; the grader opens it without following.
    assert taken.handed_in == {"submission.csv": src / "submission.csv"}
    assert taken.notes == [
        "a.ipynb is a hard link to another file and was not used",
        "helpers.py is a symbolic link and was not used",
    ]
    # A linked folder, at any depth, refuses the submission.
    for where in ("cache", "deep/er/cache"):
        (src / where).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(secret, src / where)
        with pytest.raises(
            InvalidNotebookError,
            match=f"the folder {where} in the submission is a symbolic link; hand in the files",
        ):
            _take(src, dest)
        (src / where).unlink()
    linked = tmp_path / "linked"
    os.symlink(src, linked)
    with pytest.raises(InvalidNotebookError, match="the folder linked is a symbolic link"):
        _take(linked, dest)


def test_a_folder_of_junk_is_listed_boundedly_and_never_makes_the_submission_invalid(tmp_path):
    src, dest = tmp_path / "s" / "a", tmp_path / "work"
    _write(src, {"a.ipynb": "{}", **{f"junk/{i:04}.txt": "" for i in range(150)}})
    _write(src, {f"z{i:02}.txt": "" for i in range(15)})
    dest.mkdir()
    taken = _take(src, dest, max_files=120)
    assert _tree(dest) == ["a.ipynb"]
    (note,) = taken.notes
    # Top-level names first (a.ipynb, z00..z14), then the folder, until 120 were seen.
    assert note.startswith("not used for grading: junk/ (104 files), z00.txt, z01.txt, ")
    assert "z08.txt and 6 more (the folder holds more files than were looked at); only" in note


def test_what_is_taken_is_bounded_and_says_what_to_do(tmp_path):
    src, dest = tmp_path / "s" / "a", tmp_path / "work"
    _write(src, {"a.ipynb": "{}", "helpers.py": "x" * 2000})
    dest.mkdir()
    with pytest.raises(InvalidNotebookError) as caught:
        _take(src, dest, max_bytes=1000)
    assert caught.value.message == (
        "the files taken from the submission are more than 100 or 0 MB; submit only the "
        "notebook and the files the assignment asks for"
    )


def test_file_names_in_the_note_are_plain_bounded_text(tmp_path):
    src, dest = tmp_path / "s" / "a", tmp_path / "work"
    _write(src, {"a.ipynb": "{}", "bad\x1b[31mname\x07.txt": "", "x" * 200: ""})
    dest.mkdir()
    (note,) = _take(src, dest).notes
    assert "bad?[31mname?.txt" in note and "\x1b" not in note and "x" * 57 + "..." in note
    assert "x" * 58 not in note
