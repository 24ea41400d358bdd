"""``autograder new`` and ``new-assignment``: a course folder, and an assignment that validates.

The assignment has one of every cell nbgrader knows (a read-only cell, a solution, a test with
hidden asserts, an answer and a task graded by hand, a parameters cell) and both checks (the
trained model's held-out accuracy, the Kaggle CSV the notebook writes), so an instructor edits
a working example instead of starting from nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .config import ASSIGNMENT_FILE, Course, check_name
from .errors import ConfigError
from .notebooks import notebook_text

#: What ``new`` writes at the top of a course folder.
GITIGNORE = """\
# written by the grader (the gradebook holds names and scores: keep it out of git)
submitted/
autograded/
feedback/
gradebook.db
leaderboard.html
.autograder/
data/
"""

TOML = """\
[assignment]
title = "{title}"
dataset = "{dataset}"       # released data the kernel reads at ./data (data/<dataset>/ here)

[execute]
timeout_cell = 600          # seconds per cell
timeout_total = 1800        # seconds per notebook
memory_limit = "4G"
parameters = {{ EPOCHS = 3 }} # injected after the notebook's 'parameters' cell when grading

[[checks]]                  # the trained model, scored outside the participant's kernel
id = "heldout-accuracy"
kind = "accuracy"
variable = "model"          # the keras.Model the notebook leaves in this variable
threshold = 0.8             # choose it from the figure 'autograder validate' prints
points = 2
# the evaluator feeds 28x28x1 images (also 28x28 or 784 flat, as the model's input asks),
# pixel values divided by scale (255: the model sees 0..1)
scale = 255.0

[[checks]]                  # the Kaggle CSV the notebook writes (ImageId,Label)
id = "kaggle-csv"
kind = "csv"
file = "submission.csv"
min_score = 0.7             # on the public score, the one participants see
points = 1
"""


def _nbgrader(cell: NotebookNode, grade_id: str, **meta: Any) -> NotebookNode:
    cell.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "schema_version": 3,
        "solution": False,
        **meta,
    }
    cell.id = grade_id
    return cell


def assignment_notebook(name: str) -> NotebookNode:
    """The instructor notebook of a new assignment: every cell kind, a model, a CSV."""
    params = new_code_cell("EPOCHS = 10  # grading injects [execute] parameters after this cell")
    params.metadata["tags"] = ["parameters"]
    params.id = "parameters"
    cells = [
        _nbgrader(
            new_markdown_cell(
                f"# {name}\n\nTrain a small network on the images in `data/train.csv`, leave "
                "it in `model` and write your predictions for `data/test.csv` to "
                "`submission.csv`."
            ),
            "header",
            locked=True,
        ),
        params,
        _nbgrader(
            new_code_cell(
                "import numpy as np\nimport keras\n\n"
                "keras.utils.set_random_seed(0)\n"
                'train = np.loadtxt("data/train.csv", delimiter=",", skiprows=1, '
                'dtype="float32")\n'
                "x_train = train[:, 1:].reshape(-1, 28, 28, 1) / 255.0\n"
                "y_train = train[:, 0].astype(int)\n"
                'x_test = np.loadtxt("data/test.csv", delimiter=",", skiprows=1, '
                'dtype="float32").reshape(-1, 28, 28, 1) / 255.0'
            ),
            "load-data",
            locked=True,
        ),
        _nbgrader(
            new_code_cell(
                "def build_model():\n"
                "    ### BEGIN SOLUTION\n"
                "    model = keras.Sequential([\n"
                "        keras.Input((28, 28, 1)),\n"
                "        keras.layers.Flatten(),\n"
                '        keras.layers.Dense(64, activation="relu"),\n'
                '        keras.layers.Dense(10, activation="softmax"),\n'
                "    ])\n"
                '    model.compile("adam", "sparse_categorical_crossentropy", '
                'metrics=["accuracy"])\n'
                "    return model\n"
                "    ### END SOLUTION"
            ),
            "build-model",
            solution=True,
        ),
        _nbgrader(
            new_code_cell(
                "m = build_model()\n"
                "assert m.output_shape == (None, 10), 'the model must give 10 class scores'\n"
                "### BEGIN HIDDEN TESTS\n"
                "assert m.input_shape == (None, 28, 28, 1)\n"
                "### END HIDDEN TESTS"
            ),
            "test-build-model",
            grade=True,
            locked=True,
            points=2,
        ),
        _nbgrader(
            new_code_cell(
                "model = build_model()\n"
                "history = model.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, "
                "verbose=0)\n"
                "labels = model.predict(x_test, verbose=0).argmax(axis=1)\n"
                'with open("submission.csv", "w") as f:\n'
                '    f.write("ImageId,Label\\n")\n'
                '    f.writelines(f"{i},{label}\\n" for i, label in enumerate(labels, '
                "start=1))"
            ),
            "train",
            locked=True,
        ),
        _nbgrader(
            new_markdown_cell("A hidden layer lets the network combine pixels into shapes."),
            "explain",
            grade=True,
            solution=True,
            points=1,
        ),
        _nbgrader(
            new_markdown_cell(
                "**Task (graded by hand):** look at ten images your model gets wrong and "
                "say what they have in common."
            ),
            "task-mistakes",
            task=True,
            locked=True,
            points=1,
        ),
    ]
    return new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
    )


def new_course(folder: Path, *, dataset: str = "digits") -> Course:
    """A course folder at ``folder`` (which must be empty or absent) with one assignment,
    ``first``; ConfigError when ``folder`` holds something already."""
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(
            f"{folder} is not empty; 'autograder new' makes a course in a new folder (inside "
            "a course, add an assignment with 'autograder new-assignment NAME')"
        )
    (folder / "source").mkdir(parents=True)
    (folder / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    course = Course.at(folder)
    new_assignment(course, "first", dataset=dataset)
    return course


def new_assignment(course: Course, name: str, *, dataset: str = "digits") -> Path:
    """``source/<name>/``: the notebook and ``assignment.toml``, then released; its folder."""
    from .release import release

    check_name("assignment", name)
    check_name("dataset", dataset)
    folder = course.source(name)
    if folder.exists():
        raise ConfigError(f"{folder} exists already; choose another name")
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_text(
        notebook_text(assignment_notebook(name)), encoding="utf-8"
    )
    title = name.replace("-", " ").replace("_", " ").capitalize()
    (folder / ASSIGNMENT_FILE).write_text(TOML.format(title=title, dataset=dataset))
    release(course, name)
    return folder
