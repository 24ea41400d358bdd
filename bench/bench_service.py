"""A burst at the workshop service: N participants hand in within 30 s; how long each waits
for feedback, against the floor, and how fast the service answers status requests meanwhile.

Run by hand from the repository root (results go in docs/benchmarks.md):

    python bench/bench_service.py [--participants 50] [--spread 30] [--workers N]

The course is the tiny test assignment of tests/conftest.py (fast: pure Python), every
participant sending its full solution. ``autograder serve`` runs as a user would start it
(sandbox on when it works here, the default workers), in its own process. The floor is
``N x (one submission's own grading time) / workers``: that time is measured first, on the
same service, with nothing else in line (the median of three, after one to warm it up).
Reported: submit -> feedback-ready latency (p50,
p95, max, seen by polling), the burst's last feedback against the floor, and the service's
answer time to status requests sent all through the burst (p50, p95, max).
Goals (issue 14): every submission graded; status p95 under 50 ms; last feedback within
1.1x of the floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import conftest  # noqa: E402
import httpx  # noqa: E402
import nbformat  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--spread", type=float, default=30.0, help="seconds the burst lasts")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    sandbox = conftest.sandbox_status()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, sandbox: {sandbox.reason if sandbox.ok else 'off'}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-service-") as scratch:
        from autograder.roster import Roster

        course = conftest.make_tiny_course(Path(scratch) / "course")
        notebook = Path(scratch) / "tiny.ipynb"
        nbformat.write(conftest.complete(course), notebook)
        roster = Roster(course)
        tokens = [roster.add(f"p{i:03d}")[1] for i in range(args.participants + 1)]
        port = _port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "autograder", "--course-dir", str(course.root), "serve"]
        command += ["--port", str(port)]
        if args.workers:
            command += ["--workers", str(args.workers)]
        if not sandbox.ok:
            command.append("--unsafe-no-sandbox")
        log = open(Path(scratch) / "serve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            return _run(url, tokens, notebook, args)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def _run(url: str, tokens: list[str], notebook: Path, args: argparse.Namespace) -> int:
    client = httpx.Client(base_url=url, timeout=60)
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print("the service did not start", file=sys.stderr)
            return 1
        time.sleep(0.2)
    data = notebook.read_bytes()

    def submit(token: str) -> str:
        r = client.post(
            "/api/submissions",
            data={"assignment": "tiny"},
            files=[("files", ("tiny.ipynb", data, "application/json"))],
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        return str(r.json()["url"])

    def wait(status_url: str, token: str) -> float:
        while True:
            body = client.get(status_url, headers={"Authorization": f"Bearer {token}"}).json()
            if body["status"] not in ("queued", "running"):
                if body["status"] != "graded":
                    raise RuntimeError(f"{status_url}: {body['status']} {body['message']}")
                return time.monotonic()
            time.sleep(0.1)

    # One submission alone, after one that warms the service up (its grader's fork server,
    # the assignment's source index): the median of three is the unit of the floor.
    wait(submit(tokens[-1]), tokens[-1])
    alone = []
    for _ in range(3):
        t0 = time.monotonic()
        alone.append(wait(submit(tokens[-1]), tokens[-1]) - t0)
    single = statistics.median(alone)
    workers = args.workers or max(1, (os.cpu_count() or 2) // 2)
    floor = args.participants * single / workers
    print(f"one submission alone: {single:.2f} s; floor for {args.participants}: {floor:.1f} s")

    answers: list[float] = []
    stop = threading.Event()

    def poll_status(status_url: str, token: str) -> None:
        with httpx.Client(timeout=30) as poller:
            while not stop.is_set():
                start = time.perf_counter()
                poller.get(status_url, headers={"Authorization": f"Bearer {token}"})
                answers.append(1000 * (time.perf_counter() - start))
                time.sleep(0.05)

    sent: list[tuple[float, str, str]] = []
    start = time.monotonic()
    for i, token in enumerate(tokens[:-1]):
        at = start + args.spread * i / max(1, args.participants - 1)
        time.sleep(max(0.0, at - time.monotonic()))
        sent.append((time.monotonic(), submit(token), token))
        if i == 0:
            threading.Thread(target=poll_status, args=(sent[0][1], token), daemon=True).start()
    print(f"{len(sent)} submissions sent in {time.monotonic() - start:.1f} s")
    done = [(when, wait(status_url, token)) for when, status_url, token in sent]
    stop.set()
    latencies = [finished - when for when, finished in done]
    last = max(finished for _, finished in done) - start
    print(
        f"submit -> feedback: p50 {_quantile(latencies, 0.5):.1f} s, "
        f"p95 {_quantile(latencies, 0.95):.1f} s, max {max(latencies):.1f} s"
    )
    print(f"last feedback {last:.1f} s after the burst began: {last / floor:.2f}x the floor")
    print(
        f"status answers ({len(answers)}): p50 {statistics.median(answers):.1f} ms, "
        f"p95 {_quantile(answers, 0.95):.1f} ms, max {max(answers):.1f} ms"
    )
    ok = _quantile(answers, 0.95) < 50 and last <= 1.1 * floor
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
