"""How long check_csv and score_csv take on full-size files (run by hand).

    PYTHONPATH=. python bench/bench_check_csv.py

Kaggle's digit-recognizer size (28,000 rows) is the target: well under 0.1 s to check. Also
timed: the same file with every row broken (the slow path), and cifar-10's 300,000 rows.
Results go in docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autograder.competitions import CIFAR10_LABELS
from autograder.csvcheck import check_csv, score_csv

REPEATS = 15
KAGGLE_SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/kaggle-digit-recognizer/sample_submission.csv"
)


def timed(label: str, func: Callable[[], object]) -> None:
    func()  # warm up: regex compilation, page cache
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    print(
        f"{label:<58} median {statistics.median(times) * 1000:7.1f} ms, "
        f"best {min(times) * 1000:7.1f} ms"
    )


def main() -> None:
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-check-csv-"))
    n = 28_000
    ids = list(range(1, n + 1))
    rng.shuffle(ids)
    good = folder / "good.csv"
    good.write_text(
        "ImageId,Label\r\n" + "".join(f"{i},{rng.randrange(10)}\r\n" for i in ids), newline=""
    )
    bad = folder / "bad.csv"
    bad.write_text("ImageId,Label\n" + "".join(f"{i},{i % 10}.0\n" for i in range(1, n + 1)))
    labels = folder / "test-labels.csv"
    labels.write_text(
        "ImageId,Label,Usage\n"
        + "".join(
            f"{i},{rng.randrange(10)},{'Public' if rng.random() < 0.25 else 'Private'}\n"
            for i in range(1, n + 1)
        )
    )
    cifar = folder / "cifar.csv"
    cifar.write_text(
        "id,label\n" + "".join(f"{i},{rng.choice(CIFAR10_LABELS)}\n" for i in range(1, 300_001))
    )

    print(f"python {sys.version.split()[0]}")
    report = check_csv(good)
    assert report.valid, report.summary()
    timed("check_csv, 28,000 valid rows (digit-recognizer)", lambda: check_csv(good))
    if KAGGLE_SAMPLE.exists():
        timed("check_csv, Kaggle's own sample_submission.csv", lambda: check_csv(KAGGLE_SAMPLE))
    assert not check_csv(bad).valid
    timed("check_csv, 28,000 rows all with a bad label ('3.0')", lambda: check_csv(bad))
    timed("score_csv, 28,000 rows (check again + score)", lambda: score_csv(report, labels))
    assert check_csv(cifar, competition="cifar-10").valid
    timed(
        "check_csv, 300,000 valid rows (cifar-10)", lambda: check_csv(cifar, competition="cifar-10")
    )


if __name__ == "__main__":
    main()
