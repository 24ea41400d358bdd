"""The two workshop notebooks in source/: released in sync, stripped, valid, gradable, Keras 3.

The slow tests grade the real notebooks with the fast parameters of their assignment.toml, in
a copy of the course with the embedded digits prepared: the instructor solution must pass
everything (``validate``), the released notebook submitted unchanged must run to the end and
score nothing, and every set of alternative answers in ``tests/fixtures/workshop/`` (other
honest answers the exercises' text allows, in the styles of the original workshop and
others) must get full marks. Fine-tuning is run on a real MobileNetV2 (random weights: the
ImageNet ones cannot be downloaded here) to show that it trains the top block's convolutions.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from autograder.config import Course, load_assignment
from autograder.datasets import prepare
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.results import SubmissionResult
from autograder.validate import validate

WORKSHOP = ("mnist-kaggle", "transfer-learning")
COURSE = Course.at(REPO)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
#: ``<assignment>/<student>/<grade id>.py``: the whole solution cell of another honest answer.
ALTERNATIVES = REPO / "tests" / "fixtures" / "workshop"
ALTERNATIVE_STUDENTS = {
    name: sorted(p.name for p in (ALTERNATIVES / name).iterdir() if p.is_dir()) for name in WORKSHOP
}

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


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(COURSE.source(assignment) / f"{assignment}.ipynb", as_version=4)


def cell_source(assignment: str, cell_id: str) -> str:
    """The source of the cell ``cell_id`` of the instructor notebook."""
    return next(c.source for c in source_notebook(assignment).cells if c.get("id") == cell_id)


def reference_answers(assignment: str) -> dict[str, str]:
    """grade id -> the instructor's solution cell without nbgrader's markers."""
    return {
        _grade_id(cell): "\n".join(
            line
            for line in cell.source.splitlines()
            if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
        )
        for cell in source_notebook(assignment).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def alternative_answers(assignment: str, student: str) -> dict[str, str]:
    """grade id -> the solution cell of one set of alternative answers."""
    folder = ALTERNATIVES / assignment / student
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}


def alternative_notebook(assignment: str, student: str) -> nbformat.NotebookNode:
    """The released notebook with its solution cells answered as ``student`` answers them."""
    answers = alternative_answers(assignment, student)
    nb = nbformat.read(COURSE.release(assignment) / f"{assignment}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[_grade_id(cell)]
    return nb


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


@pytest.mark.parametrize("assignment", WORKSHOP)
def test_every_exercise_has_alternative_answers_unlike_the_reference_and_each_other(assignment):
    reference = reference_answers(assignment)
    students = ALTERNATIVE_STUDENTS[assignment]
    assert len(students) >= 2, f"{assignment}: {students}"
    seen = {gid: {ast.dump(ast.parse(code))} for gid, code in reference.items()}
    for student in students:
        answers = alternative_answers(assignment, student)
        assert sorted(answers) == sorted(reference), f"{assignment}/{student} answers other cells"
        for gid, code in answers.items():
            shape = ast.dump(ast.parse(code))
            assert shape not in seen[gid], f"{assignment}/{student}/{gid}.py repeats another answer"
            seen[gid].add(shape)
    released = alternative_notebook(assignment, students[0])
    code = "".join(c.source for c in released.cells if c.cell_type == "code")
    assert "NotImplementedError" not in code


# --- the Kaggle files, with and without an account ------------------------------------------------


def _tiny_mnist():
    # 100 distinct random digits in keras.datasets.mnist's shape: 80 for training, 20 for test
    images = np.random.default_rng(0).integers(0, 256, (100, 28, 28), dtype=np.uint8)
    labels = (np.arange(100) % 10).astype(np.uint8)
    return (images[:80], labels[:80]), (images[80:], labels[80:])


def _offline():
    raise OSError("no network")


def run_kaggle_cell(folder: Path, cell_id: str, load_data=_tiny_mnist, **names) -> dict:
    """Run a cell of the exercise's Kaggle section with keras.datasets.mnist stubbed."""
    mnist = types.SimpleNamespace(load_data=load_data)
    namespace = {
        "os": os,
        "Path": Path,
        "np": np,
        "pd": pd,
        "keras": types.SimpleNamespace(datasets=types.SimpleNamespace(mnist=mnist)),
        "DATA_DIR": str(folder),
        "COMPETITION": "digit-recognizer",
        "SEED": 42,
        **names,
    }
    exec(compile(cell_source("mnist-kaggle", cell_id), cell_id, "exec"), namespace)
    return namespace


