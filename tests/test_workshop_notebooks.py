"""The two workshop notebooks in source/: released in sync, stripped, valid, gradable, Keras 3.

The slow tests grade the real notebooks with the fast parameters of their assignment.toml, in
a copy of the course with the embedded digits prepared: the instructor solution must pass
everything (``validate``), and the released notebook submitted unchanged must run to the end
and score nothing.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from autograder.config import Course, load_assignment
from autograder.datasets import prepare
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.validate import validate

WORKSHOP = ("mnist-kaggle", "transfer-learning")
COURSE = Course.at(REPO)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

#: Keras 2 / TF 1 idioms that fail (or are deprecated) under Keras 3, with what to write.
REMOVED_APIS = {
    r"\.predict_classes\(": "removed in Keras 3: use model.predict(x).argmax(axis=1)",
    r"\.predict_proba\(": "removed in Keras 3: use model.predict(x)",
    r"\.(fit|evaluate|predict)_generator\(": "removed in Keras 3: pass the generator to fit",
    r"\blr\s*=": "Keras 3 optimizers take learning_rate=, not lr=",
    r"\bdecay\s*=": "Keras 3 optimizers have no decay=: use a LearningRateSchedule",
    r"%tensorflow_version": "a Colab magic for TensorFlow 1; remove it",
    r"ImageDataGenerator": "deprecated: use keras.utils.image_dataset_from_directory and layers",
    r"keras\.preprocessing\.image": "deprecated: use keras.utils and keras.layers",
    r"\btf\.keras\b|tensorflow\.keras|from tensorflow import keras": "import keras (Keras 3)",
    r"keras\.utils\.np_utils": "removed: keras.utils.to_categorical",
}


def source_notebooks() -> list[Path]:
    return sorted((REPO / "source").glob("*/*.ipynb"))


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _between(text: str, begin: str, end: str) -> list[str]:
    """The non-blank lines of ``text`` between the ``### begin`` and ``### end`` markers."""
    lines, inside = [], False
    for line in text.splitlines():
        if f"### {begin}" in line:
            inside = True
        elif f"### {end}" in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def removed_api_uses(nb: nbformat.NotebookNode) -> list[str]:
    """``cell id: pattern (why)`` for every code cell using an API Keras 3 removed."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for pattern, why in REMOVED_APIS.items():
            if re.search(pattern, cell.source):
                found.append(f"{cell.get('id', '?')}: {pattern} ({why})")
    return found


def test_the_workshop_assignments_are_in_the_course_with_one_notebook_each():
    assert set(WORKSHOP) <= set(COURSE.assignments())
    for name in WORKSHOP:
        assert load_assignment(COURSE, name).notebooks == (name,)


@pytest.mark.parametrize("assignment", WORKSHOP)
def test_committed_release_is_in_sync_with_source(assignment):
    report = release(COURSE, assignment, check=True)
    assert report.in_sync, "; ".join(report.problems()) + (
        " -- run 'autograder release' and commit release/"
    )


@pytest.mark.parametrize("assignment", WORKSHOP)
def test_released_notebooks_hold_no_solutions_and_no_hidden_tests(assignment):
    source = nbformat.read(COURSE.source(assignment) / f"{assignment}.ipynb", as_version=4)
    released_path = COURSE.release(assignment) / f"{assignment}.ipynb"
    text = released_path.read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text, f"{released_path} contains '{marker}'"
    released = {_grade_id(c): c for c in nbformat.reads(text, as_version=4).cells if _grade_id(c)}
    solutions = hidden = 0
    for cell in source.cells:
        gid = _grade_id(cell)
        if gid is None:
            continue
        secret = _between(cell.source, "BEGIN SOLUTION", "END SOLUTION")
        secret += _between(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        solutions += "BEGIN SOLUTION" in cell.source
        hidden += "BEGIN HIDDEN TESTS" in cell.source
        shown = {line.strip() for line in released[gid].source.splitlines()}
        # Lines of code, not lone brackets: ')' closes released code too.
        leaked = [line for line in secret if line in shown and re.search(r"\w", line)]
        assert not leaked, f"{assignment}: cell {gid!r} releases {leaked}"
    # The notebooks are exercises: each has solution cells and hidden tests to strip.
    assert solutions >= 3 and hidden >= 3


def test_the_offline_base_is_released_and_small():
    released = COURSE.release("transfer-learning") / "pretrained_base.keras"
    assert (
        released.read_bytes()
        == (COURSE.source("transfer-learning") / "pretrained_base.keras").read_bytes()
    )
    assert released.stat().st_size < 1024 * 1024


@pytest.mark.parametrize("assignment", WORKSHOP)
def test_grading_parameters_name_variables_of_the_parameters_cell(assignment):
    # A misspelt parameter would be injected as a new variable and change nothing.
    config = load_assignment(COURSE, assignment)
    nb = nbformat.read(COURSE.source(assignment) / f"{assignment}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{assignment}: {len(cells)} cells tagged 'parameters'"
    assigned = {
        target.id
        for node in ast.parse(cells[0].source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert set(config.execute.parameters) <= assigned, sorted(
        set(config.execute.parameters) - assigned
    )
    # Grading never talks to Kaggle.
    assert config.execute.parameters.get("SUBMIT", False) is False


def test_source_notebooks_use_no_api_keras_3_removed():
    notebooks = source_notebooks()
    assert set(WORKSHOP) <= {p.parent.name for p in notebooks}
    problems = {
        str(p.relative_to(REPO)): removed_api_uses(nbformat.read(p, as_version=4))
        for p in notebooks
    }
    assert problems == {str(p.relative_to(REPO)): [] for p in notebooks}


def test_the_removed_api_scan_catches_keras_2_code():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "opt = keras.optimizers.Adam(lr=0.01, decay=1e-6)\n"
                "model.fit_generator(gen)\nmodel.predict_classes(x)",
                id="old",
            ),
            nbformat.v4.new_code_cell("from tensorflow import keras", id="tf-keras"),
            nbformat.v4.new_code_cell(
                "keras.optimizers.Adam(learning_rate=0.01)\nmodel.predict(x).argmax(axis=1)",
                id="new",
            ),
        ]
    )
    assert removed_api_uses(nb) == [
        r"old: \.predict_classes\( (removed in Keras 3: use model.predict(x).argmax(axis=1))",
        r"old: \.(fit|evaluate|predict)_generator\( (removed in Keras 3: pass the generator to fit)",
        r"old: \blr\s*= (Keras 3 optimizers take learning_rate=, not lr=)",
        r"old: \bdecay\s*= (Keras 3 optimizers have no decay=: use a LearningRateSchedule)",
        r"tf-keras: \btf\.keras\b|tensorflow\.keras|from tensorflow import keras "
        "(import keras (Keras 3))",
    ]


# --- slow: the real notebooks, graded ----------------------------------------------------------


@pytest.fixture(scope="module")
def workshop_course(tmp_path_factory) -> Course:
    """A copy of the course's source/ and committed release/, with the digits prepared."""
    root = tmp_path_factory.mktemp("workshop")
    for name in WORKSHOP:
        shutil.copytree(COURSE.source(name), root / "source" / name)
        shutil.copytree(COURSE.release(name), root / "release" / name)
    course = Course.at(root)
    prepare("digits", course=course)
    return course


