"""Step 4, check: held-out accuracy of the collected model, measured out of the student's reach.

Three places, three modules:

1. **The kernel** (untrusted): :mod:`autograder.collect` saves the model variable to the outbox,
   or says why it could not.
2. **The evaluator** (``python -m autograder.evaluate``, implemented in
   :mod:`autograder.predict`): a separate process, sandboxed like the kernel, given only the
   model file and the images, never the labels. It loads the model in Keras safe mode and
   writes the predicted class of each image.
3. **The grader** (here): :func:`evaluate_model` runs the evaluator with a timeout and checks
   what it returns; :func:`accuracy_item` compares the predictions with the labels, which only
   this process holds, and scores the check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .collect import (
    COLLECT_REASONS,
    collect_snippet,
    collect_status_path,
    read_collect_status,
    read_regular_file,
)
from .config import AccuracyCheck
from .predict import DEFAULT_BATCH_SIZE, GRADER_CODES, MAX_MODEL_BYTES, QUIET_ENV
from .results import ItemResult

__all__ = [
    "EvalOutcome",
    "accuracy_item",
    "collect_snippet",
    "collect_status_path",
    "evaluate_model",
    "read_collect_status",
]

# Variables passed from the grader's environment to the evaluator; everything else stays out.
_PASS_ENV = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH")
_PASS_ENV_PREFIXES = ("CUDA_", "KERAS_", "TF_", "XLA_", "OMP_", "MKL_", "NVIDIA_")


@dataclasses.dataclass(frozen=True)
class EvalOutcome:
    """What the evaluator made of a collected model: predictions, or why there are none."""

    #: Predicted class index of each held-out image (int32), None when the model failed.
    predictions: np.ndarray | None
    #: One sentence for the participant: what was evaluated, or what is wrong with the model.
    message: str
    #: Wall time of the whole evaluation (process start, Keras import, load, predict).
    duration_s: float
    #: "ok", or what failed: "missing-model", "not-a-model", "save-failed", "file", "lambda",
    #: "custom-code", "load", "input-shape", "output-shape", "classes", "timeout", "crashed",
    #: or one of GRADER_CODES.
    code: str = "ok"
    #: Shapes, parameter count, timings of the evaluator's steps, log tail on a crash.
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def grader_problem(self) -> bool:
        """True when the grader failed, not the submission."""
        return self.code in GRADER_CODES


def _evaluator_env(workdir: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k in _PASS_ENV or k.startswith(_PASS_ENV_PREFIXES)
    }
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    # The evaluator must import this very package, installed or not.
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    # Keras writes ~/.keras/keras.json on import: keep it in the scratch folder.
    env.update(
        {"HOME": str(workdir), "KERAS_HOME": str(workdir / ".keras"), "TMPDIR": str(workdir)}
    )
    env.update(extra or {})
    return env


def _copy_model(source: Path, dest: Path) -> tuple[str, str] | None:
    """Copy the collected model into the scratch folder; (code, message) when it cannot be."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return _missing_model_message(source)
    except OSError as exc:
        if source.is_symlink():
            return "file", f"{source.name} is a symbolic link, not a saved model"
        return "file", f"{source.name} could not be read ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "file", f"{source.name} is not a regular file"
        if info.st_size > MAX_MODEL_BYTES:
            return "file", (
                f"the saved model is {info.st_size / 2**20:,.0f} MiB, more than the "
                f"{MAX_MODEL_BYTES / 2**20:,.0f} MiB the grader accepts"
            )
        with open(dest, "wb") as out:
            shutil.copyfileobj(fh, out, 1024 * 1024)
    return None


def _missing_model_message(model_path: Path) -> tuple[str, str]:
    status = read_collect_status(model_path)
    if status is not None and not status["ok"]:
        # The kernel wrote this file: its reason must not pass for a grader problem.
        reason = status["reason"] if status["reason"] in COLLECT_REASONS else "missing-model"
        return reason, status["message"]
    return "missing-model", (
        "no model was collected from the notebook (the collection step did not run to the end)"
    )


