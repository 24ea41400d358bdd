"""Held-out accuracy: collect in the kernel, evaluate in a separate process, score here.

The models are tiny and built in the test; one is trained for a few seconds on the digits and
shared by the module. Each evaluation starts a real evaluator process (Keras import: seconds).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.accuracy import accuracy_item
from autograder.collect import collect_snippet, collect_status_path, read_collect_status
from autograder.config import AccuracyCheck
from autograder.datasets import DIGIT_CLASSES, load_digits_splits
from autograder.errors import ConfigError
from autograder.evaluate import EvalOutcome, evaluate_model, serve, start_evaluator
from autograder.predict import (
    QUIET_ENV,
    check_classes,
    class_scores,
    fit_images,
    main,
    predicted_classes,
    scan_model_config,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHECK = AccuracyCheck(id="acc", points=5.0, threshold=0.98, dataset="digits")


def outcome(predictions, **details) -> EvalOutcome:
    return EvalOutcome(np.asarray(predictions), "", 1.0, details=details)


def labels_and_predictions(total: int, correct: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(total) % k
    predictions = labels.copy()
    predictions[correct:] = (labels[correct:] + 1) % k
    return labels, predictions


# --- scoring (no Keras) ---------------------------------------------------------------------


def test_accuracy_below_the_threshold_scores_zero_and_says_by_how_much():
    labels, predictions = labels_and_predictions(10_000, 9_620)
    item = accuracy_item(CHECK, outcome(predictions), labels, DIGIT_CLASSES)
    assert item.message == (
        "held-out accuracy 0.962 is below the required 0.980 (9,620 of 10,000 correct)"
    )
    assert (item.kind, item.score, item.max_score, item.passed) == ("accuracy", 0.0, 5.0, False)
    assert (item.details["correct"], item.details["total"]) == (9_620, 10_000)
    assert item.details["accuracy"] == 0.962


def test_accuracy_at_or_above_the_threshold_gets_the_points():
    labels, predictions = labels_and_predictions(10_000, 9_910)
    item = accuracy_item(CHECK, outcome(predictions), labels, DIGIT_CLASSES)
    assert item.message == (
        "held-out accuracy 0.991 meets the required 0.980 (9,910 of 10,000 correct)"
    )
    assert (item.score, item.passed) == (5.0, True)
    exact = accuracy_item(
        CHECK, outcome(labels_and_predictions(10_000, 9_800)[1]), labels, "0123456789"
    )
    assert exact.passed and exact.message.startswith("held-out accuracy 0.980 meets")
    above = accuracy_item(
        CHECK,
        outcome(labels_and_predictions(100_000, 98_004)[1]),
        np.arange(100_000) % 10,
        DIGIT_CLASSES,
    )
    assert above.message.startswith("held-out accuracy 0.980 meets the required 0.980")


def test_a_miss_hidden_by_rounding_is_shown_with_more_digits():
    labels, predictions = labels_and_predictions(10_000, 9_795)
    item = accuracy_item(CHECK, outcome(predictions), labels, DIGIT_CLASSES)
    assert item.message == (
        "held-out accuracy 0.9795 is below the required 0.980 (9,795 of 10,000 correct)"
    )


def test_details_hold_per_class_accuracy_and_the_confusion_matrix():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    check = AccuracyCheck(id="acc", points=1.0, threshold=0.5)
    item = accuracy_item(check, outcome(predictions), labels, ["cat", "dog", "owl"])
    assert item.details["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert item.details["per_class_total"] == [3, 2, 1]
    assert item.details["per_class_correct"] == [2, 1, 1]
    assert item.details["per_class_accuracy"] == [2 / 3, 0.5, 1.0]
    assert item.details["classes"] == ["cat", "dog", "owl"]
    json.dumps(item.details)  # the feedback page and the gradebook store it as JSON


def test_outputs_that_were_not_numbers_are_pointed_out():
    labels, predictions = labels_and_predictions(100, 10)
    item = accuracy_item(CHECK, outcome(predictions, nonfinite=90), labels, DIGIT_CLASSES)
    assert item.message == (
        "held-out accuracy 0.100 is below the required 0.980 (10 of 100 correct); "
        "the model's outputs were NaN or infinite for 90 images"
    )


def test_a_model_problem_scores_zero_with_the_reason():
    failed = EvalOutcome(None, "no variable named 'model' in the notebook", 0.1, "missing-model")
    item = accuracy_item(CHECK, failed, np.zeros(3, dtype=np.uint8), DIGIT_CLASSES)
    assert (item.score, item.passed, item.max_score) == (0.0, False, 5.0)
    assert item.message == "no variable named 'model' in the notebook"
    assert item.details["code"] == "missing-model"


def test_predictions_that_do_not_fit_the_labels_are_a_grader_problem():
    item = accuracy_item(CHECK, outcome([1, 2]), np.array([1, 2, 3]), DIGIT_CLASSES)
    assert item.score == 0.0
    assert item.message == (
        "grader problem: (2,) predictions do not fit (3,) held-out labels of 10 classes; "
        "prepare the data set again ('autograder data prepare digits')"
    )


# --- shapes (no Keras) ----------------------------------------------------------------------

IMAGES = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1)


@pytest.mark.parametrize(
    ("model_input", "fitted"),
    [
        ((None, 28, 28, 1), (2, 28, 28, 1)),
        ((None, 28, 28), (2, 28, 28)),
        ((None, 784), (2, 784)),
        ((None, None, None, 1), (2, 28, 28, 1)),
        ((None, None, None), (2, 28, 28)),
        ((None, None), (2, 784)),
        ((None, 1, 28, 28), (2, 1, 28, 28)),
    ],
)
def test_images_are_fitted_to_every_usual_input_shape(model_input, fitted):
    x = fit_images(IMAGES, model_input)
    assert x.shape == fitted
    assert np.array_equal(x.reshape(-1), IMAGES.reshape(-1))


@pytest.mark.parametrize(
    ("model_input", "message"),
    [
        (
            (None, 32, 32, 3),
            "the model expects 32x32x3 images; the held-out images are 28x28x1",
        ),
        (
            (None, 100),
            "the model expects flat inputs of 100 values; the held-out images are 28x28x1 "
            "(784 values)",
        ),
        ((None, None, None, 3), "the model expects ?x?x3 images; the held-out images are 28x28x1"),
    ],
)
def test_an_input_shape_that_does_not_fit_names_both_shapes(model_input, message):
    with pytest.raises(Exception) as caught:
        fit_images(IMAGES, model_input)
    assert caught.value.message == (
        f"{message} (do any resizing or channel change inside the model, e.g. with "
        "keras.layers.Resizing)"
    )


def test_output_shapes_are_read_as_class_scores():
    assert class_scores(np.zeros((4, 10)), 4).shape == (4, 10)
    assert class_scores(np.zeros((4, 1, 1, 10)), 4).shape == (4, 10)
    assert class_scores({"probs": np.zeros((4, 10))}, 4).shape == (4, 10)
    assert class_scores(np.zeros(4), 4).shape == (4, 1)
    with pytest.raises(Exception) as caught:
        class_scores(np.zeros((4, 7, 7, 10)), 4)
    assert caught.value.message == (
        "the model outputs a 7x7x10 array for each image; a classifier outputs one score per "
        "class: add Flatten() or GlobalAveragePooling2D() before the last Dense layer"
    )


def test_the_number_of_outputs_must_match_the_classes():
    check_classes(10, 10)
    check_classes(1, 2)
    with pytest.raises(Exception) as caught:
        check_classes(5, 10)
    assert caught.value.message == (
        "the model outputs 5 classes; this data set has 10 (end the model with Dense(10))"
    )
    with pytest.raises(Exception) as caught:
        check_classes(1, 10)
    assert caught.value.message == (
        "the model outputs 1 value per image; this data set has 10 classes "
        "(end the model with Dense(10))"
    )


def test_one_output_is_a_probability_or_a_logit():
    assert predicted_classes(np.array([[0.2], [0.7]])).tolist() == [0, 1]
    assert predicted_classes(np.array([[-3.0], [2.0]])).tolist() == [0, 1]
    assert predicted_classes(np.array([[0.1, 0.9], [0.8, 0.2]])).tolist() == [1, 0]


def test_classes_from_a_students_module_are_refused_naming_the_module():
    layer = {"module": "helpers", "class_name": "Doubler", "config": {"name": "doubler"}}
    with pytest.raises(Exception) as caught:
        scan_model_config({"module": "keras", "class_name": "Sequential", "layers": [layer]})
    assert caught.value.message.startswith(
        "the model cannot be graded: it uses the class 'Doubler' from the module 'helpers', "
    )


def test_registered_custom_functions_are_refused_before_keras_is_loaded():
    config = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "name": "dense",
            "activation": {
                "module": "builtins",
                "class_name": "function",
                "config": "Custom>swishy",
                "registered_name": "function",
            },
        },
    }
    with pytest.raises(Exception) as caught:
        scan_model_config(config)
    assert caught.value.code == "custom-code"
    assert "the function 'swishy' defined in the notebook" in caught.value.message


# --- collection status and model files (no Keras) --------------------------------------------


def test_the_collect_snippet_needs_a_python_name_and_a_keras_path():
    with pytest.raises(ConfigError, match="'my model' is not a Python name"):
        collect_snippet("my model", "outbox/acc.keras")
    with pytest.raises(ConfigError, match=r"must end in \.keras"):
        collect_snippet("model", "outbox/acc.h5")
    assert collect_status_path(Path("outbox/acc.keras")) == Path("outbox/acc.collect.json")


def test_the_collect_status_is_read_as_untrusted_text(tmp_path):
    model = tmp_path / "acc.keras"
    status = collect_status_path(model)
    status.write_text(json.dumps({"ok": False, "reason": "x", "message": "bad\n\x1b[31mred" * 200}))
    read = read_collect_status(model)
    assert read is not None and read["ok"] is False
    assert "\n" not in read["message"] and "\x1b" not in read["message"]
    assert len(read["message"]) == 600 and read["message"].endswith("...")
    secret = tmp_path / "secret.txt"
    secret.write_text(json.dumps({"ok": False, "message": "the labels are 7, 2, 1"}))
    status.unlink()
    status.symlink_to(secret)
    assert read_collect_status(model) is None


def test_a_missing_model_reports_why_the_kernel_could_not_save_it(tmp_path):
    model = tmp_path / "outbox" / "acc.keras"
    model.parent.mkdir()
    images = tmp_path / "images.npy"
    np.save(images, IMAGES[..., 0])
    args = dict(images_path=images, scale=255.0, n_classes=10, timeout=30, workdir=tmp_path / "w")
    result = evaluate_model(model_path=model, **args)
    assert (result.predictions, result.code) == (None, "missing-model")
    assert result.message == (
        "no model was collected from the notebook (the collection step did not run to the end)"
    )
    collect_status_path(model).write_text(
        json.dumps(
            {"ok": False, "reason": "not-a-model", "message": "the variable 'model' is a str"}
        )
    )
    result = evaluate_model(model_path=model, **args)
    assert (result.code, result.message) == ("not-a-model", "the variable 'model' is a str")
    collect_status_path(model).write_text(
        json.dumps({"ok": False, "reason": "grader", "message": "not my fault, regrade me"})
    )
    result = evaluate_model(model_path=model, **args)
    assert (result.code, result.grader_problem) == ("missing-model", False)


def test_a_symlinked_model_is_not_followed(tmp_path):
    labels = tmp_path / "heldout-labels.npy"
    np.save(labels, np.arange(10))
    model = tmp_path / "acc.keras"
    model.symlink_to(labels)
    images = tmp_path / "images.npy"
    np.save(images, IMAGES)
    result = evaluate_model(
        model_path=model,
        images_path=images,
        scale=255.0,
        n_classes=10,
        timeout=30,
        workdir=tmp_path / "w",
    )
    assert (result.code, result.message) == (
        "file",
        "acc.keras is a symbolic link, not a saved model",
    )
    assert not (tmp_path / "w" / "model.keras").exists()


def run_as(tmp_path: Path, replacement: list[str]) -> EvalOutcome:
    """evaluate_model with the evaluator replaced by ``replacement`` (via command_wrapper)."""
    model, images = tmp_path / "acc.keras", tmp_path / "images.npy"
    model.write_bytes(b"PK")
    np.save(images, IMAGES)
    return evaluate_model(
        model_path=model,
        images_path=images,
        scale=255.0,
        n_classes=10,
        timeout=30,
        workdir=tmp_path / "w",
        command_wrapper=lambda command, env=None: replacement,
    )


def test_an_evaluator_killed_by_a_signal_is_reported_as_a_crash(tmp_path):
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = run_as(tmp_path, [sys.executable, "-c", kill])
    assert (result.predictions, result.code, result.grader_problem) == (None, "crashed", False)
    assert result.message == (
        "the model could not be evaluated: the evaluator was stopped by SIGKILL, often a sign "
        "of running out of memory"
    )


def test_a_kill_reported_by_a_wrapper_as_128_plus_n_is_a_crash_too(tmp_path):
    result = run_as(tmp_path, ["sh", "-c", "kill -9 $$"])  # Popen sees -9
    assert result.code == "crashed"
    # The outer shell exits 137 for its killed child, as bwrap does.
    result = run_as(tmp_path, ["sh", "-c", "sh -c 'kill -9 $$'"])
    assert (result.code, result.message) == (
        "crashed",
        "the model could not be evaluated: the evaluator was stopped by SIGKILL, often a sign "
        "of running out of memory",
    )


def test_an_evaluator_that_cannot_run_is_a_grader_problem(tmp_path):
    fail = "import sys; sys.exit(\"ModuleNotFoundError: No module named 'autograder'\")"
    result = run_as(tmp_path, [sys.executable, "-c", fail])
    assert (result.code, result.grader_problem) == ("grader", True)
    assert result.message == (
        "the evaluator could not run: ModuleNotFoundError: No module named 'autograder'"
    )
    result = run_as(tmp_path, [str(tmp_path / "no-such-sandbox")])
    assert result.grader_problem
    assert result.message.startswith("the evaluator could not be started ([Errno 2] ")


def test_the_evaluator_has_no_way_to_be_given_labels(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--model", "m.keras", "--images", "i.npy", "--out", "o", "--labels", "l.npy"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --labels l.npy" in capsys.readouterr().err


# --- real models, real evaluator processes ----------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    import keras

    keras.utils.set_random_seed(7)
    return keras


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


@pytest.fixture(scope="module")
def heldout(tmp_path_factory, digits):
    """A grader-only folder as `autograder data prepare` writes it."""
    folder = tmp_path_factory.mktemp("course") / ".autograder" / "heldout" / "digits"
    folder.mkdir(parents=True)
    np.save(folder / "heldout-images.npy", digits.heldout_x)
    np.save(folder / "heldout-labels.npy", digits.heldout_y)
    return folder


def dense_model(keras, input_shape=(28, 28, 1), classes=10):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def trained(keras, digits):
    model = dense_model(keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = digits.train_x[..., np.newaxis].astype("float32") / 255.0
    model.fit(x, digits.train_y, epochs=15, batch_size=32, verbose=0)
    return model


def save(keras, model, folder: Path, name: str = "acc.keras") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    keras.saving.save_model(model, folder / name)
    return folder / name


def evaluate(model: Path, heldout: Path, workdir: Path, **options) -> EvalOutcome:
    return evaluate_model(
        model_path=model,
        images_path=heldout / "heldout-images.npy",
        scale=255.0,
        n_classes=10,
        timeout=options.pop("timeout", 120),
        workdir=workdir,
        **options,
    )


@pytest.fixture(scope="module")
def fresh(keras, trained, heldout, tmp_path_factory):
    """The shared model saved, and what an evaluator started for it alone makes of it."""
    folder = tmp_path_factory.mktemp("fresh")
    model = save(keras, trained, folder / "outbox")
    return model, evaluate(model, heldout, folder / "scratch")


@pytest.mark.slow
def test_a_trained_model_passes_with_the_predictions_keras_makes(fresh, trained, heldout):
    _, result = fresh
    assert result.code == "ok", result.message
    assert result.details["prestarted"] is False
    assert result.message == "Sequential with 25,450 parameters predicted 359 images"
    images = np.load(heldout / "heldout-images.npy")[..., np.newaxis] / 255.0
    expected = np.argmax(trained.predict(images, verbose=0), axis=1)
    assert np.array_equal(result.predictions, expected)

    labels = np.load(heldout / "heldout-labels.npy")
    check = AccuracyCheck(id="acc", points=4.0, threshold=0.8)
    item = accuracy_item(check, result, labels, DIGIT_CLASSES)
    correct = int((expected == labels).sum())
    assert correct / 359 >= 0.8, "the shared model should have learned the digits"
    assert item.message == (
        f"held-out accuracy {correct / 359:.3f} meets the required 0.800 ({correct} of 359 correct)"
    )
    assert (item.score, item.passed) == (4.0, True)
    assert sum(map(sum, item.details["confusion_matrix"])) == 359
    assert result.details["input_shape"] == [None, 28, 28, 1]


@pytest.mark.slow
def test_an_untrained_model_fails_with_its_numbers(keras, heldout, tmp_path):
    model = save(keras, dense_model(keras), tmp_path / "outbox")
    result = evaluate(model, heldout, tmp_path / "scratch")
    labels = np.load(heldout / "heldout-labels.npy")
    item = accuracy_item(CHECK, result, labels, DIGIT_CLASSES)
    correct = int((result.predictions == labels).sum())
    assert correct < 0.5 * 359
    assert item.message == (
        f"held-out accuracy {correct / 359:.3f} is below the required 0.980 "
        f"({correct} of 359 correct)"
    )
    assert item.score == 0.0


@pytest.mark.slow  # imports Keras in the test process
def test_a_lambda_layer_is_refused_by_name(keras, heldout, tmp_path):
    # Saving works (Keras stores the lambda's bytecode); loading it would run that code.
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Lambda(lambda x: x * 2.0, name="double"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    result = evaluate(save(keras, model, tmp_path / "outbox"), heldout, tmp_path / "scratch")
    assert (result.predictions, result.code) == (None, "lambda")
    assert result.message == (
        "the model cannot be graded: its Lambda layer 'double' holds Python code, which the "
        "grader does not load (Keras safe mode); use built-in layers such as Rescaling, Reshape "
        "or Activation instead"
    )


@pytest.mark.slow
def test_a_lambda_calling_a_notebook_function_is_refused_by_name(keras, heldout, tmp_path):
    def brighten(x):
        return x * 2.0

    model = keras.Sequential(
        [keras.Input((784,)), keras.layers.Lambda(brighten), keras.layers.Dense(10)]
    )
    result = evaluate(save(keras, model, tmp_path / "outbox"), heldout, tmp_path / "scratch")
    assert result.code == "custom-code"
    assert result.message == (
        "the model cannot be graded: it uses the function 'brighten' defined in the notebook "
        "(in a Lambda layer or as an activation), which the grader does not load (Keras safe "
        "mode); use built-in layers and activations instead"
    )


@pytest.mark.slow  # imports Keras in the test process
def test_a_custom_layer_class_is_refused_by_name(keras, heldout, tmp_path):
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    Doubler.__module__ = "__main__"  # as when defined in a notebook
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), Doubler(), keras.layers.Dense(10)]
    )
    result = evaluate(save(keras, model, tmp_path / "outbox"), heldout, tmp_path / "scratch")
    assert result.code == "custom-code"
    assert result.message == (
        "the model cannot be graded: it uses the class 'Doubler' defined in the notebook, which "
        "the grader does not load (Keras safe mode); build the model from built-in keras.layers "
        "with keras.Sequential or the functional API"
    )


@pytest.mark.slow
def test_a_model_for_other_images_names_both_shapes(keras, heldout, tmp_path):
    model = save(keras, dense_model(keras, input_shape=(32, 32, 3)), tmp_path / "outbox")
    result = evaluate(model, heldout, tmp_path / "scratch")
    assert result.code == "input-shape"
    assert result.message.startswith(
        "the model expects 32x32x3 images; the held-out images are 28x28x1"
    )


@pytest.mark.slow
def test_a_model_with_too_few_classes_is_refused(keras, heldout, tmp_path):
    model = save(keras, dense_model(keras, classes=5), tmp_path / "outbox")
    result = evaluate(model, heldout, tmp_path / "scratch")
    assert (result.code, result.message) == (
        "classes",
        "the model outputs 5 classes; this data set has 10 (end the model with Dense(10))",
    )


def test_a_corrupt_model_file_is_refused_plainly(heldout, tmp_path):
    model = tmp_path / "outbox" / "acc.keras"
    model.parent.mkdir()
    model.write_bytes(np.random.default_rng(0).bytes(4096))
    result = evaluate(model, heldout, tmp_path / "scratch")
    assert (result.code, result.message) == (
        "file",
        "the model file is not a Keras .keras file (not a zip archive); save the model with "
        "keras.saving.save_model(model, 'model.keras')",
    )


@pytest.mark.slow
def test_a_model_that_takes_too_long_is_stopped(keras, trained, heldout, tmp_path):
    model = save(keras, trained, tmp_path / "outbox")
    result = evaluate(model, heldout, tmp_path / "scratch", timeout=1)
    assert (result.predictions, result.code) == (None, "timeout")
    assert (
        result.message == "the model took longer than 1 s to load and predict 359 held-out images"
    )
    assert result.duration_s < 10


def start_ahead(heldout: Path, folder: Path):
    evaluator = start_evaluator(
        images_path=heldout / "heldout-images.npy", scale=255.0, n_classes=10, workdir=folder
    )
    assert evaluator is not None and evaluator.alive()
    return evaluator


def same_evaluation(result: EvalOutcome, fresh: EvalOutcome) -> None:
    """Everything alike but the timings and how the evaluator was started."""
    assert (result.code, result.message) == (fresh.code, fresh.message)
    assert np.array_equal(result.predictions, fresh.predictions)
    started = {"timings", "prestarted", "ready_at_handover"}
    assert {k: v for k, v in result.details.items() if k not in started} == {
        k: v for k, v in fresh.details.items() if k not in started
    }


@pytest.mark.slow
def test_an_evaluator_started_ahead_makes_what_a_fresh_one_makes(fresh, heldout, tmp_path):
    model, alone = fresh
    ahead = start_ahead(heldout, tmp_path / "ahead")
    try:
        result = evaluate(model, heldout, tmp_path / "scratch", evaluator=ahead)
    finally:
        ahead.close()
    same_evaluation(result, alone)
    assert result.details["prestarted"] is True
    assert result.details["timings"]["import_s"] < 0.1  # Keras was imported before the model came
    assert ahead.process.returncode == 0  # it ended on its own, after its one model
    assert not ahead.workdir.exists()
    assert not (tmp_path / "scratch").exists()  # the model went to the evaluator's folder


@pytest.mark.slow
def test_an_evaluator_started_ahead_that_died_is_replaced_by_a_fresh_one(fresh, heldout, tmp_path):
    model, alone = fresh
    ahead = start_ahead(heldout, tmp_path / "ahead")
    os.killpg(ahead.process.pid, signal.SIGKILL)  # as the OOM killer would while it waits
    ahead.process.wait()
    try:
        result = evaluate(model, heldout, tmp_path / "scratch", evaluator=ahead)
    finally:
        ahead.close()
    same_evaluation(result, alone)
    assert result.details["prestarted"] is False
    assert not ahead.workdir.exists()


def test_an_evaluator_nobody_hands_a_model_is_stopped_and_its_folder_removed(heldout, tmp_path):
    ahead = start_ahead(heldout, tmp_path / "ahead")
    assert (tmp_path / "ahead" / "images.npy").read_bytes() == (
        heldout / "heldout-images.npy"
    ).read_bytes()
    ahead.close()
    assert ahead.process.returncode == -signal.SIGKILL
    assert not ahead.workdir.exists()
    ahead.close()  # twice is harmless


@pytest.mark.slow
def test_a_waiting_evaluator_imports_keras_then_needs_the_go(
    keras, trained, heldout, tmp_path, monkeypatch
):
    import sklearn  # noqa: F401  # serve() would hide it from a process that has not loaded it

    save(keras, trained, tmp_path)
    np.save(tmp_path / "images.npy", np.load(heldout / "heldout-images.npy"))
    monkeypatch.chdir(tmp_path)
    for key, value in QUIET_ENV.items():  # serve() sets them for the process it runs in
        monkeypatch.setenv(key, value)
    argv = ["--model", "acc.keras", "--images", "images.npy", "--out", "out", "--classes", "10"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert serve(["--wait", *argv]) == 0  # the end of its input: nobody needs it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.keras", "images.npy", "ready"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"go\n")))
    assert serve(["--wait", *argv]) == 0
    assert (tmp_path / "received").exists()
    assert json.loads((tmp_path / "out" / "status.json").read_text())["ok"] is True


AUDIT = """\
import os, runpy, sys