@pytest.fixture
def no_kaggle_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)


def fake_kaggle_client(monkeypatch, download) -> None:
    """A stand-in for the kaggle package whose download calls ``download(competition, path)``."""

    class KaggleApi:
        def authenticate(self):
            pass

        def competition_download_files(self, competition, path):
            download(competition, Path(path))

    module = types.ModuleType("kaggle.api.kaggle_api_extended")
    module.KaggleApi = KaggleApi
    for name in ("kaggle", "kaggle.api"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", module)


def test_without_kaggle_files_or_account_the_exercise_builds_them_from_keras_mnist(
    tmp_path, no_kaggle_token, capsys
):
    data = tmp_path / "data"
    run_kaggle_cell(data, "get-kaggle")
    assert capsys.readouterr().out == (
        "No Kaggle API token on this machine.\n"
        f"Built Kaggle-format train.csv (60 labelled digits) and test.csv (40) in {data} from "
        "keras.datasets.mnist, with the test labels in test_labels.csv. Kaggle cannot score a "
        "submission made from them: section 8 scores it here instead.\n"
    )
    pixels = [f"pixel{i}" for i in range(784)]
    train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
    assert list(train.columns) == ["label", *pixels] and list(test.columns) == pixels
    assert (len(train), len(test)) == (60, 40)
    # Every row is one of MNIST's digits, with its own label; together they are all of them.
    (x_tr, y_tr), (x_te, y_te) = _tiny_mnist()
    label_of = {
        image.tobytes(): label for image, label in zip([*x_tr, *x_te], [*y_tr, *y_te], strict=True)
    }
    test_labels = pd.read_csv(data / "test_labels.csv")
    assert test_labels["ImageId"].tolist() == list(range(1, 41))
    rows = [*train[pixels].to_numpy(np.uint8), *test.to_numpy(np.uint8)]
    assert [label_of[row.tobytes()] for row in rows] == [
        *train["label"].tolist(),
        *test_labels["Label"].tolist(),
    ]
    assert len({row.tobytes() for row in rows}) == 100
    sample = pd.read_csv(data / "sample_submission.csv")
    assert list(sample.columns) == ["ImageId", "Label"] and len(sample) == 40

    # Run again, the files are used as they are; and the submit cell scores them here.
    made = (data / "train.csv").stat().st_mtime_ns
    run_kaggle_cell(data, "get-kaggle", load_data=_offline)
    assert capsys.readouterr().out == (
        f"Using {data / 'train.csv'} and {data / 'test.csv'} "
        "(built from keras.datasets.mnist, not Kaggle's).\n"
    )
    assert (data / "train.csv").stat().st_mtime_ns == made
    submission = tmp_path / "submission.csv"
    guesses = test_labels["Label"].to_numpy().copy()
    guesses[:10] = (guesses[:10] + 1) % 10
    pd.DataFrame({"ImageId": range(1, 41), "Label": guesses}).to_csv(submission, index=False)
    namespace = run_kaggle_cell(data, "get-kaggle", load_data=_offline)
    capsys.readouterr()
    namespace.update(SUBMIT=True, SUBMISSION_FILE=str(submission), kaggle_predictions=guesses)
    exec(compile(cell_source("mnist-kaggle", "submit"), "submit", "exec"), namespace)
    assert capsys.readouterr().out == (
        f"{submission} was made from the test.csv built from MNIST, which Kaggle cannot score: "
        "nothing was sent. Its accuracy on those 40 digits: 0.7500\n"
    )


def test_with_a_kaggle_token_the_exercise_downloads_the_competition_files(
    tmp_path, no_kaggle_token, monkeypatch, capsys
):
    monkeypatch.setenv("KAGGLE_USERNAME", "ada")
    monkeypatch.setenv("KAGGLE_KEY", "0123")
    calls = []

    def download(competition, folder):
        calls.append((competition, folder))
        with zipfile.ZipFile(folder / f"{competition}.zip", "w") as archive:
            archive.writestr("train.csv", "label,pixel0\n3,0\n")
            archive.writestr("test.csv", "pixel0\n0\n")
            archive.writestr("sample_submission.csv", "ImageId,Label\n1,0\n")

    fake_kaggle_client(monkeypatch, download)
    data = tmp_path / "data"
    run_kaggle_cell(data, "get-kaggle", load_data=_offline)
    assert (
        capsys.readouterr().out
        == f"Downloaded the files of digit-recognizer from Kaggle into {data}.\n"
    )
    assert calls == [("digit-recognizer", data)]
    assert (data / "train.csv").read_text() == "label,pixel0\n3,0\n"
    assert not (data / "MADE_FROM_KERAS_MNIST.txt").exists()


def test_a_failed_kaggle_download_falls_back_to_keras_mnist(
    tmp_path, no_kaggle_token, monkeypatch, capsys
):
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text("{}")

    def refused(competition, folder):
        raise PermissionError("403 Forbidden: accept the competition's rules")

    fake_kaggle_client(monkeypatch, refused)
    data = tmp_path / "data"
    run_kaggle_cell(data, "get-kaggle")
    out = capsys.readouterr().out
    assert out.startswith(
        "The Kaggle download failed (PermissionError: 403 Forbidden: accept the competition's "
        "rules).\nBuilt Kaggle-format train.csv (60 labelled digits) and test.csv (40) in "
    ), out
    assert (data / "MADE_FROM_KERAS_MNIST.txt").exists()


def test_offline_without_files_or_account_the_exercise_says_what_to_do(tmp_path, no_kaggle_token):
    data = tmp_path / "data"
    with pytest.raises(FileNotFoundError) as err:
        run_kaggle_cell(data, "get-kaggle", load_data=_offline)
    assert str(err.value) == (
        f"{data} has no train.csv and test.csv, and MNIST could not be downloaded (OSError): "
        f"put Kaggle's files in {data} or run this online"
    )


# --- slow: the real notebooks, graded ----------------------------------------------------------


def workshop_copy(root: Path) -> Course:
    """A copy of the course's source/ and committed release/ in ``root``, digits prepared."""
    for name in WORKSHOP:
        shutil.copytree(COURSE.source(name), root / "source" / name)
        shutil.copytree(COURSE.release(name), root / "release" / name)
    course = Course.at(root)
    prepare("digits", course=course)
    return course


#: The student who hands in the released notebook as it is.
UNCHANGED = "unchanged"


@pytest.fixture(scope="module")
def graded_workshop(tmp_path_factory) -> dict[tuple[str, str], SubmissionResult]:
    """In a copy of the course: each assignment's solution validated, then one class graded
    per assignment (two workers) holding every set of alternative answers and the released
    notebook handed in unchanged. The tests below share these results: (assignment,
    student) -> result, the solution's under "solution"."""
    course = workshop_copy(tmp_path_factory.mktemp("workshop"))
    settings = GradeSettings(sandbox=False)
    results = {}
    for assignment in WORKSHOP:
        report = validate(course, assignment, settings=settings)
        assert report.ok, report.problems
        assert report.manual == ()
        results[(assignment, "solution")] = report.result
        students = {
            student: alternative_notebook(assignment, student)
            for student in ALTERNATIVE_STUDENTS[assignment]
        }
        released = course.release(assignment) / f"{assignment}.ipynb"
        students[UNCHANGED] = nbformat.read(released, as_version=4)
        for student, nb in students.items():
            folder = course.submitted(student, assignment)
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
        report = grade(course, assignment, settings=settings, backend="local", workers=2)
        # (The other assignment's students are graded too, as missing: they are in the
        # gradebook.)
        results.update({(assignment, r.student): r for r in report.graded})
        assert {(assignment, student) for student in students} <= results.keys()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("assignment", WORKSHOP)
def test_solution_gets_full_marks_and_the_unchanged_release_gets_none(graded_workshop, assignment):
    solution = graded_workshop[(assignment, "solution")]
    assert solution.status == "graded"
    assert solution.score == solution.max_score > 0
    assert [i.kind for i in solution.items if i.kind != "test"] == (
        ["accuracy", "csv"] if assignment == "mnist-kaggle" else []
    )

    unchanged = graded_workshop[(assignment, UNCHANGED)]
    assert unchanged.status == "graded", unchanged.message
    assert unchanged.max_score == solution.max_score
    assert [i.id for i in unchanged.items] == [i.id for i in solution.items]
    scored = {i.id: i.score for i in unchanged.items if i.score}
    assert scored == {}, f"the released notebook scores without any work: {scored}"
    for item in unchanged.items:
        assert not item.passed and item.message, item


@pytest.mark.slow
@pytest.mark.parametrize(
    ("assignment", "student"),
    [
        (assignment, student)
        for assignment in WORKSHOP
        for student in ALTERNATIVE_STUDENTS[assignment]
    ],
)
def test_each_set_of_alternative_answers_gets_full_marks(graded_workshop, assignment, student):
    result = graded_workshop[(assignment, student)]
    lost = {item.id: item.message for item in result.items if not item.passed}
    assert (result.status, lost) == ("graded", {}), result.message
    assert result.score == result.max_score > 0


@pytest.mark.slow
def test_fine_tuning_trains_the_convolutions_of_mobilenetv2s_top_block_and_nothing_else():
    """The notebook's fine-tuning cell and its test, on the ImageNet base's architecture."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Resizing(96, 96, name="resize")(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)
    mobilenet = keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x)
    base = keras.Model(inputs, mobilenet.output, name="imagenet_base")
    namespace = {"keras": keras, "np": np}
    for code in reference_answers("transfer-learning").values():
        exec(code, namespace)
    base = namespace["freeze"](base)
    head = namespace["build_head_model"](base, 3)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    labels = np.arange(8) % 3
    namespace.update(
        base=base,
        head_model=namespace["compile_for_training"](head, 1e-3),
        convs=[layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)],
        x_train=images,
        y_train=labels,
        x_test=images,
        y_test=labels,
        LEARNING_RATE=1e-3,
        FINE_TUNE_EPOCHS=1,
        BATCH_SIZE=4,
        results={},
    )
    for cell_id in ("fine-tune", "test_fine_tuning"):
        exec(compile(cell_source("transfer-learning", cell_id), cell_id, "exec"), namespace)
    assert namespace["changed"] == [
        "block_16_expand",
        "block_16_depthwise",
        "block_16_project",
        "Conv_1",
    ]
    assert namespace["norms"], "MobileNetV2's batch normalisations kept their statistics"

    # Every answer unfreezes more after less, and less after more, on the real base.
    answers = [namespace["unfreeze_from"]] + [
        _answer("transfer-learning", student, "unfreeze_from", keras)
        for student in ALTERNATIVE_STUDENTS["transfer-learning"]
    ]
    kernel_layers = namespace["kernel_layers"]
    for unfreeze_from in answers:
        for first in ("block_16_expand", "block_14_expand", "block_16_expand"):
            unfreeze_from(base, first)
            training = {id(w) for w in head.trainable_weights}
            start = [layer.name for layer in base.layers].index(first)
            expected = [k.name for k in kernel_layers if base.layers.index(k) >= start]
            trains = [k.name for k in kernel_layers if id(k.kernel) in training]
            assert trains == expected, (unfreeze_from, first)
            assert not any(norm.trainable for norm in namespace["norms"])


def _answer(assignment: str, student: str, grade_id: str, keras):
    namespace = {"keras": keras, "np": np}
    exec(alternative_answers(assignment, student)[grade_id], namespace)
    return namespace[grade_id]
