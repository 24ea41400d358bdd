"""What runs is what the grader says runs: a class of submissions that solve nothing and try
to score the tests anyway, by changing what runs (cell metadata, IPython's hooks, the
kernel's messaging, outputs cleared or forged), graded once end to end in the sandbox.

Every cheat writes the wrong ``squares``, so both tests fail when they run as written: any
point a cheat earns is a point the grader gave to code that did not run. Honest notebooks
that use ordinary IPython features (magics, ``display``, progress bars, inline figures)
are graded in full and never flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import complete, make_tiny_course, with_cell
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from autograder import gradebook
from autograder.config import Course
from autograder.grade import GradeSettings, grade
from autograder.results import SubmissionResult

pytestmark = pytest.mark.sandbox

SETTINGS = GradeSettings(sandbox=True, timeout_cell=20, timeout_total=90, memory_limit="1G")
WRONG = "def squares(n):\n    return [0]\n"
FULL = {"test_squares": 2.0, "test_total": 1.0, "explain": 0.0}
NONE = {"test_squares": 0.0, "test_total": 0.0, "explain": 0.0}

#: Cheats that change how IPython runs code, each appended to the wrong answer, so they are
#: in place before the first test runs.
HOOKS = {
    "ast": (
        "import ast\n"
        "class Nop(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n"
        "        return ast.Pass()\n"
        "get_ipython().ast_transformers.append(Nop())\n"
    ),
    "cleanup": (
        "get_ipython().input_transformers_cleanup.append(\n"
        "    lambda lines: ['pass\\n'] if any('assert' in l for l in lines) else lines)\n"
    ),
    "post": (
        "get_ipython().input_transformers_post.append(\n"
        "    lambda lines: ['pass\\n'] if any('assert' in l for l in lines) else lines)\n"
    ),
    "manager": (
        "tm = get_ipython().input_transformer_manager\n"
        "tm.transform_cell = lambda cell: 'pass\\n' if 'assert' in cell else cell\n"
    ),
    "transform": (
        "ip = get_ipython()\n"
        "original = ip.transform_cell\n"
        "ip.transform_cell = lambda cell: 'pass\\n' if 'assert' in cell else original(cell)\n"
    ),
    "cleared": (
        "from IPython.display import clear_output\n"
        "get_ipython().events.register('post_run_cell', lambda result: clear_output())\n"
    ),
    "swallow": (
        "def quiet(result):\n"
        "    result.error_in_exec = None\n"
        "get_ipython().events.register('post_run_cell', quiet)\n"
        "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
    ),
    "showtb": "get_ipython().showtraceback = lambda *args, **kwargs: None\n",
    "classtb": (
        "import IPython.core.interactiveshell as shell_module\n"
        "shell_module.InteractiveShell.showtraceback = lambda *args, **kwargs: None\n"
    ),
    "session": (
        "kernel = get_ipython().kernel\n"
        "send = kernel.session.send\n"
        "def quiet_send(stream, msg_or_type, content=None, *args, **kwargs):\n"
        "    kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type['msg_type']\n"
        "    if kind == 'error':\n"
        "        return None\n"
        "    if kind == 'execute_reply' and content and content.get('status') == 'error':\n"
        "        content = {'status': 'ok', 'execution_count': content.get('execution_count'),\n"
        "                   'user_expressions': {}, 'payload': []}\n"
        "    return send(stream, msg_or_type, content, *args, **kwargs)\n"
        "kernel.session.send = quiet_send\n"
    ),
    "displayhook": (
        "import sys\n"
        "sys.displayhook = lambda value: None\n"
        "get_ipython().displayhook.write_format_data = lambda *args, **kwargs: None\n"
    ),
    "stderr": "import io, sys\nsys.stderr = io.StringIO()\n",
    "tracer": (
        "import sys\ndef tracer(frame, event, arg):\n    return tracer\nsys.settrace(tracer)\n"
    ),
    "builtin": "import builtins\nbuiltins.AssertionError = type('AssertionError', (), {})\n",
    # Removing the grader's own check (it is a module of a random name) fails the check.
    "unwatch": (
        "import sys\n"
        "for name in [n for n in sys.modules if n.startswith('_autograder_watch_')]:\n"
        "    del sys.modules[name]\n"
        "get_ipython().ast_transformers.append(object())\n"
    ),
}

#: A thread that clears the test's outputs while it runs (no hook changed at all).
THREAD_CLEAR = (
    "import threading, time\n"
    "from IPython.display import clear_output\n"
    "def spam():\n"
    "    while True:\n"
    "        clear_output()\n"
    "        time.sleep(0.0005)\n"
    "threading.Thread(target=spam, daemon=True).start()\n"
)

#: A thread that puts a full-marks result at the top of every new cell's outputs, before
#: the test's own error: nbgrader reads the first result and stops.
THREAD_RESULT = (
    "import threading, time\n"
    "kernel = get_ipython().kernel\n"
    "def forge():\n"
    "    seen = None\n"
    "    while True:\n"
    "        parent = kernel.get_parent()\n"
    "        msg_id = (parent or {}).get('header', {}).get('msg_id')\n"
    "        if msg_id and msg_id != seen:\n"
    "            seen = msg_id\n"
    "            kernel.session.send(kernel.iopub_socket, 'execute_result',\n"
    "                {'data': {'text/plain': '2'}, 'metadata': {}, 'execution_count': 1},\n"
    "                parent=parent)\n"
    "        time.sleep(0.0005)\n"
    "threading.Thread(target=forge, daemon=True).start()\n"
)

#: Ordinary IPython features an honest notebook uses, each in a cell of its own before the
#: first test.
HONEST_CELLS = (
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('x')"
    "\nplt.show()",
    "%load_ext autoreload\n%autoreload 2",
    "%timeit -n 1 -r 1 sum(range(100))",
    "%%capture captured\nprint('hidden')",
    "%%time\nx = sum(range(1000))",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(5)):\n    pass",
    "from IPython.display import HTML, Markdown, clear_output, display\n"
    "display(HTML('<b>bold</b>'))\ndisplay(Markdown('*md*'))\nclear_output(wait=True)\n"
    "print('after clearing')",
    "import warnings, logging\nwarnings.filterwarnings('ignore')\nlogging.basicConfig()",
    "%env GRADING_NOTE=1\n%who",
    "import sys\nfor i in range(3):\n    print(f'\\r{i}', end='')\n    sys.stdout.flush()",
)

#: Cell metadata tricks, each applied to every test cell of a wrong notebook.
METADATA = {
    "skiptag": {"tags": ["skip-execution"]},
    "raisestag": {"tags": ["raises-exception", "skip-execution", "parameters"]},
    "jupyter": {"jupyter": {"source_hidden": True, "outputs_hidden": True}, "editable": False},
    "execution": {"execution": {"iopub.status.busy": "2020-01-01"}, "collapsed": True},
}


def _cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _submissions(course: Course) -> dict[str, NotebookNode]:
    subs: dict[str, NotebookNode] = {"alice": complete(course)}
    honest = complete(course)
    at = honest.cells.index(_cell(honest, "squares")) + 1
    honest.cells[at:at] = [new_code_cell(source) for source in HONEST_CELLS]
    subs["magic"] = honest
    for name, cheat in HOOKS.items():
        subs[name] = with_cell(complete(course), "squares", WRONG + cheat)
    subs["threadclear"] = with_cell(complete(course), "squares", WRONG + THREAD_CLEAR)
    subs["threadresult"] = with_cell(complete(course), "squares", WRONG + THREAD_RESULT)
    for name, metadata in METADATA.items():
        nb = with_cell(complete(course), "squares", WRONG)
        for grade_id in ("test_squares", "test_total"):
            _cell(nb, grade_id).metadata.update(json.loads(json.dumps(metadata)))
        subs[name] = nb
    # A test cell turned into a raw cell, and one emptied: both are restored and run.
    raw = with_cell(complete(course), "squares", WRONG)
    _cell(raw, "test_squares").cell_type = "raw"
    _cell(raw, "test_squares").pop("outputs", None)
    _cell(raw, "test_squares").pop("execution_count", None)
    subs["raw"] = with_cell(raw, "test_total", "")
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SubmissionResult]:
    course = make_tiny_course(tmp_path_factory.mktemp("watch") / "course")
    for student, nb in _submissions(course).items():
        folder = course.submitted(student, "tiny")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "tiny.ipynb")
    report = grade(course, "tiny", settings=SETTINGS, backend="local", workers=2)
    results = {r.student: r for r in report.graded}
    results["_course"] = course  # type: ignore[assignment]
    return results


def _scores(result: SubmissionResult) -> dict[str, float]:
    return {i.id: i.score for i in result.items}


def test_honest_notebooks_with_ordinary_ipython_features_are_not_flagged(graded) -> None:
    for student in ("alice", "magic"):
        result = graded[student]
        assert (result.status, result.message, _scores(result)) == ("graded", "", FULL), student
        assert result.flags == [], student
        assert all(i.message == "passed" for i in result.items if i.kind == "test")


@pytest.mark.parametrize("student", sorted(HOOKS))
def test_a_changed_hook_earns_nothing_and_is_flagged(graded, student: str) -> None:
    result = graded[student]
    assert _scores(result) == NONE, result.items
    if student == "cleared":
        # clear_output from a callback: the record of the error decides, and the callback
        # is the notebook's own, so it is flagged too.
        assert "an IPython event callback (post_run_cell)" in result.flags[0]
    assert len(result.flags) == 1, result
    assert result.flags[0].startswith("tiny.ipynb changed how IPython runs code (")
    message = result.item("test_squares").message
    assert message.startswith("scored 0: the notebook changed "), message
    assert "a test counts only when it runs as the assignment wrote it" in message


def test_each_hook_is_named_in_words_of_the_grader(graded) -> None:
    expected = {
        "ast": "an IPython AST transformer",
        "cleanup": "an IPython input transformer",
        "post": "an IPython input transformer",
        "manager": "IPython's input transformation",
        "transform": "a method of IPython's shell (transform_cell)",
        "swallow": "IPython's custom exception handler",
        "showtb": "a method of IPython's shell (showtraceback)",
        "classtb": "a method of IPython's shell (showtraceback)",
        "session": "the kernel's messaging",
        "displayhook": "IPython's display hook",
        "stderr": "sys.stderr",
        "tracer": "a trace function (sys.settrace)",
        "builtin": "a built-in (AssertionError)",
        "unwatch": "the grader's check of the kernel failed (KeyError)",
    }
    for student, words in expected.items():
        assert words in graded[student].flags[0], (student, graded[student].flags)


def test_outputs_cleared_or_forged_from_a_thread_do_not_erase_a_failure(graded) -> None:
    for student in ("threadclear", "threadresult"):
        result = graded[student]
        assert (result.status, _scores(result)) == ("graded", NONE), (student, result.items)


def test_cell_metadata_never_changes_what_runs(graded) -> None:
    for student in (*METADATA, "raw"):
        result = graded[student]
        assert (result.status, _scores(result)) == ("graded", NONE), (student, result.items)
        assert result.item("test_squares").message.startswith("the test failed"), student
        assert result.flags == []


def test_flags_reach_results_json_and_the_table(graded, capsys) -> None:
    from autograder import console

    course: Course = graded["_course"]  # type: ignore[assignment]
    stored = {r.student: r for r in gradebook.load_results(course.gradebook_url, "tiny")}
    assert stored["ast"].to_json()["flags"] == graded["ast"].flags
    assert stored["alice"].to_json()["flags"] == []
    console.results_table([stored["alice"], stored["ast"]])
    table = capsys.readouterr().out
    assert "FLAGGED: tiny.ipynb changed how IPython runs code" in table


def test_a_test_that_did_not_run_scores_nothing(tmp_path: Path) -> None:
    # Scoring alone: a test cell the kernel never answered for, outputs or not, is 0.
    from autograder.config import load_assignment
    from autograder.execute import ExecutionOutcome
    from autograder.release import source_index
    from autograder.sanitize import SanitizeContext
    from autograder.scoring import score_notebook

    course = make_tiny_course(tmp_path / "course")
    source = source_index(course, load_assignment(course, "tiny"))["tiny"]
    nb = complete(course)
    outcome = ExecutionOutcome(nb=nb)
    items = {i.id: i for i in score_notebook(nb, source, SanitizeContext(source), outcome)}
    assert items["test_squares"].score == 0.0
    assert items["test_squares"].message == "this test did not run"


def _scored(cell_source: str, outputs: list[dict], results: int, points: float = 1.0):
    """Score one test cell that ran, with the outputs and the count of results given."""
    from nbformat.v4 import new_notebook, new_output

    from autograder.execute import ExecutionOutcome
    from autograder.outputcap import CellEvidence
    from autograder.release import SourceCell, SourceNotebook
    from autograder.sanitize import SanitizeContext
    from autograder.scoring import score_notebook

    cell = new_code_cell(cell_source)
    cell.metadata["nbgrader"] = {
        "grade": True, "grade_id": "t", "locked": True, "points": points,
        "schema_version": 3, "solution": False,
    }  # fmt: skip
    cell.outputs = [new_output(**o) for o in outputs]
    nb = new_notebook(cells=[cell])
    source = SourceNotebook(
        name="n",
        kernelspec={},
        cells=(
            SourceCell(
                grade_id="t", cell_type="code", source=cell_source, checksum=None,
                locked=True, grade=True, solution=False, task=False, points=points,
            ),
        ),
    )  # fmt: skip
    outcome = ExecutionOutcome(
        nb=nb, replies={0: "ok"}, evidence={0: CellEvidence(results=results)}
    )
    return score_notebook(nb, source, SanitizeContext(source), outcome)[0]


def test_a_result_the_test_did_not_make_earns_nothing() -> None:
    forged = {"output_type": "execute_result", "data": {"text/plain": "1"}, "execution_count": 1}
    # A test whose last statement is no expression makes no result of its own.
    item = _scored("assert True", [forged], results=1)
    assert (item.score, item.message) == (
        0.0,
        "scored 0: a result appeared that the test's own code did not produce",
    )
    # One ending in an expression makes one; a second is someone else's.
    assert _scored("0.5", [forged, forged], results=2).score == 0.0
    assert _scored("x = 1\n1", [forged], results=1).score == 1.0
    # nbgrader's partial credit, kept: a number from the test's own expression.
    half = {"output_type": "execute_result", "data": {"text/plain": "0.5"}, "execution_count": 1}
    assert _scored("%time 0.5", [half], results=1).score == 0.5


def test_a_result_nbgrader_cannot_read_scores_zero_without_stopping_the_grading() -> None:
    for text in ("", "7"):  # empty (nbgrader's KeyError), over the maximum (its ValueError)
        result = {"output_type": "execute_result", "data": {"text/plain": text}}
        item = _scored("value", [{**result, "execution_count": 1}], results=1)
        assert (item.score, item.message) == (
            0.0,
            "scored 0: the test's result is not a number of points nbgrader can read (0 to 1)",
        )
