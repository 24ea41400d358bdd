"""The evaluator process (``python -m autograder.evaluate``): predict held-out images.

It runs apart from the kernel and from the grader, sandboxed like the kernel, and reads only
the two files it is given, a ``.keras`` model and an ``.npy`` of images; it has no option for
labels. Before Keras is imported it reads the archive's ``config.json`` and refuses, naming
it, every class or function not on :mod:`autograder.modelallow`'s allowlist (Lambda layers,
the notebook's own code, Keras objects a model is not built from); the rest is loaded with
``keras.saving.load_model(..., safe_mode=True, compile=False)``, so no student code runs. The
images are fitted to the model's input shape, predicted in batches, and the predicted class of
each image is written to ``OUT/predictions.npy`` with ``OUT/status.json`` beside it. Every
failure ends in a status with a plain message and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .modelallow import Refusal, refusal, unlisted_message

DEFAULT_BATCH_SIZE = 256
#: A workshop model is megabytes; ImageNet-sized transfer models stay well under this.
MAX_MODEL_BYTES = 2 * 1024**3
#: config.json of a real model is kilobytes; this bounds what the evaluator parses.
MAX_CONFIG_BYTES = 16 * 1024**2
#: The oldest Keras whose safe mode the evaluator relies on (3.15.0 lacks 3.15.1's fixes).
MIN_KERAS = (3, 15, 1)

#: Status codes that mean the grader, not the submission, failed.
GRADER_CODES = frozenset({"grader", "images"})

# Exit statuses: 0 predictions written; 1 the model was refused (status says why);
# 2 bad command line (argparse); 3 the evaluator itself failed (status says how).
EXIT_OK, EXIT_REFUSED, EXIT_FAILED = 0, 1, 3

#: Set before TensorFlow is imported: a quiet stderr, and a GPU shared with the kernels on it.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # no CUDA / oneDNN / cpu_feature_guard banners
    "ABSL_MIN_LOG_LEVEL": "3",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "PYTHONWARNINGS": "ignore",
}


class _Refused(Exception):
    """The model (or an input) cannot be evaluated; ``message`` says why, for a participant."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _shape_text(dims: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)


def _names(items: Sequence[str]) -> str:
    quoted = [repr(i) for i in dict.fromkeys(items)]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _walk(node: object, layer: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every serialized object in a Keras config, with the name of the layer it sits in."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, layer)
    elif isinstance(node, dict):
        inner = node.get("config")
        if isinstance(node.get("class_name"), str):
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                layer = inner["name"]
            yield node, layer
        for value in node.values():
            yield from _walk(value, layer)


def scan_model_config(config: object) -> None:
    """Refuse, before Keras is imported, every part of the model that is not on the
    allowlist of :mod:`autograder.modelallow`, naming it.

    Lambda layers holding Python code, classes and functions of the notebook or of another
    package, and Keras objects that are not among the layers, models and training objects a
    model is built from (``TFSMLayer``, ``keras.src`` internals, ``keras.utils``...). The
    model's own ``compile_config`` is not read: the evaluator loads with ``compile=False``,
    which discards it (a nested model's is loaded, so it is read).
    """
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k != "compile_config"}
    lambdas: list[str] = []
    foreign: list[Refusal] = []
    unlisted: list[Refusal] = []
    for obj, layer in _walk(config, ""):
        refused = refusal(obj)
        if refused is None:
            continue
        if refused.kind == "lambda":
            lambdas.append(layer)
        else:
            (unlisted if refused.keras else foreign).append(refused)
    if lambdas:
        one = len(set(lambdas)) == 1
        what = f"Lambda layer{'' if one else 's'} {_names(lambdas)} hold{'s' if one else ''}"
        raise _Refused(
            "lambda",
            f"the model cannot be graded: its {what} Python code, which the grader does not "
            "load (Keras safe mode); use built-in layers such as Rescaling, Reshape or "
            "Activation instead",
        )
    classes = [r for r in foreign if r.kind == "class"]
    if classes:
        where = {r.module for r in classes}
        if where <= {None, "__main__"}:  # Keras writes None for classes of __main__
            origin = "defined in the notebook"
        elif len(where) == 1:
            origin = f"from the module {where.pop()!r}"
        else:
            origin = "defined outside Keras"
        raise _Refused("custom-code", _class_message([r.name for r in classes], origin))
    functions = [r for r in foreign if r.kind == "function"]
    if functions:
        modules = {r.module for r in functions} - {None}
        origin = f"from the module {modules.pop()!r}" if len(modules) == 1 else ""
        raise _Refused("custom-code", _function_message([r.name for r in functions], origin))
    if unlisted:
        raise _Refused("custom-code", unlisted_message([r.qualified for r in unlisted]))


