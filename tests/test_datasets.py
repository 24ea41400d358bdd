"""data prepare: the Kaggle layout, byte-identical digits, labels only where the grader looks."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from autograder.cli import cli
from autograder.config import Course
from autograder.datasets import FASHION_MNIST_DIR, prepare, read_idx, stratified_split
from autograder.errors import DataError

DIGITS_SHA256 = {
    "data/digits/dataset.json": "8181fdedabcd9928973e1026cec2ad514639577c2eeb48814dea0c47afb218af",
    "data/digits/sample_submission.csv": "0f9a1ae057e4d978c4920cbc4582b7666b3d1af86e71d660c6b0fc139fdaf6bf",
    "data/digits/test.csv": "382cb6aedf33b9de936791447f964919403e261f588367eb8be59c9c9702acd4",
    "data/digits/train.csv": "ebc0747988526474701236bf5cfdac3062739dc08871e7dbfc5d536532627341",
    ".autograder/heldout/digits/heldout-images.npy": "5ac9182581d19da4ab19b85a912ca27075071a478569e14697908985409256b2",
    ".autograder/heldout/digits/heldout-labels.npy": "c9a58b87f064c87177089c85c538d2f52de6b090465ebbeb2ee13a50fd4b0586",
    ".autograder/heldout/digits/test-labels.csv": "c478eab06d72ad6a875bdc9a16aa88a92a91482255d0b57bee16f5b4b5d96242",
}


@pytest.fixture(scope="module")
def digits_course(tmp_path_factory):
    course = Course.at(tmp_path_factory.mktemp("digits"))
    prepare("digits", course=course)
    return course


def test_digits_are_byte_identical_on_every_run(digits_course, tmp_path):
    got = {
        rel: hashlib.sha256((digits_course.root / rel).read_bytes()).hexdigest()
        for rel in DIGITS_SHA256
    }
    assert got == DIGITS_SHA256
    again = Course.at(tmp_path)
    prepare("digits", course=again)
    for rel in DIGITS_SHA256:
        assert (again.root / rel).read_bytes() == (digits_course.root / rel).read_bytes()


def test_digits_follow_the_digit_recognizer_layout(digits_course):
    data = digits_course.data("digits")
    train = (data / "train.csv").read_text().splitlines()
    test = (data / "test.csv").read_text().splitlines()
    sample = (data / "sample_submission.csv").read_text().splitlines()
    assert train[0] == "label," + ",".join(f"pixel{i}" for i in range(784))
    assert test[0] == ",".join(f"pixel{i}" for i in range(784))
    assert sample[0] == "ImageId,Label"
    assert (len(train) - 1, len(test) - 1, len(sample) - 1) == (1078, 360, 360)
    assert sample[1] == "1,0" and sample[-1] == "360,0"
    row = np.array(train[1].split(","), dtype=int)
    assert row.shape == (785,) and row[1:].min() >= 0 and row[1:].max() <= 255
    # The labels of test.csv exist only in the grader-only folder.
    assert sorted(p.name for p in data.iterdir()) == [
        "dataset.json",
        "sample_submission.csv",
        "test.csv",
        "train.csv",
    ]
    labels = (digits_course.heldout("digits") / "test-labels.csv").read_text().splitlines()
    assert labels[0] == "ImageId,Label,Usage" and len(labels) == 361
    usage = [line.rsplit(",", 1)[1] for line in labels[1:]]
    assert usage.count("Public") == 90 and usage.count("Private") == 270


def test_the_grader_only_folder_is_private(digits_course):
    for folder in (digits_course.state, digits_course.heldout("digits")):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_held_out_images_are_none_of_the_released_ones(digits_course):
    held = np.load(digits_course.heldout("digits") / "heldout-images.npy")
    train = np.loadtxt(digits_course.data("digits") / "train.csv", delimiter=",", skiprows=1)
    test = np.loadtxt(digits_course.data("digits") / "test.csv", delimiter=",", skiprows=1)
    released = {row.astype(np.uint8).tobytes() for row in np.vstack([train[:, 1:], test])}
    assert held.shape == (359, 28, 28)
    overlap = sum(img.reshape(-1).tobytes() in released for img in held)
    # load_digits has a few exact duplicate images; the split itself shares no rows.
    assert overlap <= 3


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    a = stratified_split(labels, (0.6, 0.2, 0.2))
    b = stratified_split(labels, (0.6, 0.2, 0.2))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert [len(p) for p in a] == [300, 100, 100]
    assert set(np.bincount(labels[a[1]])) == {10}
    assert not set(a[0]) & set(a[1]) and not set(a[1]) & set(a[2])


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_debian(tmp_path):
    course = Course.at(tmp_path)
    prepared = prepare("fashion-mnist", course=course)
    assert prepared.counts == {"train": 60000, "test": 5000, "heldout": 5000}
    assert prepared.classes[0] == "T-shirt/top"
    official = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert official.shape == (10000,)
    with open(course.data("fashion-mnist") / "train.csv") as fh:
        assert sum(1 for _ in fh) == 60001


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    from autograder.datasets import load_fashion_mnist_splits

    with pytest.raises(DataError) as err:
        load_fashion_mnist_splits(tmp_path)
    assert err.value.message.endswith("install it with: sudo apt-get install dataset-fashion-mnist")


def test_unknown_data_set_lists_the_valid_ones(tmp_path):
    result = CliRunner().invoke(cli, ["--course-dir", str(tmp_path), "data", "prepare", "cifar"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown data set 'cifar'; choose one of digits, fashion-mnist, mnist, "
        "kaggle:digit-recognizer (digits works offline)\n"
    )


def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x10abc")
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert err.value.message == f"{path} is truncated: 3 of 16 bytes"


def test_the_stated_row_counts_are_those_data_prepare_writes(digits_course):
    """datasizes (which competitions reads) states the counts without running the split:
    they must be the split's, and its class sizes those of the sources."""
    from sklearn.datasets import load_digits

    from autograder import datasizes
    from autograder.competitions import COMPETITIONS

    assert tuple(np.bincount(load_digits().target)) == datasizes.DIGITS_CLASS_SIZES
    counts = json.loads((digits_course.heldout("digits") / "meta.json").read_text())["counts"]
    assert (counts["train"], counts["test"], counts["heldout"]) == (
        datasizes.DIGITS_TRAIN_ROWS,
        datasizes.DIGITS_TEST_ROWS,
        datasizes.DIGITS_HELDOUT_ROWS,
    )
    assert COMPETITIONS["digits"].rows == counts["test"]
    if FASHION_MNIST_DIR.is_dir():
        official = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
        assert tuple(np.bincount(official)) == datasizes.FASHION_MNIST_TEST_CLASS_SIZES
        test, heldout = stratified_split(official, datasizes.OFFICIAL_TEST_FRACTIONS)
        assert (len(test), len(heldout)) == (
            datasizes.FASHION_MNIST_TEST_ROWS,
            datasizes.FASHION_MNIST_HELDOUT_ROWS,
        )
        assert COMPETITIONS["fashion-mnist"].rows == len(test)
