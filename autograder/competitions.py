"""Kaggle competition formats, as data: columns, row count, allowed labels.

A new competition is a new entry in :data:`COMPETITIONS`, never a new branch in the checker
(:mod:`autograder.csvcheck` and :mod:`autograder.csvrules` read only these fields).
"""

from __future__ import annotations

import dataclasses
import json

from .config import Course, CsvCheck, load_assignment
from .datasizes import DIGIT_CLASSES, DIGITS_TEST_ROWS, FASHION_MNIST_TEST_ROWS
from .errors import ConfigError

#: Rows of the test.csv of Kaggle's own digit-recognizer (Kaggle's number, not a split of ours).
KAGGLE_DIGIT_RECOGNIZER_ROWS = 28_000
#: Images of the test set of Kaggle's cifar-10 competition.
KAGGLE_CIFAR10_ROWS = 300_000
#: Kaggle's cifar-10 labels: the class names, in the order of ``keras.datasets.cifar10``.
CIFAR10_LABELS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Competition:
    """The format a submission file must follow: ``<id_column>,<label_column>``, one row per
    test image, ids ``id_start .. id_start + rows - 1`` in any order, each once."""

    name: str
    title: str
    id_column: str
    label_column: str
    #: Data rows the file must have; None: the test.csv row count of the prepared ``dataset``.
    rows: int | None
    id_start: int = 1
    #: The labels allowed in the label column, exactly as written in the file.
    labels: tuple[str, ...]
    #: The prepared data set (``data/<dataset>/``) whose test.csv is predicted, if local.
    dataset: str | None
    description: str

    @property
    def header(self) -> str:
        """The first line the file must have, e.g. ``ImageId,Label``."""
        return f"{self.id_column},{self.label_column}"


def _digit_recognizer_like(
    name: str, title: str, rows: int | None, description: str
) -> Competition:
    return Competition(
        name=name,
        title=title,
        id_column="ImageId",
        label_column="Label",
        rows=rows,
        labels=DIGIT_CLASSES,
        dataset=name,
        description=description,
    )


COMPETITIONS: dict[str, Competition] = {
    c.name: c
    for c in (
        _digit_recognizer_like(
            "digit-recognizer",
            "Kaggle: Digit Recognizer (MNIST)",
            KAGGLE_DIGIT_RECOGNIZER_ROWS,
            "Kaggle's own competition: a digit 0-9 for each of the "
            f"{KAGGLE_DIGIT_RECOGNIZER_ROWS:,} rows of its test.csv",
        ),
        _digit_recognizer_like(
            "digits",
            "Workshop digits (the embedded default)",
            DIGITS_TEST_ROWS,
            "digit-recognizer format on 'autograder data prepare digits' "
            f"({DIGITS_TEST_ROWS:,} test images)",
        ),
        _digit_recognizer_like(
            "fashion-mnist",
            "Workshop Fashion-MNIST",
            FASHION_MNIST_TEST_ROWS,
            "digit-recognizer format on 'autograder data prepare fashion-mnist'; "
            "labels are class numbers 0-9",
        ),
        _digit_recognizer_like(
            "mnist",
            "Workshop MNIST",
            None,
            "digit-recognizer format on 'autograder data prepare mnist'; rows from its "
            "dataset.json",
        ),
        Competition(
            name="cifar-10",
            title="Kaggle: CIFAR-10 - Object Recognition in Images",
            id_column="id",
            label_column="label",
            rows=KAGGLE_CIFAR10_ROWS,
            labels=CIFAR10_LABELS,
            dataset=None,
            description="Kaggle's cifar-10 competition: a class name for each of "
            f"{KAGGLE_CIFAR10_ROWS:,} images",
        ),
    )
}


def get_competition(name: str) -> Competition:
    """The competition called ``name``; ConfigError lists the valid names."""
    try:
        return COMPETITIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown competition {name!r}; choose one of {', '.join(COMPETITIONS)}"
        ) from None


def course_competition(course: Course) -> tuple[str, str | None]:
    """The competition a file is checked for in ``course`` when none is named, and the data
    set whose rows it must have: the course's CSV checks' (a fashion course checks for
    ``fashion-mnist``); without any, ``digit-recognizer``. ConfigError when the course's
    checks use several, naming them."""
    found: dict[tuple[str, str], list[str]] = {}
    for assignment in course.assignments():
        try:
            config = load_assignment(course, assignment)
        except ConfigError:
            continue  # a broken assignment.toml is grade's to report, not check-csv's
        for check in config.checks:
            if isinstance(check, CsvCheck):
                found.setdefault((check.competition, check.dataset), []).append(assignment)
    if not found:
        return "digit-recognizer", None
    if len({competition for competition, _ in found}) > 1:
        uses = "; ".join(f"{c} ({', '.join(a)})" for (c, _), a in sorted(found.items()))
        raise ConfigError(
            f"the course checks CSV files for more than one competition: {uses}; choose one "
            "with --competition NAME"
        )
    competition, dataset = next(iter(found))
    return competition, dataset


def resolve_rows(
    competition: Competition,
    *,
    course: Course | None = None,
    rows: int | None = None,
    dataset: str | None = None,
) -> int:
    """The data rows a submission must have.

    In order: ``rows`` if given; the test.csv count of the prepared ``dataset`` if given (what a
    grader checks against); the competition's own ``rows``; the test.csv count of the
    competition's data set in ``course`` (``data/<dataset>/dataset.json``). ConfigError when
    none of them is known, saying how to fix it.
    """
    if rows is not None:
        if rows < 1:
            raise ConfigError(f"the row count must be at least 1, got {rows}")
        return rows
    if dataset is not None:
        if course is None:
            raise ConfigError(f"data set {dataset!r} was named but no course folder was given")
        return _test_rows(course, dataset)
    if competition.rows is not None:
        return competition.rows
    if competition.dataset is not None and course is not None:
        manifest = course.data(competition.dataset) / "dataset.json"
        if manifest.exists():
            return _test_rows(course, competition.dataset)
    where = f" in {course.root}" if course is not None else ""
    prepare = (
        f", or run 'autograder data prepare {competition.dataset}'{where} first"
        if competition.dataset
        else ""
    )
    raise ConfigError(
        f"competition {competition.name!r} has no fixed row count and its data set is not "
        f"prepared{where}; pass --rows N (the number of rows of test.csv){prepare}"
    )


def _test_rows(course: Course, dataset: str) -> int:
    """counts.test of ``data/<dataset>/dataset.json``, as ``autograder data prepare`` wrote it."""
    folder = dataset.split(":", 1)[-1]  # kaggle:digit-recognizer lives in data/digit-recognizer
    path = course.data(folder) / "dataset.json"
    if not path.exists():
        raise ConfigError(
            f"data set {dataset!r} is not prepared in {course.root} ({path} is missing); run "
            f"'autograder data prepare {dataset}' first, or pass --rows N"
        )
    try:
        count = json.loads(path.read_text(encoding="utf-8"))["counts"]["test"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} has no readable counts.test ({type(exc).__name__}: {exc}); run "
            f"'autograder data prepare {dataset}' again"
        ) from exc
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(
            f"{path}: counts.test is {count!r}, not a positive whole number; run "
            f"'autograder data prepare {dataset}' again"
        )
    return count
