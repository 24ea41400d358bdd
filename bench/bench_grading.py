"""Grading a class: ours (local and dask, 1 and 2 workers, sandbox on and off) against
``nbgrader autograde`` and against bare serial nbclient execution (run by hand).

The course is the tiny test assignment with one more cell that does about 2.5 s of
single-threaded NumPy work (elementwise, so BLAS threads do not blur the worker counts), the
kind of fast-mode notebook a workshop grades. Its arrays stay in the CPU caches by default
(``--size``), so two kernels at once measure the grader, not the memory bus; the bench first
times that work alone and two at once (the machine's own scaling, the floor for 2 workers).
N students submit the completed notebook.
Every contender runs as a fresh command (``python -m ...``), so each pays its own start-up,
as a person at the terminal does; peak memory is the largest sum of the RSS of the command
and all its descendants (kernels included), sampled every 50 ms with psutil.

    PYTHONPATH=. python bench/bench_grading.py --students 8 --repeat 2

``--exercise`` grades the workshop's real exercise instead (``mnist-kaggle``, both checks on,
``--students`` copies of the solution, bench/exercise_course.py): ours with 1 and 2 workers
against bare nbclient running the same notebooks (sanitized, the same parameters injected)
one after another and two at a time, and ``nbgrader autograde`` (which runs no checks):

    PYTHONPATH=. python bench/bench_grading.py --exercise --students 3 --repeat 3 [--both-prestart]

Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import conftest  # noqa: E402
from nbformat.v4 import new_code_cell  # noqa: E402

from autograder.config import Course, load_assignment  # noqa: E402
from autograder.gradebook import register_assignment  # noqa: E402
from autograder.release import release, source_index  # noqa: E402

WORK = (
    "import numpy as np\n"
    "x = np.random.default_rng(0).random({size})\n"
    "for _ in range({steps}):\n"
    "    x = np.sqrt(x * x + 1.0) - 0.5\n"
    "float(x.mean())"
)

BARE = """
import sys, time, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(__import__("pathlib").Path(path).parent)}}
                   ).execute()
"""


def build(
    root: Path, students: int, steps: int, size: int, imports: list[str] | None = None
) -> list[Path]:
    """The source notebook with the work cell, released, and ``students`` submissions.
    ``imports``: modules the work cell imports first, and the assignment's prestart_imports."""
    nb = conftest.tiny_source()
    work = new_code_cell(
        "".join(f"import {m}\n" for m in imports or ()) + WORK.format(steps=steps, size=size)
    )
    work.id = "work"
    nb.cells.insert(2, work)
    conftest.write_nb(nb, root / "source" / "tiny" / "tiny.ipynb")
    prestart = f"prestart_imports = {imports!r}\n" if imports else ""
    (root / "source" / "tiny" / "assignment.toml").write_text(
        "[execute]\ntimeout_cell = 120\ntimeout_total = 300\n" + prestart
    )
    course = Course.at(root)
    release(course, "tiny")
    # nbgrader's gradebook is created before the clock starts on both sides (nbgrader's by
    # `nbgrader db assignment add`): a new one costs ~3 s (nbgrader runs `alembic heads`).
    config = load_assignment(course, "tiny")
    register_assignment(course.gradebook_url, config, source_index(course, config))
    done = conftest.complete(course)
    return [
        conftest.write_nb(done, course.submitted(f"s{n:03d}", "tiny") / "tiny.ipynb")
        for n in range(students)
    ]


