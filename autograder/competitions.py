"""Kaggle competition formats, as data: columns, row count, allowed labels.

A new competition is a new entry here, never a new branch in the checker.
"""

from __future__ import annotations

import dataclasses

from .errors import ConfigError

DIGIT_LABELS = tuple(str(i) for i in range(10))
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


@dataclasses.dataclass(frozen=True)
class Competition:
    """The format a submission file must follow."""

    name: str
    title: str
    id_column: str
    label_column: str
    #: Data rows the file must have; None: take it from the prepared data set (``dataset``).
    rows: int | None
    #: The labels allowed in the label column, as written in the file.
    labels: tuple[str, ...]
    #: The first id; ids run from here, one per row.
    id_start: int = 1
    #: The prepared data set whose test.csv this competition predicts, if local.
    dataset: str | None = None
    description: str = ""

    @property
    def header(self) -> str:
        return f"{self.id_column},{self.label_column}"


COMPETITIONS: dict[str, Competition] = {
    c.name: c
    for c in (
        Competition(
            name="digit-recognizer",
            title="Kaggle: Digit Recognizer (MNIST)",
            id_column="ImageId",
            label_column="Label",
            rows=28000,
            labels=DIGIT_LABELS,
            dataset="digit-recognizer",
            description="Kaggle's competition: one row per image of its test.csv",
        ),
        Competition(
            name="digits",
            title="Workshop digits (embedded default)",
            id_column="ImageId",
            label_column="Label",
            rows=360,
            labels=DIGIT_LABELS,
            dataset="digits",
            description="digit-recognizer format on 'autograder data prepare digits'",
        ),
        Competition(
            name="fashion-mnist",
            title="Workshop Fashion-MNIST",
            id_column="ImageId",
            label_column="Label",
            rows=5000,
            labels=DIGIT_LABELS,
            dataset="fashion-mnist",
            description="digit-recognizer format on 'autograder data prepare fashion-mnist'",
        ),
        Competition(
            name="mnist",
            title="Workshop MNIST",
            id_column="ImageId",
            label_column="Label",
            rows=None,
            labels=DIGIT_LABELS,
            dataset="mnist",
            description="digit-recognizer format on 'autograder data prepare mnist'",
        ),
        Competition(
            name="cifar-10",
            title="Kaggle: CIFAR-10 - Object Recognition in Images",
            id_column="id",
            label_column="label",
            rows=300000,
            labels=CIFAR10_LABELS,
            description="Kaggle's CIFAR-10 competition: class names as labels",
        ),
    )
}


def get_competition(name: str) -> Competition:
    """The competition called ``name``; ConfigError lists the known ones."""
    try:
        return COMPETITIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown competition {name!r}; known competitions are {', '.join(COMPETITIONS)}"
        ) from None
