"""``autograder data prepare NAME``: data sets written in Kaggle's ``digit-recognizer`` layout.

Every data set ends up as the same files, so one notebook and one grader serve them all:

``data/<name>/`` (released: what a kernel may read)
    ``train.csv`` (``label,pixel0..pixel783``), ``test.csv`` (``pixel0..pixel783``),
    ``sample_submission.csv`` (``ImageId,Label``), ``dataset.json`` (counts, classes, source).
``.autograder/heldout/<name>/`` (grader only, mode 0700)
    ``test-labels.csv`` (``ImageId,Label,Usage``: the labels of test.csv, split Public/Private),
    ``heldout-images.npy`` and ``heldout-labels.npy``: images no participant ever sees, used to
    measure a trained model's accuracy.

The embedded default, ``digits``, is scikit-learn's bundled handwritten digits (8x8, 0..16),
scaled into a 20x20 box centred on 28x28 like MNIST, split with a fixed seed. Its files are
byte-identical on every run and machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import Course
from .datasizes import (
    DIGIT_CLASSES,
    DIGITS_FRACTIONS,
    KAGGLE_TRAIN_FRACTIONS,
    OFFICIAL_TEST_FRACTIONS,
    class_cuts,
)
from .errors import DataError

SPLIT_SEED = 20240521
#: Fraction of the test labels that make up the public leaderboard, as on Kaggle (25/75).
PUBLIC_FRACTION = 0.25
IMAGE_SIDE = 28
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclasses.dataclass(frozen=True)
class Splits:
    """Images (uint8, N x 28 x 28) and labels of the three parts of a data set."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray | None  # None when the labels are unknown (Kaggle's own test set)
    heldout_x: np.ndarray
    heldout_y: np.ndarray
    classes: tuple[str, ...]
    source: str


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Where a prepared data set lies, and how big it is."""

    name: str
    released: Path
    heldout: Path
    counts: dict[str, int]
    classes: tuple[str, ...]
    source: str


# --- splitting and resizing -------------------------------------------------------------


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], seed: int = SPLIT_SEED
) -> list[np.ndarray]:
    """Split indices into parts of the given fractions, class by class, reproducibly.

    Each part is sorted, so the order of rows follows the order of the source data. The
    sizes of the parts are those of :func:`autograder.datasizes.part_sizes`.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for part, stop in zip(parts, class_cuts(len(idx), fractions), strict=True):
            part.append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(p)) for p in parts]


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Matrix M (n_out x n_in) such that M @ v resamples v bilinearly (pixel centres aligned)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = (i + 0.5) * n_in / n_out - 0.5
        x = min(max(x, 0.0), n_in - 1.0)
        lo = int(np.floor(x))
        hi = min(lo + 1, n_in - 1)
        w = x - lo
        m[i, lo] += 1.0 - w
        m[i, hi] += w
    return m