@pytest.mark.slow
@pytest.mark.parametrize("assignment", WORKSHOP)
def test_solution_gets_full_marks_and_the_unchanged_release_gets_none(workshop_course, assignment):
    course = workshop_course
    settings = GradeSettings(sandbox=False)
    report = validate(course, assignment, settings=settings)
    assert report.ok, report.problems
    assert report.manual == ()
    solution = report.result
    assert solution.status == "graded"
    assert solution.score == solution.max_score > 0
    assert [i.kind for i in solution.items if i.kind != "test"] == (
        ["accuracy", "csv"] if assignment == "mnist-kaggle" else []
    )

    folder = course.submitted("unchanged", assignment)
    folder.mkdir(parents=True)
    shutil.copyfile(
        course.release(assignment) / f"{assignment}.ipynb", folder / f"{assignment}.ipynb"
    )
    graded = grade(course, assignment, settings=settings, backend="local", workers=1).graded
    assert [r.student for r in graded] == ["unchanged"]
    unchanged = graded[0]
    assert unchanged.status == "graded", unchanged.message
    assert unchanged.max_score == solution.max_score
    assert [i.id for i in unchanged.items] == [i.id for i in solution.items]
    scored = {i.id: i.score for i in unchanged.items if i.score}
    assert scored == {}, f"the released notebook scores without any work: {scored}"
    for item in unchanged.items:
        assert not item.passed and item.message, item
