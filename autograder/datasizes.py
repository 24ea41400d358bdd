"""How each data set is split, and the row counts that follow, in plain Python (no numpy).

:func:`autograder.datasets.stratified_split` cuts every class where :func:`class_cuts` says,
so the counts here are the ones ``autograder data prepare`` writes; :mod:`autograder.competitions`
reads them without importing numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

#: The labels of the digit data sets (digits, mnist, Kaggle's digit-recognizer).
DIGIT_CLASSES = tuple(str(i) for i in range(10))

#: digits: 60% train, 20% test, 20% held out.
DIGITS_FRACTIONS = (0.6, 0.2, 0.2)
#: fashion-mnist and mnist: the official train set released, the official test set halved
#: into test and held-out.
OFFICIAL_TEST_FRACTIONS = (0.5, 0.5)
#: kaggle:digit-recognizer: Kaggle's train.csv, minus 10% held out.
KAGGLE_TRAIN_FRACTIONS = (0.9, 0.1)

#: Images of each digit 0..9 in scikit-learn's bundled ``load_digits`` (1,797 in all).
DIGITS_CLASS_SIZES = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
#: Images of each class in Fashion-MNIST's official test set (10,000 in all).
FASHION_MNIST_TEST_CLASS_SIZES = (1_000,) * 10


def class_cuts(size: int, fractions: Sequence[float]) -> list[int]:
    """Where each part of one class of ``size`` items ends, in the order of ``fractions``
    (rounded half to even, as numpy's ``rint``)."""
    return [round(bound * size) for bound in accumulate(fractions)]


def part_sizes(class_sizes: Sequence[int], fractions: Sequence[float]) -> tuple[int, ...]:
    """How many items each part gets when classes of ``class_sizes`` items are split by
    ``fractions``, class by class, as :func:`autograder.datasets.stratified_split` splits."""
    totals = [0] * len(fractions)
    for size in class_sizes:
        start = 0
        for part, stop in enumerate(class_cuts(size, fractions)):
            totals[part] += stop - start
            start = stop
    return tuple(totals)


#: Rows of the prepared digits: train.csv, test.csv, the held-out images (1,078, 360, 359).
DIGITS_TRAIN_ROWS, DIGITS_TEST_ROWS, DIGITS_HELDOUT_ROWS = part_sizes(
    DIGITS_CLASS_SIZES, DIGITS_FRACTIONS
)
#: Rows of the prepared fashion-mnist test.csv and held-out images (5,000 each).
FASHION_MNIST_TEST_ROWS, FASHION_MNIST_HELDOUT_ROWS = part_sizes(
    FASHION_MNIST_TEST_CLASS_SIZES, OFFICIAL_TEST_FRACTIONS
)