def fresh_copy(template: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(template, dest)
    return dest


class Sampler:
    """Peak RSS (summed) and CPU seconds (each process's last reading, summed) of a process
    and all its descendants, kernels and evaluators included, sampled every 50 ms. The CPU
    seconds say what work a contender did whatever else runs on the machine; wall times do
    not, on a shared one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.cpu: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rss, cpu = tree_usage(self.pid)
            self.cpu.update(cpu)
            self.peak = max(self.peak, rss)

    def stop(self) -> tuple[int, float]:
        self._stop.set()
        self._thread.join()
        return self.peak, sum(self.cpu.values())


def tree_usage(pid: int) -> tuple[int, dict[tuple[int, float], float]]:
    """Summed RSS of a process and its descendants, and each one's CPU seconds so far, by
    (pid, start time); (0, {}) once it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, {}
    rss, cpu = 0, {}
    for proc in procs:
        with contextlib.suppress(psutil.Error), proc.oneshot():
            rss += proc.memory_info().rss
            times = proc.cpu_times()
            cpu[(proc.pid, proc.create_time())] = times.user + times.system
    return rss, cpu


def command_env() -> dict[str, str]:
    """This checkout importable, this Python's scripts (nbgrader runs alembic) on PATH."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS and CPU seconds of one command and its descendants."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = Sampler(proc.pid)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    peak, cpu = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out[-3000:]}")
    return wall, peak, cpu


def timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    wall, peak, _ = measure(argv, cwd, command_env())
    return wall, peak


def check_scores(root: Path, students: int, expected: float) -> None:
    """Every submission scored in full: a fast run that graded nothing would be no result."""
    from autograder.gradebook import load_results

    scores = [r.score for r in load_results(Course.at(root).gradebook_url, "tiny")]
    if len(scores) != students or any(s != expected for s in scores):
        raise SystemExit(f"{root}: unexpected scores {scores}")


def contenders(args: argparse.Namespace) -> list[tuple[str, list[str] | None, dict[str, str]]]:
    """(label, autograder grade options or None for the others, notes)."""
    py = sys.executable
    out: list[tuple[str, list[str] | None, dict[str, str]]] = [
        ("nbgrader autograde", None, {"kind": "nbgrader"}),
        ("bare nbclient, serial", None, {"kind": "bare"}),
    ]
    if args.prestart_only:
        for workers in (1, 2):
            for flag in ("--prestart", "--no-prestart"):
                label = f"ours local, {workers} worker(s), sandbox on, {flag[2:]}"
                opts = ["--workers", str(workers), flag]
                out.append((label, [py, "-m", "autograder", "grade", "tiny", *opts], {}))
        return out
    for backend in args.backends:
        for workers in (1, 2):
            for sandbox in (True, False) if backend == "local" else (True,):
                label = f"ours {backend}, {workers} worker(s), sandbox {'on' if sandbox else 'off'}"
                opts = ["--backend", backend, "--workers", str(workers)]
                if not sandbox:
                    opts.append("--unsafe-no-sandbox")
                out.append((label, [py, "-m", "autograder", "grade", "tiny", *opts], {}))
    return out


def kernel_starts(repeat: int) -> None:
    """Fixed costs a prestarted kernel could hide: a kernel's start and shutdown around an
    empty cell, and around ``import numpy``, plain and sandboxed (medians of ``repeat``)."""
    from nbformat.v4 import new_notebook

    from autograder import sandbox
    from autograder.execute import ExecutionLimits, execute_notebook, kernel_env
    from autograder.kernel import kernel_factory

    print("| kernel | cell | wall s (median) |\n|---|---|---:|")
    for label in ("plain", "sandboxed"):
        for code in ("pass", "import numpy"):
            times = []
            for _ in range(repeat):
                work = Path(tempfile.mkdtemp(prefix="bench-kernel-"))
                nb = new_notebook(cells=[new_code_cell(code)])
                factory = None
                if label == "sandboxed":
                    policy = sandbox.SandboxPolicy(workdir=work, memory_bytes=4 << 30)
                    factory = kernel_factory(policy=policy)
                start = time.perf_counter()
                kw = {"kernel_factory": factory} if factory else {}
                out = execute_notebook(
                    nb, workdir=work, limits=ExecutionLimits(), env=kernel_env(work), **kw
                )
                times.append(time.perf_counter() - start)
                shutil.rmtree(work, ignore_errors=True)
                assert out.status == "graded", out.message
            print(f"| {label} | `{code}` | {statistics.median(times):.2f} |")


def machine_scaling(size: int, steps: int) -> tuple[float, float]:
    """Seconds of the work cell run alone, and (the slower of two) run twice at once."""
    code = WORK.format(size=size, steps=steps)
    argv = [sys.executable, "-c", "import time\nt = time.perf_counter()\n" + code
            + "\nprint(time.perf_counter() - t)"]  # fmt: skip

    def run(n: int) -> float:
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)

    alone = statistics.median(run(1) for _ in range(3))
    paired = statistics.median(run(2) for _ in range(3))
    return alone, paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--students", type=int, help="submissions graded (default 8; 3 with --exercise)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=200_000,
        help="array length: 200,000 float64 (1.6 MB) stay in the CPU caches; 2,000,000 do not, "
        "and then two kernels at once wait on memory bandwidth",
    )
    parser.add_argument(
        "--steps", type=int, default=6400, help="NumPy loop steps (~0.4 ms each by default)"
    )
    parser.add_argument(
        "--repeat", type=int, help="rounds, the median reported (default 1; 3 with --exercise)"
    )
    parser.add_argument("--backends", nargs="+", default=["local", "dask"])
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--prestart-only",
        action="store_true",
        help="besides nbgrader and bare, only ours local with the kernel prestart on and off",
    )
    parser.add_argument(
        "--imports",
        nargs="+",
        metavar="MODULE",
        help="modules every notebook imports (e.g. tensorflow), listed as prestart_imports",
    )
    parser.add_argument(
        "--kernel-start", action="store_true", help="only time kernel starts (plain, sandboxed)"
    )
    parser.add_argument(
        "--exercise",
        action="store_true",
        help="grade the real exercise (mnist-kaggle, both checks): --students copies",
    )
    parser.add_argument(
        "--both-prestart",
        action="store_true",
        help="with --exercise: ours also with --no-prestart (1 and 2 workers) and with "
        "--prestart (2 workers: the next kernel too)",
    )
    args = parser.parse_args()
    args.students = args.students or (3 if args.exercise else 8)
    args.repeat = args.repeat or (3 if args.exercise else 1)
    if args.kernel_start:
        kernel_starts(max(args.repeat, 5))
        return
    if args.exercise:
        sys.path.insert(0, str(REPO / "bench"))
        import exercise_course

        exercise_course.bench(args, command_env, measure)
        return

    alone, paired = machine_scaling(args.size, args.steps)
    print(
        f"the work cell: {alone:.2f} s alone, {paired:.2f} s two at once "
        f"(2-way scaling {2 * alone / paired:.2f}x)",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    template = tmp / "template"
    notebooks = build(template, args.students, args.steps, args.size, args.imports)
    py = sys.executable
    rows: dict[str, list[tuple[float, int]]] = {}
    for round_ in range(args.repeat):
        for label, argv, notes in contenders(args):
            root = fresh_copy(template, tmp / "run")
            if notes.get("kind") == "nbgrader":
                nbg = [py, "-m", "nbgrader"]
                subprocess.run(
                    [*nbg, "db", "assignment", "add", "tiny"],
                    cwd=root,
                    check=True,
                    capture_output=True,
                    env=command_env(),
                )
                subprocess.run(
                    [*nbg, "generate_assignment", "tiny", "--force"],
                    cwd=root,
                    check=True,
                    capture_output=True,
                    env=command_env(),
                )
                result = timed([*nbg, "autograde", "tiny"], root)
            elif notes.get("kind") == "bare":
                paths = [str(root / p.relative_to(template)) for p in notebooks]
                result = timed([py, "-c", BARE, *paths], root)
            else:
                assert argv is not None
                result = timed(argv, root)
                check_scores(root, args.students, 3.0)
            rows.setdefault(label, []).append(result)
            print(
                f"[{round_ + 1}] {label:<42} {result[0]:7.2f} s  {result[1] / 2**20:7.0f} MiB",
                flush=True,
            )
    shutil.rmtree(tmp, ignore_errors=True)

    med = {label: statistics.median(w for w, _ in runs) for label, runs in rows.items()}
    peak = {label: max(m for _, m in runs) for label, runs in rows.items()}
    n = args.students
    print(
        f"\n{n} submissions, {args.size} x {args.steps} steps; {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print("| what | wall s | per submission s | peak RSS MiB |\n|---|---:|---:|---:|")
    for label in med:
        print(f"| {label} | {med[label]:.2f} | {med[label] / n:.2f} | {peak[label] / 2**20:.0f} |")

    def ratio(a: str, b: str) -> str:
        return f"{med[a] / med[b]:.2f}" if a in med and b in med else "n/a"

    nbg, bare = "nbgrader autograde", "bare nbclient, serial"
    print("\nratios (target):")
    print(
        f"- ours local 2 workers / nbgrader: "
        f"{ratio('ours local, 2 worker(s), sandbox on', nbg)} (<= 0.55)"
    )
    print(
        f"- ours local 1 worker / bare serial: "
        f"{ratio('ours local, 1 worker(s), sandbox on', bare)} (<= 1.1)"
    )
    for w in (1, 2):
        on = f"ours local, {w} worker(s), sandbox on"
        dask_on = f"ours dask, {w} worker(s), sandbox on"
        print(f"- dask / local, {w} worker(s): {ratio(dask_on, on)} (<= 1.1)")
    for w in (1, 2):
        on = f"ours local, {w} worker(s), sandbox on"
        off = f"ours local, {w} worker(s), sandbox off"
        if on in med and off in med:
            extra = (med[on] - med[off]) / n
            print(f"- sandbox overhead, {w} worker(s): {extra:+.3f} s per submission")
    for w in (1, 2):
        on = f"ours local, {w} worker(s), sandbox on, prestart"
        off = f"ours local, {w} worker(s), sandbox on, no-prestart"
        if on in med and off in med:
            gain = (med[off] - med[on]) / n
            print(f"- kernel prestart, {w} worker(s): {gain:+.3f} s saved per submission")
            print(f"- ours local {w} worker(s) (prestart) / bare serial: {ratio(on, bare)}")
            if w == 2:
                print(f"- ours local 2 workers (prestart) / nbgrader: {ratio(on, nbg)}")
    if "ours local, 1 worker(s), sandbox on" in med:
        over = (med["ours local, 1 worker(s), sandbox on"] - med[bare]) / n
        print(f"- ours (1 worker) over bare serial: {over:+.3f} s per submission")
    print(
        f"- floor for 2 workers / nbgrader on this machine (the work's own 2-way scaling): "
        f"{paired / 2 / alone * med[bare] / med[nbg]:.2f}"
        if bare in med and nbg in med
        else ""
    )
    if args.json:
        numbers = {"median_s": med, "peak_rss": peak, "students": n, "alone_s": alone}
        args.json.write_text(json.dumps({**numbers, "two_at_once_s": paired}))


if __name__ == "__main__":
    main()