def _class_message(classes: Sequence[str], origin: str) -> str:
    noun = "class" if len(set(classes)) == 1 else "classes"
    return (
        f"the model cannot be graded: it uses the {noun} {_names(classes)} {origin}, which the "
        "grader does not load (Keras safe mode); build the model from built-in keras.layers "
        "with keras.Sequential or the functional API"
    )


def _function_message(functions: Sequence[str], origin: str = "") -> str:
    noun = "function" if len(set(functions)) == 1 else "functions"
    origin = origin or "defined in the notebook (in a Lambda layer or as an activation)"
    return (
        f"the model cannot be graded: it uses the {noun} {_names(functions)} {origin}, which "
        "the grader does not load (Keras safe mode); use built-in layers and activations "
        "instead"
    )


def _read_model_config(model: Path) -> object:
    """The parsed config.json of a ``.keras`` file; refusals say what is wrong with the file."""
    if model.suffix != ".keras":
        # Other formats (HDF5, SavedModel) have loaders that safe mode does not cover.
        raise _Refused("file", f"the model file must be a .keras file, not {model.name!r}")
    try:
        fd = os.open(model, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise _Refused("missing-model", f"the model file {model.name} does not exist") from None
    except OSError as exc:
        raise _Refused("file", f"the model file could not be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused("file", "the model file is not a regular file")
        if not zipfile.is_zipfile(fh):
            raise _Refused(
                "file",
                "the model file is not a Keras .keras file (not a zip archive); save the "
                "model with keras.saving.save_model(model, 'model.keras')",
            )
        try:
            with zipfile.ZipFile(fh) as archive:
                if sum(i.file_size for i in archive.infolist()) > 2 * MAX_MODEL_BYTES:
                    raise _Refused("file", "the model file unpacks to an implausible size")
                info = archive.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    raise _Refused("file", "the model file's config.json is implausibly large")
                return json.loads(archive.read(info).decode("utf-8"))
        except KeyError:
            raise _Refused(
                "file", "the model file has no config.json: it is not a Keras model"
            ) from None
        except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, OSError) as exc:
            raise _Refused("file", f"the model file is damaged ({exc})") from None


def check_keras_version(version: str) -> None:
    """Refuse, as a grader problem, a Keras older than :data:`MIN_KERAS`."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    if tuple(parts) < MIN_KERAS:
        wanted = ".".join(map(str, MIN_KERAS))
        raise _Refused(
            "grader",
            f"the grader's Keras is {version}, older than {wanted}, whose safe mode the "
            f"evaluator relies on; upgrade it: pip install 'keras>={wanted},<4'",
        )


def _first_paragraph(exc: BaseException) -> str:
    """``Type: first paragraph of the message``, on one line and bounded (Keras' are long)."""
    text = " ".join(str(exc).strip().split("\n\n")[0].split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_error(exc: Exception) -> _Refused:
    """A load failure in a participant's words; unknown failures keep Keras' first sentence."""
    text = str(exc)
    match = re.search(r"Could not locate function '([^']+)'", text)
    if match:
        return _Refused("custom-code", _function_message([match.group(1).split(">")[-1]]))
    match = re.search(r"Could not locate class '([^']+)'", text)
    if match:
        return _Refused("custom-code", _class_message([match.group(1)], "defined in the notebook"))
    if "lambda" in text.lower() and "safe_mode" in text:
        return _Refused(
            "lambda",
            "the model cannot be graded: it holds Python code in a Lambda layer, which the "
            "grader does not load (Keras safe mode); use built-in layers instead",
        )
    return _Refused("load", f"the model file could not be loaded: {_first_paragraph(exc)}")


def _load_images(path: Path) -> np.ndarray:
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _Refused("images", f"the held-out images {path} could not be read ({exc})") from None
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or len(images) == 0 or not np.issubdtype(images.dtype, np.number):
        raise _Refused(
            "images",
            f"the held-out images {path} have shape {images.shape} ({images.dtype}); "
            "expected N x height x width [x channels] numbers; prepare the data set again",
        )
    return images


def input_layouts(image_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Shapes one image (height, width, channels) can be given in, most usual first."""
    h, w, c = image_shape
    layouts: list[tuple[int, ...]] = [(h, w, c)]
    if c == 1:
        layouts.append((h, w))
    layouts += [(h * w * c,), (c, h, w)]
    return layouts


def fit_images(images: np.ndarray, model_input: Sequence[int | None]) -> np.ndarray:
    """``images`` (N x H x W x C) reshaped to the model's input shape (batch dim first).

    Accepted: H x W x C, H x W (one channel), H*W*C values, C x H x W, any dim None.
    """
    wanted = tuple(model_input[1:])
    for layout in input_layouts(images.shape[1:]):
        if len(layout) == len(wanted) and all(
            m is None or m == d for m, d in zip(wanted, layout, strict=True)
        ):
            return images.reshape((len(images), *layout))
    held = _shape_text(images.shape[1:])
    if len(wanted) == 1:
        expects = f"flat inputs of {_shape_text(wanted)} values"
        held += f" ({int(np.prod(images.shape[1:]))} values)"
    else:
        expects = f"{_shape_text(wanted)} images"
    raise _Refused(
        "input-shape",
        f"the model expects {expects}; the held-out images are {held} (do any resizing or "
        "channel change inside the model, e.g. with keras.layers.Resizing)",
    )


def class_scores(output: object, batch: int) -> np.ndarray:
    """The model's output for a batch as a (batch, k) array; refuses other shapes."""
    if isinstance(output, dict) and len(output) == 1:
        output = next(iter(output.values()))
    if isinstance(output, (list, tuple)) and len(output) == 1:
        output = output[0]
    if isinstance(output, (dict, list, tuple)):
        raise _Refused(
            "output-shape",
            f"the model has {len(output)} outputs; the check needs one output of class scores",
        )
    scores = np.asarray(output)
    if scores.ndim == 0 or scores.shape[0] != batch:
        raise _Refused(
            "output-shape",
            f"the model returned an output of shape {scores.shape} for {batch} images",
        )
    if scores.ndim == 1:
        scores = scores[:, np.newaxis]
    elif scores.ndim > 2 and all(d == 1 for d in scores.shape[1:-1]):
        scores = scores.reshape(batch, scores.shape[-1])  # e.g. (N, 1, 1, 10) from a conv head
    if scores.ndim != 2:
        raise _Refused(
            "output-shape",
            f"the model outputs a {_shape_text(scores.shape[1:])} array for each image; a "
            "classifier outputs one score per class: add Flatten() or "
            "GlobalAveragePooling2D() before the last Dense layer",
        )
    return scores


def check_classes(n_outputs: int, n_classes: int | None) -> None:
    """Refuse a model whose number of outputs does not match the data set's classes."""
    if n_classes is None or n_outputs == n_classes or (n_outputs == 1 and n_classes == 2):
        return
    if n_outputs == 1:
        message = f"the model outputs 1 value per image; this data set has {n_classes} classes"
    else:
        message = f"the model outputs {n_outputs} classes; this data set has {n_classes}"
    raise _Refused("classes", f"{message} (end the model with Dense({n_classes}))")


def predicted_classes(scores: np.ndarray) -> np.ndarray:
    """Class index per row: argmax, or for one output a threshold (0.5 on [0, 1], else 0)."""
    if scores.shape[1] == 1:
        column = scores[:, 0]
        finite = column[np.isfinite(column)]
        cut = 0.5 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 0.0
        return (column > cut).astype(np.int32)
    return np.argmax(scores, axis=1).astype(np.int32)


def _quiet() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def run_evaluator(
    *,
    model: Path,
    images: Path,
    out: Path,
    scale: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """Predict ``images`` with the model in ``model``; write ``out/predictions.npy``.

    Returns the status (also what :func:`main` writes to ``out/status.json``). Raises
    ``_Refused`` for a model that cannot be evaluated. Keras is imported only here.
    """
    timings: dict[str, float] = {}
    pixels = _load_images(images)
    scan_model_config(_read_model_config(model))

    _quiet()
    started = time.perf_counter()
    import keras

    timings["import_s"] = time.perf_counter() - started
    check_keras_version(keras.__version__)
    started = time.perf_counter()
    try:
        net = keras.saving.load_model(model, safe_mode=True, compile=False)
    except Exception as exc:
        raise _load_error(exc) from None
    timings["load_s"] = time.perf_counter() - started
    if not isinstance(net, keras.Model):
        raise _Refused("load", f"the model file holds a {type(net).__name__}, not a keras.Model")
    try:
        inputs = list(net.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise _Refused(
            "input-shape",
            "the model was never built, so its input shape is unknown; start it with "
            f"keras.Input(shape={tuple(pixels.shape[1:])}) and train it",
        )
    if len(inputs) != 1:
        raise _Refused(
            "input-shape", f"the model has {len(inputs)} inputs; the check feeds it images only"
        )
    input_shape = tuple(inputs[0].shape)
    x = fit_images(pixels, input_shape)

    started = time.perf_counter()
    chunks: list[np.ndarray] = []
    nonfinite = 0
    for start in range(0, len(x), batch_size):
        batch = (x[start : start + batch_size].astype(np.float32)) / np.float32(scale)
        scores = class_scores(net.predict_on_batch(batch), len(batch))
        if start == 0:
            n_outputs = scores.shape[1]
            check_classes(n_outputs, n_classes)
        elif scores.shape[1] != n_outputs:
            raise _Refused("output-shape", "the model's number of outputs changed between batches")
        nonfinite += int(np.count_nonzero(~np.isfinite(scores).all(axis=1)))
        chunks.append(predicted_classes(scores))
    timings["predict_s"] = time.perf_counter() - started
    predictions = np.concatenate(chunks)

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.npy.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, predictions, allow_pickle=False)
    os.replace(tmp, out / "predictions.npy")
    return {
        "ok": True,
        "code": "ok",
        "message": (
            f"{type(net).__name__} with {net.count_params():,} parameters predicted "
            f"{len(predictions):,} images"
        ),
        "count": len(predictions),
        "input_shape": list(input_shape),
        "image_shape": list(x.shape[1:]),
        "n_outputs": int(n_outputs),
        "nonfinite": nonfinite,
        "params": int(net.count_params()),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.evaluate",
        description="Predict held-out images with a saved .keras model, loaded in safe mode. "
        "Writes OUT/predictions.npy (class index per image) and OUT/status.json. "
        "It is given no labels.",
    )
    parser.add_argument("--model", type=Path, required=True, help="the .keras file")
    parser.add_argument("--images", type=Path, required=True, help="N x H x W [x C] .npy")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--scale", type=float, default=255.0, help="divide pixels by this")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--classes", type=int, default=None, help="classes the data set has")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The evaluator's command line; returns the exit status (see ``EXIT_*``)."""
    args = _parser().parse_args(argv)
    try:
        if args.scale <= 0 or args.batch_size < 1:
            raise _Refused("grader", "--scale must be positive and --batch-size at least 1")
        status = run_evaluator(
            model=args.model,
            images=args.images,
            out=args.out,
            scale=args.scale,
            batch_size=args.batch_size,
            n_classes=args.classes,
        )
        code = EXIT_OK
    except _Refused as refused:
        status = {"ok": False, "code": refused.code, "message": refused.message}
        code = EXIT_FAILED if refused.code in GRADER_CODES else EXIT_REFUSED
    except Exception as exc:  # keep the reason in the status; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        status = {
            "ok": False,
            "code": "crashed",
            "message": f"the model could not be evaluated: {_first_paragraph(exc)}",
        }
        code = EXIT_FAILED
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".status.json.tmp"
    tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, args.out / "status.json")
    return code