def digits_to_mnist_layout(images: np.ndarray, max_value: float = 16.0) -> np.ndarray:
    """Scale 8x8 digits (0..max_value) to 20x20 and centre them on 28x28 uint8, like MNIST."""
    box = 20
    m = _interpolation_matrix(images.shape[1], box)
    scaled = np.einsum("ij,njk,lk->nil", m, images.astype(np.float64), m)
    scaled = np.clip(np.rint(scaled * (255.0 / max_value)), 0, 255).astype(np.uint8)
    out = np.zeros((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    pad = (IMAGE_SIDE - box) // 2
    out[:, pad : pad + box, pad : pad + box] = scaled
    return out


# --- sources ------------------------------------------------------------------------------


def load_digits_splits() -> Splits:
    """scikit-learn's bundled digits (1,797 images): 60% train, 20% test, 20% held out."""
    from sklearn.datasets import load_digits

    try:
        bunch = load_digits()
    except OSError as exc:  # the bundled file was removed or is unreadable
        raise DataError(
            f"scikit-learn's bundled digits could not be read ({exc}); reinstall scikit-learn"
        ) from exc
    images = digits_to_mnist_layout(bunch.images)
    labels = bunch.target.astype(np.uint8)
    train, test, heldout = stratified_split(labels, DIGITS_FRACTIONS)
    return Splits(
        train_x=images[train],
        train_y=labels[train],
        test_x=images[test],
        test_y=labels[test],
        heldout_x=images[heldout],
        heldout_y=labels[heldout],
        classes=DIGIT_CLASSES,
        source="scikit-learn load_digits (UCI optical handwritten digits), 8x8 scaled to 28x28",
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise DataError(f"{path} is truncated: {len(data) - offset} of {expected} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _split_official_test(
    train_x: np.ndarray,
    train_y: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    source: str,
) -> Splits:
    """Official train set released; the official test set halved into test and held-out."""
    test, heldout = stratified_split(y, OFFICIAL_TEST_FRACTIONS)
    return Splits(train_x, train_y, x[test], y[test], x[heldout], y[heldout], classes, source)


def load_fashion_mnist_splits(folder: Path = FASHION_MNIST_DIR) -> Splits:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (60,000 + 10,000 images)."""
    names = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not (folder / n).exists()]
    if missing:
        raise DataError(
            f"Fashion-MNIST is not installed ({folder} lacks {', '.join(missing)}); install it "
            "with: sudo apt-get install dataset-fashion-mnist"
        )
    arrays = {key: read_idx(folder / name) for key, name in names.items()}
    return _split_official_test(
        arrays["train_x"],
        arrays["train_y"],
        arrays["test_x"],
        arrays["test_y"],
        FASHION_CLASSES,
        f"Fashion-MNIST (Zalando Research), from {folder}",
    )


def load_mnist_splits() -> Splits:
    """MNIST through Keras' own loader (downloads once into ~/.keras/datasets)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    try:
        from keras.datasets import mnist

        (train_x, train_y), (test_x, test_y) = mnist.load_data()
    except Exception as exc:
        raise DataError(
            "MNIST could not be downloaded by keras.datasets.mnist.load_data() "
            f"({type(exc).__name__}: {exc}). This machine may be offline: use "
            "'autograder data prepare digits' (built in) or 'fashion-mnist' (apt-get install "
            "dataset-fashion-mnist), or copy mnist.npz into ~/.keras/datasets/."
        ) from exc
    return _split_official_test(
        train_x, train_y, test_x, test_y, DIGIT_CLASSES, "MNIST via keras.datasets.mnist"
    )


def load_kaggle_digit_recognizer_splits(download_dir: Path | None = None) -> Splits:
    """Kaggle's ``digit-recognizer`` files through the kaggle client (needs credentials).

    Kaggle keeps its test labels, so the CSV can be validated here but only scored on Kaggle;
    the held-out set for the accuracy check is cut from Kaggle's train.csv (10%).
    """
    from .kaggle import download_competition

    folder = download_dir or Path(tempfile.mkdtemp(prefix="kaggle-digit-recognizer-"))
    files = download_competition("digit-recognizer", folder)
    train = np.loadtxt(files["train.csv"], delimiter=",", skiprows=1, dtype=np.uint8)
    test = np.loadtxt(files["test.csv"], delimiter=",", skiprows=1, dtype=np.uint8)
    labels, pixels = train[:, 0], train[:, 1:].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    keep, heldout = stratified_split(labels, KAGGLE_TRAIN_FRACTIONS)
    return Splits(
        train_x=pixels[keep],
        train_y=labels[keep],
        test_x=test.reshape(-1, IMAGE_SIDE, IMAGE_SIDE),
        test_y=None,
        heldout_x=pixels[heldout],
        heldout_y=labels[heldout],
        classes=DIGIT_CLASSES,
        source="Kaggle digit-recognizer (train.csv minus 10% held out; test labels on Kaggle)",
    )


SOURCES: dict[str, Callable[[], Splits]] = {
    "digits": load_digits_splits,
    "fashion-mnist": load_fashion_mnist_splits,
    "mnist": load_mnist_splits,
    "kaggle:digit-recognizer": load_kaggle_digit_recognizer_splits,
}


def folder_name(name: str) -> str:
    """The folder a data set is written to: ``kaggle:digit-recognizer`` -> ``digit-recognizer``."""
    return name.split(":", 1)[-1]


# --- writing --------------------------------------------------------------------------------

_CELL = [str(v) for v in range(256)]


def _pixel_rows(images: np.ndarray) -> list[str]:
    flat = images.reshape(len(images), -1)
    return [",".join([_CELL[v] for v in row.tolist()]) for row in flat]


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="ascii", newline="\n")
    os.replace(tmp, path)


def write_kaggle_layout(splits: Splits, released: Path, heldout: Path, name: str) -> PreparedData:
    """Write ``splits`` in the digit-recognizer layout; files are replaced atomically."""
    pixel_header = ",".join(f"pixel{i}" for i in range(IMAGE_SIDE * IMAGE_SIDE))
    released.mkdir(parents=True, exist_ok=True)
    heldout.mkdir(parents=True, exist_ok=True)
    os.chmod(heldout.parent.parent, 0o700)  # .autograder/: grader only
    os.chmod(heldout, 0o700)

    train_lines = [f"label,{pixel_header}"]
    train_lines += [
        f"{_CELL[int(y)]},{row}"
        for y, row in zip(splits.train_y.tolist(), _pixel_rows(splits.train_x), strict=True)
    ]
    _write_text_atomic(released / "train.csv", "\n".join(train_lines) + "\n")
    _write_text_atomic(
        released / "test.csv", "\n".join([pixel_header, *_pixel_rows(splits.test_x)]) + "\n"
    )
    n_test = len(splits.test_x)
    sample = ["ImageId,Label", *(f"{i},0" for i in range(1, n_test + 1))]
    _write_text_atomic(released / "sample_submission.csv", "\n".join(sample) + "\n")

    counts = {"train": len(splits.train_x), "test": n_test, "heldout": len(splits.heldout_x)}
    manifest = {
        "name": name,
        "source": splits.source,
        "image_shape": [IMAGE_SIDE, IMAGE_SIDE, 1],
        "classes": list(splits.classes),
        "counts": {"train": counts["train"], "test": counts["test"]},
        "files": {
            "train.csv": "label,pixel0..pixel783; pixels 0..255, row by row",
            "test.csv": "pixel0..pixel783; predict a label for each row",
            "sample_submission.csv": "ImageId,Label; ImageId counts test.csv rows from 1",
        },
        "split_seed": SPLIT_SEED,
    }
    _write_text_atomic(
        released / "dataset.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )

    if splits.test_y is not None:
        public = np.zeros(n_test, dtype=bool)
        rng = np.random.Generator(np.random.PCG64(SPLIT_SEED + 1))
        public[rng.permutation(n_test)[: round(PUBLIC_FRACTION * n_test)]] = True
        lines = ["ImageId,Label,Usage"] + [
            f"{i},{int(y)},{'Public' if p else 'Private'}"
            for i, (y, p) in enumerate(zip(splits.test_y.tolist(), public, strict=True), start=1)
        ]
        _write_text_atomic(heldout / "test-labels.csv", "\n".join(lines) + "\n")
    else:
        (heldout / "test-labels.csv").unlink(missing_ok=True)
    for fname, array in (
        ("heldout-images.npy", splits.heldout_x.astype(np.uint8)),
        ("heldout-labels.npy", splits.heldout_y.astype(np.uint8)),
    ):
        tmp = heldout / f".{fname}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, heldout / fname)
    meta = {
        "name": name,
        "classes": list(splits.classes),
        "counts": counts,
        "test_labels_known": splits.test_y is not None,
        "sha256": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(released.iterdir())
            if p.is_file()
        },
    }
    _write_text_atomic(heldout / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return PreparedData(name, released, heldout, counts, splits.classes, splits.source)


def prepare(
    name: str, *, course: Course, loader: Callable[[], Splits] | None = None
) -> PreparedData:
    """Prepare data set ``name`` in ``course`` (see the module docstring for the files)."""
    if loader is None:
        if name not in SOURCES:
            raise DataError(
                f"unknown data set {name!r}; choose one of {', '.join(SOURCES)} "
                "(digits works offline)"
            )
        loader = SOURCES[name]
    splits = loader()
    folder = folder_name(name)
    return write_kaggle_layout(splits, course.data(folder), course.heldout(folder), name)


def not_prepared(course: Course, dataset: str) -> DataError:
    """The refusal for a data set ``course`` lacks: how to prepare it, when ``data prepare``
    knows the name, else the names it knows (and the nearest), never a command that fails."""
    if dataset in SOURCES:
        return DataError(
            f"data set {dataset!r} is not prepared in {course.root}; run "
            f"'autograder data prepare {dataset}' first"
        )
    import difflib

    near = difflib.get_close_matches(dataset, list(SOURCES), n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return DataError(
        f"data set {dataset!r} is not one 'autograder data prepare' writes, and "
        f"{course.root} has no data set of that name; {hint}fix the name in assignment.toml "
        f"(data sets: {', '.join(SOURCES)})"
    )


def heldout_meta(course: Course, dataset: str) -> dict[str, object]:
    """The grader-only description of a prepared data set; DataError says how to prepare it."""
    path = course.heldout(folder_name(dataset)) / "meta.json"
    if not path.exists():
        raise not_prepared(course, dataset)
    return dict(json.loads(path.read_text()))


def copy_released(course: Course, dataset: str, dest: Path) -> None:
    """Copy the released files of ``dataset`` to ``dest`` (for an unsandboxed run)."""
    src = course.data(folder_name(dataset))
    if not (src / "train.csv").exists():
        raise not_prepared(course, dataset)
    shutil.copytree(src, dest, dirs_exist_ok=True)
