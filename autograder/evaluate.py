"""Step 4, check: held-out accuracy of the collected model, measured out of the student's reach.

Three places, three modules:

1. **The kernel** (untrusted): :mod:`autograder.collect` saves the model variable to the outbox,
   or says why it could not.
2. **The evaluator** (``python -m autograder.evaluate``, implemented in
   :mod:`autograder.predict`): a separate process, sandboxed like the kernel, given only the
   model file and the images, never the labels. It loads the model in Keras safe mode and
   writes the predicted class of each image.
3. **The grader** (here): :func:`evaluate_model` runs the evaluator with a timeout and checks
   what it returns, in a process started then or ahead (:func:`start_evaluator`, while the
   notebook runs: see :mod:`autograder.prestart`); :mod:`autograder.accuracy` compares the
   predictions with the labels, which only the grader holds, and scores the check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
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
from .predict import DEFAULT_BATCH_SIZE, GRADER_CODES, MAX_MODEL_BYTES, QUIET_ENV

__all__ = [
    "EvalOutcome",
    "Evaluator",
    "collect_snippet",
    "collect_status_path",
    "evaluate_model",
    "read_collect_status",
    "start_evaluator",
]

#: The files of an evaluator's folder: the model's copy, the images' copy, and the mark a
#: prestarted evaluator leaves once it has read :data:`HANDOVER` (so a crash after it is the
#: model's, one before it the grader's).
MODEL_FILE, IMAGES_FILE, RECEIVED = "model.keras", "images.npy", "received"
#: The mark a prestarted evaluator leaves once Keras is imported (for the timings only).
READY = "ready"
#: What a prestarted evaluator waits for on its stdin: the model is in place. End of file
#: instead: it is not needed, and exits.
HANDOVER = b"go\n"

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


def _command(workdir: Path, scale: float, batch_size: int, n_classes: int) -> list[str]:
    """The evaluator's command line: every path in it is a file of ``workdir``."""
    return [
        sys.executable,
        "-P",  # do not put the working folder on sys.path
        "-m",
        "autograder.evaluate",
        "--model",
        str(workdir / MODEL_FILE),
        "--images",
        str(workdir / IMAGES_FILE),
        "--out",
        str(workdir / "out"),
        "--scale",
        repr(float(scale)),
        "--batch-size",
        str(batch_size),
        "--classes",
        str(n_classes),
    ]