def _crash_message(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    hint = ", often a sign of running out of memory" if name == "SIGKILL" else ""
    return f"the model could not be evaluated: the evaluator was stopped by {name}{hint}"


def evaluate_model(
    *,
    model_path: Path,
    images_path: Path,
    scale: float,
    n_classes: int,
    timeout: float,
    workdir: Path,
    command_wrapper: Callable[[list[str]], list[str]] | None = None,
    env: Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> EvalOutcome:
    """Run the evaluator on a collected model in a separate process; never raises for the model.

    The model and the images are first copied into ``workdir`` (the model without following
    links, size-bounded), so the evaluator's command names only files in ``workdir`` and
    nothing else of the grader's: a ``command_wrapper`` (the sandbox) needs to make ``workdir``
    writable and the Python environment readable, nothing more. ``env`` is added to a minimal
    environment (e.g. ``CUDA_VISIBLE_DEVICES``). The labels are not an argument: the evaluator
    cannot see them.
    """
    started = time.monotonic()

    def outcome(code: str, message: str, **details: Any) -> EvalOutcome:
        return EvalOutcome(None, message, time.monotonic() - started, code, details)

    workdir.mkdir(parents=True, exist_ok=True)
    model_copy, images_copy, out = workdir / "model.keras", workdir / "images.npy", workdir / "out"
    model_copy.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    problem = _copy_model(model_path, model_copy)
    if problem is not None:
        return outcome(*problem)
    try:
        shutil.copyfile(images_path, images_copy)
        n_images = len(np.load(images_copy, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        return outcome("images", f"the held-out images {images_path} could not be read ({exc})")

    command = [
        sys.executable,
        "-P",  # do not put the working folder on sys.path
        "-m",
        "autograder.evaluate",
        "--model",
        str(model_copy),
        "--images",
        str(images_copy),
        "--out",
        str(out),
        "--scale",
        repr(float(scale)),
        "--batch-size",
        str(batch_size),
        "--classes",
        str(n_classes),
    ]
    if command_wrapper is not None:
        command = command_wrapper(command)
    log_path = workdir / "evaluator.log"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=_evaluator_env(workdir, env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group: a timeout kills all of it
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it may have just ended
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return outcome(
                    "timeout",
                    f"the model took longer than {timeout:g} s to load and predict "
                    f"{n_images:,} held-out images",
                )
    except OSError as exc:
        return outcome("grader", f"the evaluator could not be started ({exc})")
    log_tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace")

    raw = read_regular_file(out / "status.json", 1024 * 1024)
    status: Any = None
    if raw is not None:
        try:
            status = json.loads(raw)
        except ValueError:
            status = None
    if not isinstance(status, dict):
        # Killed (out of memory, or the model crashed the backend): -N from Popen, or 128+N
        # from a wrapper such as bwrap or a shell, which report a killed child that way.
        signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
        if signum:
            return outcome("crashed", _crash_message(signum), log=log_tail)
        # It stopped before it could write a status (not importable, bad arguments): ours.
        last = log_tail.strip().splitlines()[-1:] or [f"exit status {returncode}, no status"]
        return outcome("grader", f"the evaluator could not run: {last[0]}", log=log_tail)
    details = {k: v for k, v in status.items() if k not in {"ok", "code", "message"}}
    if not status.get("ok"):
        code = str(status.get("code", "crashed"))
        return outcome(code, str(status.get("message", "")), log=log_tail, **details)

    try:
        predictions = np.load(out / "predictions.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return outcome("grader", f"the evaluator's predictions could not be read ({exc})")
    if (
        predictions.shape != (n_images,)
        or not np.issubdtype(predictions.dtype, np.integer)
        or (n_images and (predictions.min() < 0 or predictions.max() >= n_classes))
    ):
        return outcome(
            "grader",
            f"the evaluator returned {predictions.shape} predictions of type {predictions.dtype} "
            f"for {n_images} images and {n_classes} classes",
        )
    return EvalOutcome(
        predictions.astype(np.int32),
        str(status.get("message", "")),
        time.monotonic() - started,
        "ok",
        details,
    )


# --- scoring: the predictions against the labels, which only this process holds ---


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


if __name__ == "__main__":
    from .predict import main

    sys.exit(main())
