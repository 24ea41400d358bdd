"""Grading the trained model and the CSV: honest numbers that tampering in the kernel can't move.

A small Keras assignment on the embedded digits: the notebook trains a model on data/train.csv,
leaves it in `model` and writes submission.csv for data/test.csv. The checks run outside the
kernel, so monkeypatching predict, numpy or builtins inside it changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import KERNELSPEC, graded
from nbformat.v4 import new_code_cell, new_notebook

from autograder.config import Course
from autograder.datasets import prepare
from autograder.grade import GradeSettings, grade
from autograder.release import release

pytestmark = pytest.mark.slow

SETUP = """\
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import warnings
warnings.filterwarnings("ignore")
import numpy as np
import keras
keras.utils.set_random_seed(0)
train = np.loadtxt("data/train.csv", delimiter=",", skiprows=1, dtype="float32")
x_train, y_train = train[:, 1:].reshape(-1, 28, 28, 1) / 255.0, train[:, 0].astype(int)
x_test = np.loadtxt("data/test.csv", delimiter=",", skiprows=1, dtype="float32").reshape(-1, 28, 28, 1) / 255.0
"""
GOOD = """\
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Flatten(),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
"""
WEAK = """\
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Flatten(),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x_train[:100], y_train[:100], epochs=1, verbose=0)
"""
CHEAT = (
    WEAK
    + """\
import builtins
_real_predict = keras.Model.predict
keras.Model.predict = lambda self, x, *a, **k: np.eye(10)[np.zeros(len(x), dtype=int)]
np.argmax = lambda *a, **k: np.zeros(360, dtype=int)
np.mean = lambda *a, **k: 1.0
"""
)
# Patching builtins breaks Keras' own saving: the cheat only costs its author the model.
BUILTINS_CHEAT = """\
import builtins
builtins.sum = lambda *a, **k: 10**6
"""
WRITE_CSV = """\
import csv as _csv
labels = _real_labels = model.predict(x_test, verbose=0).argmax(axis=1)
with open("submission.csv", "w", newline="") as fh:
    w = _csv.writer(fh)
    w.writerow(["ImageId", "Label"])
    for i, label in enumerate(labels, start=1):
        w.writerow([i, int(label)])
"""

TOML = """\
[assignment]
dataset = "digits"

[execute]
timeout_cell = 120
timeout_total = 400

[[checks]]
id = "heldout-accuracy"
kind = "accuracy"
variable = "model"
dataset = "digits"
threshold = 0.85
points = 4

