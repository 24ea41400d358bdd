"""What the sandbox costs at start-up, and how memory limits get along with TensorFlow.

Run by hand from the repository root (results go to docs/benchmarks.md):

    PYTHONPATH=$PWD python bench/bench_sandbox.py              # start-up overhead
    PYTHONPATH=$PWD python bench/bench_sandbox.py --tensorflow # RLIMIT_AS vs RLIMIT_DATA

Start-up: a bare ``python -I -S -c pass`` and a kernel (start until it answers kernel_info,
then shutdown), each plain and sandboxed, median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

from autograder import limits
from autograder.kernel import SandboxedKernelManager
from autograder.sandbox import SandboxPolicy, run_sandboxed

TF_FIT = """
import resource, numpy as np, keras
x = np.random.rand(512, 28, 28, 1).astype('float32'); y = np.random.randint(0, 10, 512)
m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation='relu'),
                      keras.layers.Flatten(), keras.layers.Dense(10, activation='softmax')])
m.compile('adam', 'sparse_categorical_crossentropy')
m.fit(x, y, epochs=1, verbose=0)
status = dict(l.split(':', 1) for l in open('/proc/self/status') if l.startswith('Vm'))
print('fit ok', status['VmPeak'].strip(), 'peak address space,', status['VmData'].strip(), 'data')
"""


def median_time(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def kernel_round_trip(km: AsyncKernelManager) -> None:
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)
        await km.cleanup_resources()


async def watchdog_look(policy: SandboxPolicy, looks: int = 200) -> float:
    """Seconds one look of the memory watchdog takes (it looks every WATCH_INTERVAL_S)."""
    km = SandboxedKernelManager(policy=policy)
    await km.start_kernel()
    try:
        assert km.provisioner is not None and km.provisioner.process is not None
        outer = km.provisioner.process.pid
        await asyncio.sleep(1)
        init = limits.children(outer)[0]
        start = time.perf_counter()
        for _ in range(looks):
            limits.sandbox_memory(init)
        return (time.perf_counter() - start) / looks
    finally:
        await km.shutdown_kernel(now=True)
        await km.cleanup_resources()


def bench_start(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        policy = SandboxPolicy(workdir=Path(tmp), memory_bytes=2 * 2**30)
        python = [sys.executable, "-I", "-S", "-c", "pass"]
        plain = median_time(lambda: subprocess.run(python, check=True), repeat)
        boxed = median_time(lambda: run_sandboxed(python, policy=policy, timeout=60), repeat)
        kplain = median_time(
            lambda: asyncio.run(kernel_round_trip(AsyncKernelManager(kernel_name="python3"))),
            repeat,
        )
        kboxed = median_time(
            lambda: asyncio.run(kernel_round_trip(SandboxedKernelManager(policy=policy))),
            repeat,
        )
        watch = asyncio.run(watchdog_look(policy))
    print(f"watchdog look  : {watch * 1000:.2f} ms per look at a running kernel's processes")
    print(f"python -c pass : plain {plain:.3f} s, sandboxed {boxed:.3f} s ({boxed - plain:+.3f})")
    print(
        f"kernel ready   : plain {kplain:.3f} s, sandboxed {kboxed:.3f} s ({kboxed - kplain:+.3f})"
    )


def bench_tensorflow(limit: int) -> None:
    for option in (f"--as={limit}", f"--data={limit}"):
        start = time.perf_counter()
        done = subprocess.run(
            ["prlimit", option, "--", sys.executable, "-c", TF_FIT], capture_output=True, text=True
        )
        took = time.perf_counter() - start
        lines = done.stdout.strip().splitlines() or [
            line for line in done.stderr.splitlines() if "failed" in line.lower()
        ]
        last = lines[-1] if lines else f"(no output; stderr ends {done.stderr[-100:]!r})"
        print(f"{option:>16}: exit {done.returncode:>4} in {took:5.1f} s: {last[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tensorflow", action="store_true", help="compare memory rlimits")
    parser.add_argument("--limit", type=int, default=2 * 2**30, help="bytes (default 2 GiB)")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"{platform.node()}: {cpu}, Python {sys.version.split()[0]}")
    if args.tensorflow:
        bench_tensorflow(args.limit)
    else:
        bench_start(args.repeat)


if __name__ == "__main__":
    main()
