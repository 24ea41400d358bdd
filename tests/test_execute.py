"""Running notebooks: timeouts, output floods, dead kernels, nbgrader's showtraceback defence."""

from __future__ import annotations

import re

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.execute import ExecutionLimits, execute_notebook


def run(tmp_path, *sources, collect=(), **limits):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    options = {"timeout_cell": 20, "timeout_total": 60, **limits}
    return execute_notebook(
        nb, workdir=tmp_path, limits=ExecutionLimits(**options), collect=collect
    )


def kinds(cell):
    return [(o.get("output_type"), o.get("name") or o.get("ename")) for o in cell.outputs]


def test_a_slow_cell_is_interrupted_and_the_rest_still_runs(tmp_path):
    out = run(tmp_path, "import time; time.sleep(30)", "x = 41 + 1\nx", timeout_cell=2)
    assert out.status == "timeout"
    assert (
        out.message
        == "cell [1] ran past its 2 s limit and was interrupted; the other cells were run"
    )
    assert ("error", "CellTimeoutError") in kinds(out.nb.cells[0])
    assert out.nb.cells[1].outputs[0]["data"]["text/plain"] == "42"


def test_the_total_limit_stops_the_notebook(tmp_path):
    out = run(
        tmp_path,
        "import time; time.sleep(2)",
        "time.sleep(2)",
        "time.sleep(2)",
        "y = 1",
        timeout_cell=20,
        timeout_total=3,
    )
    assert out.status == "timeout"
    assert out.message.startswith("the notebook ran past its 3 s limit")
    assert out.nb.cells[3].outputs == []


def test_a_kernel_that_ignores_interrupts_is_given_up(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.1)"
    out = run(tmp_path, code, "z = 1", timeout_cell=2)
    assert out.status == "timeout"
    assert out.message == (
        "cell [1] ran past its 2 s limit and did not stop when interrupted; the cells after it "
        "were not run"
    )


def test_a_notebook_that_breaks_the_kernels_messaging_is_stopped_and_not_collected(tmp_path):
    # Replacing len() breaks ipykernel's own message handling: no reply ever comes again.
    out = run(
        tmp_path,
        "import builtins; builtins.len = lambda *a, **k: 1",
        "print('after')",
        timeout_cell=3,
        collect=["print('collected')"],
    )
    assert out.status == "timeout"
    assert not out.responsive
    # The cell that breaks it may still get its own reply out (whether ipykernel calls len()
    # on the way depends on what it has sent before): then the next cell is the one stopped.
    assert re.match(
        r"cell \[[12]\] ran past its 3 s limit and did not stop when interrupted", out.message
    ), out.message
    assert out.collected == []


def test_output_floods_are_capped_but_stderr_and_errors_survive(tmp_path):
    code = (
        "import sys\n"
        "for i in range(20000): print('x' * 100)\n"
        "print('late warning', file=sys.stderr)\n"
        "raise ValueError('after the flood')"
    )
    out = run(tmp_path, code, max_output_lines=100, max_output_bytes=50_000)
    cell = out.nb.cells[0]
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    assert len(text) < 60_000
    assert "output truncated by the autograder" in text
    assert ("stream", "stderr") in kinds(cell)
    assert ("error", "ValueError") in kinds(cell)


def test_showtraceback_cheat_still_records_the_error(tmp_path):
    out = run(
        tmp_path,
        "import IPython.core.interactiveshell as s\ns.InteractiveShell.showtraceback = lambda *a, **k: None",
        "assert 1 == 2",
    )
    assert ("error", "AssertionError") in kinds(out.nb.cells[1])


def test_os_exit_is_a_dead_kernel(tmp_path):
    out = run(tmp_path, "a = 1", "import os; os._exit(3)", "b = 2")
    assert out.status == "kernel-died"
    assert out.message == (
        "the Python kernel stopped in cell [2] (it crashed, exited or was killed); the cells after "
        "it were not run"
    )


def test_collection_runs_after_the_notebook_and_stays_out_of_it(tmp_path):
    out = run(tmp_path, "secret = 6 * 7", collect=["print(secret)"])
    assert out.collected == [[{"output_type": "stream", "name": "stdout", "text": "42\n"}]]
    assert len(out.nb.cells) == 1


def test_memory_error_sets_the_memory_status(tmp_path):
    out = run(tmp_path, "raise MemoryError()")
    assert out.status == "memory"
    assert (
        out.message
        == "cell [1] ran out of memory; use fewer images at once or a smaller batch size"
    )


@pytest.mark.parametrize("code", ["import sys; sys.exit(0)", "exit()"])
def test_sys_exit_is_just_an_error_in_the_cell(tmp_path, code):
    out = run(tmp_path, code, "c = 3")
    assert out.status == "graded"


def test_a_crash_names_the_cell_as_the_page_labels_it(tmp_path):
    # Markdown between the code cells, and a cell that runs code of its own in the kernel
    # (its execution count would run ahead): the message and the labels still agree.
    from nbformat.v4 import new_markdown_cell

    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title"),
            new_code_cell("get_ipython().run_cell('x = 1'); get_ipython().run_cell('y = 2')"),
            new_markdown_cell("## Train"),
            new_code_cell("z = 3"),
            new_markdown_cell("## Crash"),
            new_code_cell("import os; os._exit(3)"),
        ]
    )
    out = execute_notebook(
        nb, workdir=tmp_path, limits=ExecutionLimits(timeout_cell=20, timeout_total=60)
    )
    counts = [c.execution_count for c in out.nb.cells if c.cell_type == "code"]
    assert counts == [1, 2, 3]
    assert out.message.startswith("the Python kernel stopped in cell [3] ")


def test_native_writes_stay_out_of_the_cell_and_python_stderr_stays_in(tmp_path):
    # The unsandboxed kernel starts as the sandboxed one does (tests/test_kernel_stderr.py
    # grades TensorFlow's start-up lines in the sandbox): fd 2 is the kernel's, sys.stderr
    # the cell's.
    out = run(
        tmp_path,
        "import os, sys\nos.write(2, b'I0000 native line\\n')\nprint('mine', file=sys.stderr)",
    )
    stderr = [o.text for o in out.nb.cells[0].outputs if o.get("name") == "stderr"]
    assert stderr == ["mine\n"]