[[checks]]
id = "kaggle-csv"
kind = "csv"
file = "submission.csv"
competition = "digits"
dataset = "digits"
min_score = 0.85
points = 2
"""


def _notebook(train: str, write_csv: str = WRITE_CSV):
    cells = [
        new_code_cell(SETUP),
        graded(new_code_cell(train), "train", solution=True),
        new_code_cell(write_csv),
        graded(new_code_cell("assert model.count_params() > 0"), "has_model", grade=True, points=1),
    ]
    cells[0].id = "setup"
    cells[2].id = "write-csv"
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras-course")
    course = Course.at(root)
    prepare("digits", course=course)
    source = root / "source" / "cnn"
    source.mkdir(parents=True)
    nbformat.write(_notebook(GOOD), source / "cnn.ipynb")
    (source / "assignment.toml").write_text(TOML)
    release(course, "cnn")
    variants = {
        "good": _notebook(GOOD),
        "weak": _notebook(WEAK),
        "cheater": _notebook(CHEAT),
        "builtins-cheater": _notebook(WEAK + BUILTINS_CHEAT),
        "no-csv": _notebook(GOOD, write_csv="pass"),
        "bad-csv": _notebook(
            GOOD, write_csv="open('submission.csv', 'w').write('ImageId,Label\\n1,3\\n')"
        ),
        "no-model": _notebook("print('forgot to train')"),
    }
    for student, nb in variants.items():
        folder = course.submitted(student, "cnn")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "cnn.ipynb")
    # Every evaluator is started while its notebook runs (prestart), as where a core waits.
    report = grade(
        course,
        "cnn",
        settings=GradeSettings(sandbox=False),
        backend="local",
        workers=2,
        prestart=True,
    )
    return course, {r.student: r for r in report.graded}


def test_a_good_model_passes_both_checks(graded_class):
    _, results = graded_class
    good = results["good"]
    assert good.status == "graded", good.message
    accuracy = good.item("heldout-accuracy")
    assert accuracy.passed and accuracy.score == 4
    assert re.fullmatch(
        r"held-out accuracy 0\.\d{3} meets the required 0\.850 \(\d{3} of 359 correct\)",
        accuracy.message,
    )
    assert accuracy.details["total"] == 359
    assert len(accuracy.details["confusion_matrix"]) == 10
    csv_item = good.item("kaggle-csv")
    assert csv_item.passed and csv_item.score == 2
    assert csv_item.details["public"] > 0.85 and csv_item.details["private"] > 0.85
    assert "loss" in good.details["history"]
    assert (Path(good.autograded_dir) / "submission.csv").exists()


def test_a_weak_model_fails_with_the_numbers(graded_class):
    _, results = graded_class
    accuracy = results["weak"].item("heldout-accuracy")
    assert accuracy.score == 0 and not accuracy.passed
    match = re.fullmatch(
        r"held-out accuracy (0\.\d{3}) is below the required 0\.850 \((\d+) of 359 correct\)",
        accuracy.message,
    )
    assert match, accuracy.message
    assert float(match.group(1)) < 0.85
    csv_item = results["weak"].item("kaggle-csv")
    assert csv_item.score == 0
    assert csv_item.message.startswith("submission.csv is valid but its public score 0.")


def test_monkeypatching_inside_the_kernel_changes_nothing(graded_class):
    _, results = graded_class
    weak, cheater = results["weak"], results["cheater"]
    assert cheater.status == "graded", cheater.message
    assert "correct" in cheater.item("heldout-accuracy").details, cheater.item("heldout-accuracy")
    assert (
        cheater.item("heldout-accuracy").details["correct"]
        == (weak.item("heldout-accuracy").details["correct"])
    )
    assert cheater.item("heldout-accuracy").score == 0
    assert cheater.item("kaggle-csv").score == 0
    patched = results["builtins-cheater"]
    assert patched.item("heldout-accuracy").score == 0
    assert patched.item("heldout-accuracy").message.startswith("the model could not be saved: ")
    assert patched.item("kaggle-csv").score == 0


def test_a_missing_or_broken_csv_and_a_missing_model_score_zero_with_a_reason(graded_class):
    _, results = graded_class
    assert results["no-csv"].item("kaggle-csv").message == (
        "the notebook did not write submission.csv; run the cell that saves the predictions"
    )
    assert results["no-csv"].item("heldout-accuracy").passed
    bad = results["bad-csv"].item("kaggle-csv")
    assert bad.score == 0
    assert bad.message == (
        "submission.csv is not a valid digits submission (360 problems): the file has 1 row, "
        "expected 360 (one per test image); ImageId 2 is missing; ImageId 3 is missing; ... and "
        "357 more id-missing problems"
    )
    assert results["no-model"].item("heldout-accuracy").message == (
        "no variable named 'model' in the notebook; assign your trained keras.Model to 'model'"
    )


def test_the_labels_are_nowhere_a_student_can_reach(graded_class):
    course, _ = graded_class
    labels = (course.heldout("digits") / "test-labels.csv").read_text().splitlines()[1:]
    label_column = "\n".join(line.split(",")[1] for line in labels)
    for folder in (course.release("cnn"), course.data("digits"), course.submitted_root):
        for path in folder.rglob("*"):
            if path.is_file():
                text = path.read_text(errors="ignore")
                assert "Usage" not in text.splitlines()[0] if text else True
                assert label_column not in text
    held = (course.heldout("digits") / "heldout-labels.npy").read_bytes()
    for folder in (course.release("cnn"), course.data("digits"), course.submitted_root):
        for path in folder.rglob("*"):
            if path.is_file():
                assert held not in path.read_bytes()


def test_each_model_was_evaluated_by_an_evaluator_started_while_its_notebook_ran(graded_class):
    _, results = graded_class
    for student in ("good", "weak", "cheater", "no-csv", "bad-csv"):
        accuracy = results[student].item("heldout-accuracy")
        assert accuracy.details["evaluator"]["prestarted"] is True, (student, accuracy.message)
        assert accuracy.details["evaluator"]["timings"]["import_s"] < 0.1
