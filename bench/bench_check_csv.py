"""How long check-csv takes on a 28,000-row digit-recognizer file (run by hand).

    .venv/bin/python bench/bench_check_csv.py [--repeat 50]

Prints the best and median time of a valid file (Kaggle's real sample when present, else a
generated one) and of an invalid one (every 100th label wrong), which takes the slow,
line-by-line path.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from autograder.csvcheck import check_csv

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/kaggle-digit-recognizer/sample_submission.csv"
)


def _time(path: Path, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        check_csv(path, competition="digit-recognizer")
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        valid = SAMPLE if SAMPLE.exists() else Path(tmp) / "valid.csv"
        if not SAMPLE.exists():
            valid.write_text(
                "ImageId,Label\n" + "".join(f"{i},{i % 10}\n" for i in range(1, 28001))
            )
        invalid = Path(tmp) / "invalid.csv"
        invalid.write_text(
            "ImageId,Label\n"
            + "".join(f"{i},{'x' if i % 100 == 0 else i % 10}\n" for i in range(1, 28001))
        )
        for name, path in (("valid", valid), ("invalid (280 bad labels)", invalid)):
            best, median = _time(path, args.repeat)
            print(f"{name:<28} best {best * 1000:6.1f} ms   median {median * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
