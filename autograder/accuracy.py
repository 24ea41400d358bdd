"""Step 5, the accuracy check scored: the evaluator's predictions against the held-out labels.

Only the grader process holds the labels (:mod:`autograder.evaluate` runs the evaluator, which
is given none); :func:`accuracy_item` compares, and keeps what the feedback page shows: the
accuracy beside its threshold, per-class counts and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import AccuracyCheck
from .evaluate import EvalOutcome
from .results import ItemResult


def _fraction(value: float, other: float) -> str:
    """``value`` with 3 decimals, more when it is below ``other`` but would round up to it."""
    for digits in range(3, 7):
        text = f"{value:.{digits}f}"
        if value >= other or text != f"{other:.{digits}f}":
            return text
    return f"{value:.6f}"


def accuracy_item(
    check: AccuracyCheck, outcome: EvalOutcome, labels: np.ndarray, classes: Sequence[str]
) -> ItemResult:
    """Score ``check``: its points when the held-out accuracy reaches the threshold, else 0.

    ``details`` holds accuracy, correct, total, per-class counts and accuracy, and the
    confusion matrix (rows: true class, columns: predicted class) for the feedback page.
    """

    def zero(message: str, **details: Any) -> ItemResult:
        return ItemResult(
            id=check.id,
            kind="accuracy",
            score=0.0,
            max_score=check.points,
            passed=False,
            message=message,
            details={"code": outcome.code, "duration_s": round(outcome.duration_s, 3), **details},
        )

    if outcome.predictions is None:
        return zero(outcome.message, evaluator=dict(outcome.details))
    predictions = np.asarray(outcome.predictions)
    labels = np.asarray(labels)
    k = len(classes)
    if (
        labels.shape != predictions.shape
        or labels.ndim != 1
        or not np.issubdtype(labels.dtype, np.integer)
        or (labels.size and (labels.min() < 0 or labels.max() >= k))
        or (predictions.size and (predictions.min() < 0 or predictions.max() >= k))
    ):
        return zero(
            f"grader problem: {predictions.shape} predictions do not fit {labels.shape} "
            f"held-out labels of {k} classes; prepare the data set again "
            f"('autograder data prepare {check.dataset}')"
        )
    total = int(labels.size)
    confusion = np.bincount(
        labels.astype(np.int64) * k + predictions.astype(np.int64), minlength=k * k
    ).reshape(k, k)
    correct = int(np.trace(confusion))
    accuracy = correct / total if total else 0.0
    passed = total > 0 and accuracy >= check.threshold
    per_class_total = confusion.sum(axis=1)
    per_class_correct = np.diag(confusion)
    verb = "meets" if passed else "is below"
    message = (
        f"held-out accuracy {_fraction(accuracy, check.threshold)} {verb} the required "
        f"{check.threshold:.3f} ({correct:,} of {total:,} correct)"
    )
    nonfinite = int(outcome.details.get("nonfinite", 0) or 0)
    if nonfinite:
        message += f"; the model's outputs were NaN or infinite for {nonfinite:,} images"
    return ItemResult(
        id=check.id,
        kind="accuracy",
        score=check.points if passed else 0.0,
        max_score=check.points,
        passed=passed,
        message=message,
        details={
            "accuracy": accuracy,
            "correct": correct,
            "total": total,
            "threshold": check.threshold,
            "classes": [str(c) for c in classes],
            "per_class_total": [int(v) for v in per_class_total],
            "per_class_correct": [int(v) for v in per_class_correct],
            "per_class_accuracy": [
                (int(c) / int(t)) if t else None
                for c, t in zip(per_class_correct, per_class_total, strict=True)
            ],
            "confusion_matrix": confusion.astype(int).tolist(),
            "code": outcome.code,
            "duration_s": round(outcome.duration_s, 3),
            "evaluator": dict(outcome.details),
        },
    )
