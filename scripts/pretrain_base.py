"""Pretrain the small convolutional base the transfer-learning notebook uses offline.

The workshop's first choice is an ImageNet-pretrained ``keras.applications`` network, which
needs the internet to fetch its weights. Without it, the notebook loads
``source/transfer-learning/pretrained_base.keras``, written by this script: a five-layer CNN
trained on Fashion-MNIST (clothes), so transferring it to the digits (or CIFAR-10) is a real
change of domain, as ImageNet -> CIFAR-10 is. It takes 32x32 RGB images with values in 0..1
(Fashion-MNIST is padded to 32x32 and its grey channel repeated) and returns an 8x8x96 feature
map; the classifier it was trained with is not saved.

Reproducible: seeded, TensorFlow's deterministic ops, a fixed training subset. Run it from the
repository root (2 shared CPU cores: about four minutes):

    python scripts/pretrain_base.py                    # Fashion-MNIST (Debian package)
    python scripts/pretrain_base.py --data digits      # no Fashion-MNIST: digits' train split

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (``sudo apt-get install
dataset-fashion-mnist``). ``--data digits`` uses only the released training split of
scikit-learn's digits, never the held-out images the grader scores models on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "source" / "transfer-learning" / "pretrained_base.keras"
SEED = 20240521
IMAGE_SIZE = 32


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """N x 28 x 28 uint8 grey images -> N x 32 x 32 x 3 float32 in 0..1 (padded, repeated)."""
    x = images.astype("float32") / 255.0
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(x[..., np.newaxis], 3, axis=-1)


def load(data: str, train_samples: int) -> tuple[np.ndarray, ...]:
    """Training and test images (32x32x3, 0..1) and labels of the chosen data set."""
    sys.path.insert(0, str(REPO))
    from autograder.datasets import load_digits_splits, load_fashion_mnist_splits

    splits = load_fashion_mnist_splits() if data == "fashion-mnist" else load_digits_splits()
    rng = np.random.default_rng(SEED)
    keep = np.sort(rng.permutation(len(splits.train_x))[:train_samples])
    assert splits.test_y is not None
    return (
        to_rgb32(splits.train_x[keep]),
        splits.train_y[keep].astype("int64"),
        to_rgb32(splits.test_x),
        splits.test_y.astype("int64"),
    )


def build_base() -> object:
    """The convolutional base: 32x32x3 -> 8x8x96 feature map."""
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Conv2D(96, 3, padding="same", activation="relu", name="conv5")(x)
    return keras.Model(inputs, x, name="pretrained_base")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["fashion-mnist", "digits"], default="fashion-mnist")
    parser.add_argument("--train-samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train, x_test, y_test = load(args.data, args.train_samples)

    base = build_base()
    classifier = keras.Sequential(
        [
            base,
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(10, activation="softmax", name="classes"),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    classifier.fit(x_train, y_train, epochs=args.epochs, batch_size=128, verbose=2)
    _, accuracy = classifier.evaluate(x_test, y_test, verbose=0)
    print(f"{args.data}: test accuracy {accuracy:.3f} on {len(x_test)} images")

    base.trainable = True
    args.out.parent.mkdir(parents=True, exist_ok=True)
    base.save(args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} kB, {base.count_params():,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