log = open(sys.argv[1], "a")

def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args:
        if isinstance(args[0], (str, bytes, os.PathLike)):
            log.write(f"{event} {os.path.abspath(os.fsdecode(args[0]))}\\n")
            log.flush()

sys.addaudithook(hook)
sys.argv = ["autograder.evaluate", *sys.argv[2:]]
runpy.run_module("autograder.evaluate", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_the_evaluator_never_opens_the_labels(keras, trained, heldout, tmp_path):
    script, log = tmp_path / "audit.py", tmp_path / "opened.txt"
    script.write_text(AUDIT)
    commands = []

    def wrapper(command: list[str], env=None) -> list[str]:
        commands.append(command)
        start = command.index("autograder.evaluate") + 1
        return [command[0], "-P", str(script), str(log), *command[start:]]

    model = save(keras, trained, tmp_path / "outbox")
    result = evaluate(model, heldout, tmp_path / "scratch", command_wrapper=wrapper)
    assert result.code == "ok", result.message
    assert not any(str(heldout) in arg for arg in commands[0])
    opened = log.read_text().splitlines()
    scratch = tmp_path / "scratch"
    assert f"open {scratch}/model.keras" in opened and f"open {scratch}/images.npy" in opened
    course = heldout.parent.parent  # .autograder/: labels, test labels, gradebook state
    assert not [line for line in opened if str(course) in line or "heldout-labels" in line]


# --- the collection snippet in a real kernel -------------------------------------------------

SETUP = """\
import keras
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
text = "not a model"
history = keras.callbacks.History()

class Tagged(keras.layers.Layer):
    def __init__(self, tag, **kwargs):
        super().__init__(**kwargs)
        self.tag = tag
    def call(self, x):
        return x

unsaveable = keras.Sequential([keras.Input((784,)), Tagged(object()), keras.layers.Dense(10)])
"""
SHADOW = 'keras = None\nopen = None\njson = "json"\nprint = None\nisinstance = len = dict = None'


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    """One kernel: collect before and after the notebook shadowed names, and the failures."""
    from autograder.execute import ExecutionLimits, execute_notebook

    workdir = tmp_path_factory.mktemp("kernel")
    leftovers = "print(sorted(name for name in globals() if 'autograder' in name))"
    cells = [SETUP, collect_snippet("model", "outbox/plain.keras"), leftovers, SHADOW]
    snippets = [
        collect_snippet(variable, f"outbox/{name}.keras")
        for variable, name in [
            ("model", "shadowed"),
            ("absent", "absent"),
            ("text", "text"),
            ("history", "history"),
            ("unsaveable", "unsaveable"),
        ]
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    limits = ExecutionLimits(timeout_cell=120, timeout_total=300)
    result = execute_notebook(nb, workdir=workdir, limits=limits, collect=snippets)
    assert result.status == "graded", result.message
    return workdir, result


def status(workdir: Path, name: str) -> dict:
    return json.loads(collect_status_path(workdir / "outbox" / f"{name}.keras").read_text())


@pytest.mark.slow
def test_the_kernel_saves_the_model_even_after_names_were_shadowed(kernel_run):
    workdir, result = kernel_run
    for name in ("plain", "shadowed"):
        assert (workdir / "outbox" / f"{name}.keras").is_file()
        assert status(workdir, name) == {
            "ok": True,
            "reason": "ok",
            "message": f"saved 'model' (Sequential, 7,850 parameters) to outbox/{name}.keras",
            "variable": "model",
        }
    printed = "".join(o.get("text", "") for o in result.collected[0])
    assert (
        printed
        == "autograder: saved 'model' (Sequential, 7,850 parameters) to outbox/shadowed.keras\n"
    )
    # Nothing of the snippet is left in the notebook's namespace.
    assert result.nb.cells[2].outputs[0]["text"] == "[]\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "reason", "message"),
    [
        (
            "absent",
            "missing-model",
            "no variable named 'absent' in the notebook; assign your trained keras.Model to "
            "'absent'",
        ),
        ("text", "not-a-model", "the variable 'text' is a str, not a keras.Model"),
        (
            "history",
            "not-a-model",
            "the variable 'history' is a History, not a keras.Model; model.fit returns a "
            "History: keep the model itself in 'history'",
        ),
        (
            "unsaveable",
            "save-failed",
            "the model could not be saved: NotImplementedError: Object Tagged was created by "
            "passing non-serializable argument values in `__init__()`, and therefore the object "
            "must override `get_config()` in order to be serializable. Please implement "
            "`get_config()`.",
        ),
    ],
)
def test_the_kernel_says_why_there_is_no_model(kernel_run, name, reason, message):
    workdir, _ = kernel_run
    assert not (workdir / "outbox" / f"{name}.keras").exists()
    assert status(workdir, name)["reason"] == reason
    assert status(workdir, name)["message"] == message
    assert read_collect_status(workdir / "outbox" / f"{name}.keras") == {
        "ok": False,
        "reason": reason,
        "message": message,
    }


@pytest.mark.slow
def test_collect_evaluate_score_end_to_end(kernel_run, heldout, tmp_path):
    workdir, _ = kernel_run
    labels = np.load(heldout / "heldout-labels.npy")
    check = AccuracyCheck(id="acc", points=2.0, threshold=0.5)
    missing = evaluate(workdir / "outbox" / "absent.keras", heldout, tmp_path / "a")
    item = accuracy_item(check, missing, labels, DIGIT_CLASSES)
    assert item.message.startswith("no variable named 'absent' in the notebook")
    result = evaluate(workdir / "outbox" / "shadowed.keras", heldout, tmp_path / "b")
    item = accuracy_item(check, result, labels, DIGIT_CLASSES)
    assert result.code == "ok" and item.message.startswith("held-out accuracy ")
    assert item.details["total"] == 359


def test_the_evaluator_imports_without_tensorflow():
    code = "import sys, autograder.evaluate; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
