"""Time the held-out evaluator: process start + Keras import + safe-mode load + predict.

Run by hand from the repository root (results go in docs/benchmarks.md):

    python bench/bench_evaluate.py [--repeat 3] [--batch-size 256]

It saves the workshop's MNIST CNN (keras-io ``mnist_convnet``: two Conv2D + MaxPooling, Dropout,
Dense(10); untrained, since the time does not depend on the weights' values) and evaluates it
with :func:`autograder.evaluate.evaluate_model`, as the grader does, on the digits held-out set
(359 images) and on 5,000 Fashion-MNIST held-out images (Debian's dataset-fashion-mnist; without
it, the digits repeated to 5,000). Each row is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.datasets import DataError, load_digits_splits, load_fashion_mnist_splits
from autograder.evaluate import DEFAULT_BATCH_SIZE, evaluate_model


def workshop_cnn() -> tuple[Any, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    return keras, keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def image_sets() -> list[tuple[str, np.ndarray]]:
    digits = load_digits_splits().heldout_x
    try:
        big = load_fashion_mnist_splits().heldout_x[:5000]
        big_name = "Fashion-MNIST held-out"
    except DataError:
        big = np.resize(digits, (5000, 28, 28))
        big_name = "digits repeated"
    return [("digits held-out", digits), (big_name, big)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()

    keras, model = workshop_cnn()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(tmp)
        model_path = root / "model.keras"
        keras.saving.save_model(model, model_path)
        print(
            f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"Keras {keras.__version__}, load average {os.getloadavg()[0]:.2f}, "
            f"{time.strftime('%Y-%m-%d')}"
        )
        print(f"model: {model.count_params():,} parameters, {model_path.stat().st_size:,} bytes")
        print("| images | count | total s | import s | load s | predict s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, images in image_sets():
            images_path = root / f"{len(images)}.npy"
            np.save(images_path, images)
            runs = []
            for i in range(args.repeat):
                outcome = evaluate_model(
                    model_path=model_path,
                    images_path=images_path,
                    scale=255.0,
                    n_classes=10,
                    timeout=600,
                    workdir=root / f"run{i}",
                    batch_size=args.batch_size,
                    env={"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")},
                )
                if outcome.predictions is None:
                    raise SystemExit(f"evaluation failed: {outcome.message}")
                runs.append((outcome.duration_s, dict(outcome.details["timings"])))
            total = statistics.median(r[0] for r in runs)
            parts = [
                statistics.median(r[1][key] for r in runs)
                for key in ("import_s", "load_s", "predict_s")
            ]
            cells = " | ".join(f"{v:.2f}" for v in (total, *parts))
            print(f"| {name} | {len(images):,} | {cells} |")


if __name__ == "__main__":
    main()