def _copy_images(images_path: Path, workdir: Path) -> int | tuple[str, str]:
    """Copy the held-out images into ``workdir``: their number, or (code, message)."""
    try:
        shutil.copyfile(images_path, workdir / IMAGES_FILE)
        return len(np.load(workdir / IMAGES_FILE, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        return "images", f"the held-out images {images_path} could not be read ({exc})"


def _launch(
    command: list[str],
    workdir: Path,
    environment: Mapping[str, str],
    command_wrapper: Callable[..., list[str]] | None,
    *,
    wait: bool,
) -> subprocess.Popen[bytes]:
    """Start the evaluator (``wait``: it imports Keras, then waits for :data:`HANDOVER`)."""
    if wait:
        command = [*command[:4], "--wait", *command[4:]]
    if command_wrapper is not None:
        # A sandbox starts its command from a clean environment: it gets the variables too.
        command = command_wrapper(command, env=environment)
    with open(workdir / "evaluator.log", "wb") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=dict(environment),
            stdin=subprocess.PIPE if wait else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: a timeout kills all of it
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have just ended
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclasses.dataclass
class Evaluator:
    """An evaluator process started ahead of its model (see :mod:`autograder.prestart`).

    Started in a scratch folder of its own, the images already there, with the command line
    (scale, classes) of one check: it imports Keras and its backend, then waits, with nothing
    of any submission loaded, until :func:`evaluate_model` copies the model in and says go.
    It serves one model; :meth:`close` stops it (if still running) and removes its folder.
    """

    #: What it was started with; whoever hands it a model compares (see prestart).
    key: Any
    workdir: Path
    process: subprocess.Popen[bytes]
    n_images: int
    #: ``time.monotonic()`` when it was started.
    started: float

    def alive(self) -> bool:
        """Still running (it ends only once it has a model, or when stopped)."""
        return self.process.poll() is None

    def close(self) -> None:
        """Stop it, whatever it is doing, and remove its folder."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self.process.poll() is None:
            _kill(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_evaluator(
    *,
    images_path: Path,
    scale: float,
    n_classes: int,
    workdir: Path,
    key: Any = None,
    command_wrapper: Callable[..., list[str]] | None = None,
    env: Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Evaluator | None:
    """Start an evaluator in ``workdir`` (a new, empty folder it then owns) that imports
    Keras now and evaluates the model it is handed later; None when it cannot be started
    (the images unreadable, the sandbox refused): the check then starts its own and says why.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    n_images = _copy_images(images_path, workdir)
    if not isinstance(n_images, int):
        return None
    command = _command(workdir, scale, batch_size, n_classes)
    try:
        proc = _launch(command, workdir, _evaluator_env(workdir, env), command_wrapper, wait=True)
    except Exception:  # the sandbox refused, or no process: the check tells why
        return None
    return Evaluator(key, workdir, proc, n_images, time.monotonic())


def _hand_over(evaluator: Evaluator) -> bool:
    """Tell a waiting evaluator its model is in place; False when it is gone already."""
    stdin = evaluator.process.stdin
    if stdin is None or not evaluator.alive():
        return False
    try:
        stdin.write(HANDOVER)
        stdin.close()
    except OSError:  # it died just now
        return False
    return True


def evaluate_model(
    *,
    model_path: Path,
    images_path: Path,
    scale: float,
    n_classes: int,
    timeout: float,
    workdir: Path,
    command_wrapper: Callable[..., list[str]] | None = None,
    env: Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    evaluator: Evaluator | None = None,
) -> EvalOutcome:
    """Run the evaluator on a collected model in a separate process; never raises for the model.

    The model and the images are first copied into ``workdir`` (the model without following
    links, size-bounded), so the evaluator's command names only files in ``workdir`` and
    nothing else of the grader's: a ``command_wrapper`` (the sandbox) needs to make ``workdir``
    writable and the Python environment readable, nothing more. ``env`` is added to a minimal
    environment (e.g. ``CUDA_VISIBLE_DEVICES``). The labels are not an argument: the evaluator
    cannot see them.

    ``evaluator``: one started ahead for this check (:func:`start_evaluator`, with the same
    images, scale, classes, wrapper and environment); the model goes into its folder instead
    and the rest is the same. One that is gone before it has the model is replaced by a new
    one here. The caller closes it.
    """
    started = time.monotonic()
    fresh = functools.partial(
        evaluate_model,
        model_path=model_path,
        images_path=images_path,
        scale=scale,
        n_classes=n_classes,
        timeout=timeout,
        workdir=workdir,
        command_wrapper=command_wrapper,
        env=env,
        batch_size=batch_size,
    )

    def outcome(code: str, message: str, **details: Any) -> EvalOutcome:
        return EvalOutcome(None, message, time.monotonic() - started, code, details)

    if evaluator is not None and not evaluator.alive():
        return fresh()  # it died while it waited: not the model's doing
    if evaluator is not None:
        workdir = evaluator.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    model_copy, out = workdir / MODEL_FILE, workdir / "out"
    model_copy.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    problem = _copy_model(model_path, model_copy)
    if problem is not None:
        return outcome(*problem)
    if evaluator is not None:
        os.chmod(model_copy, 0o644)  # copied after the sandbox user was given the folder
        n_images = evaluator.n_images
        ready = (workdir / READY).exists()  # Keras imported before it was needed
        if not _hand_over(evaluator):
            return fresh()  # gone just now, before it had the model
        proc = evaluator.process
    else:
        copied = _copy_images(images_path, workdir)
        if not isinstance(copied, int):
            return outcome(*copied)
        n_images = copied
        command = _command(workdir, scale, batch_size, n_classes)
        try:
            proc = _launch(
                command, workdir, _evaluator_env(workdir, env), command_wrapper, wait=False
            )
        except OSError as exc:
            return outcome("grader", f"the evaluator could not be started ({exc})")
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return outcome(
            "timeout",
            f"the model took longer than {timeout:g} s to load and predict "
            f"{n_images:,} held-out images",
        )
    log_tail = (workdir / "evaluator.log").read_bytes()[-4000:].decode("utf-8", "replace")
    prestarted: dict[str, Any] = {"prestarted": evaluator is not None}
    if evaluator is not None:
        prestarted["ready_at_handover"] = ready

    raw = read_regular_file(out / "status.json", 1024 * 1024)
    status: Any = None
    if raw is not None:
        try:
            status = json.loads(raw)
        except ValueError:
            status = None
    if not isinstance(status, dict):
        if evaluator is not None and not (workdir / RECEIVED).exists():
            return fresh()  # it ended before it read that its model was there
        # Killed (out of memory, or the model crashed the backend): -N from Popen, or 128+N
        # from a wrapper such as bwrap or a shell, which report a killed child that way.
        signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
        if signum:
            return outcome("crashed", _crash_message(signum), log=log_tail, **prestarted)
        # It stopped before it could write a status (not importable, bad arguments): ours.
        last = log_tail.strip().splitlines()[-1:] or [f"exit status {returncode}, no status"]
        return outcome(
            "grader", f"the evaluator could not run: {last[0]}", log=log_tail, **prestarted
        )
    details = {k: v for k, v in status.items() if k not in {"ok", "code", "message"}}
    details.update(prestarted)
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


# --- the evaluator process ---------------------------------------------------------------------


def serve(argv: Sequence[str]) -> int:
    """The evaluator process, ``python -m autograder.evaluate [--wait] ARGUMENTS`` (the
    arguments are :func:`autograder.predict.main`'s). With ``--wait``, Keras and its backend
    are imported first; then it waits for :data:`HANDOVER` on stdin, leaves :data:`RECEIVED`
    in its working folder and goes on; at end of file instead it exits, having done nothing.
    """
    # Keras' scikit-learn wrapper is of no use here, and importing scikit-learn is a fifth of
    # importing Keras (about 0.9 s on 2 cores); Keras goes on without it when it is absent.
    sys.modules.setdefault("sklearn", None)  # type: ignore[arg-type]
    args = list(argv)
    if args[:1] == ["--wait"]:
        del args[0]
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        import logging
        import warnings

        warnings.simplefilter("ignore")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        importlib.import_module("keras")  # and its backend, which it imports
        Path(READY).touch()
        if sys.stdin.buffer.readline(len(HANDOVER)) != HANDOVER:
            return 0
        Path(RECEIVED).touch()
    from .predict import main

    return main(args)


def _exit_now(code: int) -> None:
    """End the evaluator once its status is written, without the interpreter's teardown: with
    TensorFlow loaded that takes longer (about 2 s on 2 cores) than loading and predicting."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(serve(sys.argv[1:]))
