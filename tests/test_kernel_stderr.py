"""A test cell's stderr holds what the notebook's Python wrote, never a library's native chatter.

nbgrader scores a test cell with any stderr 0. TensorFlow writes its absl and oneDNN start-up
lines from C++ straight to file descriptor 2 while it loads, so an honest notebook whose first
``import keras`` sits in a test cell lost that test. Grading kernels start with ipykernel's
``capture_fd_output`` off (``kernel.KERNEL_ARGV``): native writes go to the kernel's log.
What Python writes to ``sys.stderr`` still reaches the cell and costs the test, as in
nbgrader, Keras' warnings about the participant's own model included.

One class is graded once in the sandbox, through ``grade`` (two workers, so later kernels
are prestarted spares).
"""

from __future__ import annotations

import nbformat
import pytest
from conftest import KERNELSPEC, graded
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from autograder.config import Course
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.results import SubmissionResult

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

BUILD = (
    "def build():\n"
    "    ### BEGIN SOLUTION\n"
    "    import keras\n"
    "    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
    "    ### END SOLUTION"
)
DOUBLE = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
#: The notebook's first `import keras` (and TensorFlow's first operation) run in this test.
TEST_MODEL = (
    "import keras\n"
    "import numpy as np\n"
    "model = build()\n"
    "assert isinstance(model, keras.Model)\n"
    "assert model.predict(np.zeros((1, 3)), verbose=0).shape == (1, 2)"
)
HONEST_BUILD = (
    "def build():\n"
    "    import keras\n"
    "    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])"
)
HONEST_DOUBLE = "def double(x):\n    return 2 * x"
#: Keras 3 warns (Python's warnings, to sys.stderr) about an input_shape given to a layer.
OLD_STYLE_BUILD = (
    "def build():\n"
    "    import keras\n"
    "    return keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])"
)
NATIVE_WRITE = (
    "import os\n\ndef double(x):\n    os.write(2, b'E0000 native note\\n')\n    return 2 * x"
)
PYTHON_WRITE = (
    "import sys\n\ndef double(x):\n    print('debug', x, file=sys.stderr)\n    return 2 * x"
)
STDERR_RULE = "the test wrote to stderr, which counts as a failure"


def _source() -> NotebookNode:
    cells = [
        graded(new_code_cell(BUILD), "build", solution=True),
        graded(new_code_cell(TEST_MODEL), "test_model", grade=True, points=2),
        graded(new_code_cell(DOUBLE), "double", solution=True),
        graded(new_code_cell("assert double(3) == 6"), "test_double", grade=True, points=1),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


def _answered(build: str, double: str) -> NotebookNode:
    nb = _source()
    nb.cells[0].source, nb.cells[2].source = build, double
    return nb


SUBMISSIONS = {
    "honest": _answered(HONEST_BUILD, HONEST_DOUBLE),
    "old-style": _answered(OLD_STYLE_BUILD, HONEST_DOUBLE),
    "native": _answered(HONEST_BUILD, NATIVE_WRITE),
    "printer": _answered(HONEST_BUILD, PYTHON_WRITE),
}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, dict]:
    root = tmp_path_factory.mktemp("stderr") / "course"
    source = root / "source" / "noise"
    source.mkdir(parents=True)
    nbformat.write(_source(), source / "noise.ipynb")
    (source / "assignment.toml").write_text(
        "[assignment]\ntitle = 'Noise'\n\n[execute]\ntimeout_cell = 300\ntimeout_total = 600\n"
    )
    course = Course.at(root)
    release(course, "noise")
    for student, nb in SUBMISSIONS.items():
        folder = course.submitted(student, "noise")
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "noise.ipynb")
    report = grade(
        course, "noise", settings=GradeSettings(sandbox=True), backend="local", workers=2
    )
    return course, {r.student: r for r in report.graded}


def _scores(result: SubmissionResult) -> dict[str, float]:
    return {i.id: i.score for i in result.items}


def _stderr(course: Course, student: str, grade_id: str) -> str:
    nb = nbformat.read(course.autograded(student, "noise") / "noise.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == grade_id)
    return "".join(o.text for o in cell.outputs if o.get("name") == "stderr")


def test_a_first_import_keras_in_a_test_cell_scores_in_full(graded_class) -> None:
    course, results = graded_class
    honest = results["honest"]
    assert (honest.status, honest.message) == ("graded", "")
    assert _scores(honest) == {"test_model": 2.0, "test_double": 1.0}
    # TensorFlow loaded and ran in that cell, and nothing of its absl or oneDNN lines is left.
    assert _stderr(course, "honest", "test_model") == ""


def test_keras_warnings_about_the_participants_own_model_still_count(graded_class) -> None:
    course, results = graded_class
    old_style = results["old-style"]
    assert _scores(old_style) == {"test_model": 0.0, "test_double": 1.0}
    assert old_style.item("test_model").message.startswith(STDERR_RULE)
    assert "Do not pass an `input_shape`" in _stderr(course, "old-style", "test_model")


def test_the_notebooks_python_stderr_still_counts(graded_class) -> None:
    course, results = graded_class
    assert _scores(results["printer"]) == {"test_model": 2.0, "test_double": 0.0}
    assert _stderr(course, "printer", "test_double") == "debug 3\n"


def test_native_writes_to_fd_2_go_to_the_kernels_log(graded_class) -> None:
    # The boundary, whoever writes: a C library's lines, or the participant's own os.write.
    course, results = graded_class
    assert _scores(results["native"]) == {"test_model": 2.0, "test_double": 1.0}
    assert _stderr(course, "native", "test_double") == ""
