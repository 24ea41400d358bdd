"""The next kernel starts while a notebook runs (autograder.prestart), without weakening isolation.

A local worker starts a spare kernel once its job's kernel answers; its next job takes it when
it was started under the same policy, copies its submission in and runs. The tests read each
kernel's age at its first cell from /proc (no clock of the grader involved): a spare is older
than the notebook that ran before it.

The held-out evaluator of a job is started while its own notebook runs and handed the model at
its end: once, for that job only, never when its key differs, and stopped at the job's end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
import types
from collections.abc import Mapping
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import complete, host_processes, make_tiny_course, tiny_job, with_cell

from autograder import prestart
from autograder.checks import evaluator_key
from autograder.config import AccuracyCheck, Course, load_assignment
from autograder.datasets import prepare
from autograder.errors import ConfigError
from autograder.evaluate import start_evaluator
from autograder.execute import kernel_env, plain_kernel_factory
from autograder.grade import GradeSettings, grade
from autograder.release import fingerprint, release, source_index

SANDBOX = GradeSettings(sandbox=True, timeout_cell=30, timeout_total=60)
UNSAFE = GradeSettings(sandbox=False)
SOLUTION = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"
#: Seconds since this kernel process started, from /proc (immune to the grader's clock).
AGE = (
    "import os, time\n"
    "_stat = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n"
    "_up = float(open('/proc/uptime').read().split()[0])\n"
    "print('AGE', round(_up - int(_stat[19]) / os.sysconf('SC_CLK_TCK'), 2))\n"
)
#: What alice and bob do after their tests: keep their kernel busy for a while.
SLEEP_S = 4.0


def _submit(
    course: Course, student: str, extra: str = "", files: Mapping[str, str] | None = None
) -> None:
    nb = with_cell(complete(course), "squares", AGE + extra + SOLUTION)
    folder = course.submitted(student, "tiny")
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "tiny.ipynb")
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def _printed(course: Course, student: str, word: str) -> str:
    nb = nbformat.read(course.autograded(student, "tiny") / "tiny.ipynb", as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if line.startswith(word + " "):
                    return line[len(word) + 1 :]
    raise AssertionError(f"{student}'s notebook printed no {word} line")


def _spare_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("autograder-next-*")}


def _spare_processes() -> set[int]:
    """Processes of spare kernels (their sandbox's command names the spare's folder)."""
    return {pid for pid, _ in host_processes("autograder-next-")}


@pytest.mark.sandbox
@pytest.mark.parametrize("with_prestart", [True, False])
def test_the_next_sandboxed_kernel_starts_while_the_notebook_before_it_runs(
    tmp_path, with_prestart
):
    course = make_tiny_course(tmp_path / "course")
    nap = f"time.sleep({SLEEP_S})\n"
    _submit(course, "alice", nap)
    _submit(course, "bob", nap)
    _submit(course, "carol")
    before, running = _spare_folders(), _spare_processes()  # others' are not ours

    report = grade(course, "tiny", settings=SANDBOX, workers=1, prestart=with_prestart)

    assert {r.student: (r.score, r.status) for r in report.graded} == {
        s: (3.0, "graded") for s in ("alice", "bob", "carol")
    }
    ages = {s: float(_printed(course, s, "AGE")) for s in ("alice", "bob", "carol")}
    # alice's kernel started for her; bob's and carol's while the notebook before ran (and
    # slept): they were started before their submissions were copied in.
    assert ages["alice"] < SLEEP_S - 1, ages
    if with_prestart:
        assert ages["bob"] >= SLEEP_S - 1 and ages["carol"] >= SLEEP_S - 1, ages
    else:
        assert max(ages.values()) < SLEEP_S - 1, ages
    assert _spare_folders() <= before
    assert _spare_processes() <= running


@pytest.mark.sandbox
def test_a_spare_kernel_sees_the_released_data_not_the_submitted_one(tmp_path):
    root = tmp_path / "course"
    course = make_tiny_course(root)
    toml = root / "source" / "tiny" / "assignment.toml"
    toml.write_text(
        toml.read_text().replace("title = 'Tiny'", "title = 'Tiny'\ndataset = 'digits'")
    )
    release(course, "tiny")
    prepare("digits", course=course)
    released = (course.data("digits") / "train.csv").read_text().splitlines()[0]
    look = (
        "first = open('data/train.csv').read().splitlines()[0]\n"
        f"print('DATA', first == {released!r}, sorted(os.listdir('data')))\n"
        "try:\n"
        "    open('data/train.csv', 'a')\n"
        "    print('WRITE allowed')\n"
        "except OSError as exc:\n"
        "    print('WRITE', type(exc).__name__)\n"
        "open('mine.txt', 'w').write('the copy is writable')\n"
        "open('tiny.ipynb', 'a').close()\n"
    )
    fake = {"data/train.csv": "label,pixel0\n9,9\n", "data/extra.txt": "mine"}
    _submit(course, "alice", look + f"time.sleep({SLEEP_S})\n", fake)
    _submit(course, "bob", look, fake)

    report = grade(course, "tiny", settings=SANDBOX, workers=1, prestart=True)

    results = {r.student: r for r in report.graded}
    listing = sorted(p.name for p in course.data("digits").iterdir())
    for student in ("alice", "bob"):
        assert (results[student].score, results[student].status) == (3.0, "graded")
        assert _printed(course, student, "DATA") == f"True {listing}"
        assert _printed(course, student, "WRITE") in {"OSError", "PermissionError"}
        assert (
            "the submitted data/ folder was replaced by the released data"
            in (results[student].details["notes"])
        )
    assert float(_printed(course, "bob", "AGE")) >= SLEEP_S - 1  # bob's kernel was a spare
    assert (course.data("digits") / "train.csv").read_text().splitlines()[0] == released


@pytest.mark.sandbox
def test_spares_left_when_the_class_ends_are_shut_down(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    for student in ("alice", "bob", "carol", "dave"):
        _submit(course, student)
    before, running = _spare_folders(), _spare_processes()  # others' are not ours

    report = grade(course, "tiny", settings=SANDBOX, workers=2, prestart=True)

    assert sorted(r.score for r in report.graded) == [3.0] * 4
    assert _spare_folders() <= before
    assert _spare_processes() <= running


def test_a_spare_serves_only_a_job_with_the_same_kernel_key_and_only_once(tmp_path):
    started: list[Path] = []

    def make(workdir: Path):
        started.append(workdir)
        env = kernel_env(workdir)
        return plain_kernel_factory(workdir=workdir, env=env), env, ("key", str(workdir))

    prestart.run(prestart.start_spare(make))
    spare = prestart.pending()
    assert spare is not None and spare.workdir == started[0]
    km = spare.km
    assert prestart.take(lambda folder: ("other key", str(folder))) is None
    assert not prestart.run(km.is_alive())
    assert not spare.workdir.exists()
    assert prestart.pending() is None

    prestart.run(prestart.start_spare(make))
    taken = prestart.take(lambda folder: ("key", str(folder)))
    assert taken is not None and taken.workdir == started[1]
    assert prestart.run(taken.km.is_alive())
    assert prestart.take(lambda folder: ("key", str(folder))) is None  # never twice
    prestart.discard(taken)
    assert not prestart.run(taken.km.is_alive())
    assert not taken.workdir.exists()


def test_a_spare_that_died_is_not_handed_out(tmp_path):
    def make(workdir: Path):
        env = kernel_env(workdir)
        return plain_kernel_factory(workdir=workdir, env=env), env, "key"

    prestart.run(prestart.start_spare(make))
    spare = prestart.pending()
    assert spare is not None
    spare.km.provisioner.process.kill()  # it crashed, or something killed it
    spare.km.provisioner.process.wait()
    assert prestart.take(lambda folder: "key") is None
    assert not spare.workdir.exists()


def test_prestart_imports_are_loaded_without_leaving_a_name(tmp_path):
    root = tmp_path / "course"
    course = make_tiny_course(root)
    toml = root / "source" / "tiny" / "assignment.toml"
    toml.write_text(toml.read_text() + "prestart_imports = ['wave', 'xml.dom.minidom']\n")
    look = (
        "import sys\n"
        "print('MODULES', 'wave' in sys.modules, 'xml.dom.minidom' in sys.modules,\n"
        "      [n for n in ('wave', 'xml', '_autograder_module') if n in dir()])\n"
    )
    _submit(course, "alice", look + f"time.sleep({SLEEP_S})\n")
    _submit(course, "bob", look)

    report = grade(course, "tiny", settings=UNSAFE, workers=1, prestart=True)

    assert sorted(r.score for r in report.graded) == [3.0, 3.0]
    assert _printed(course, "alice", "MODULES") == "False False []"  # her own, fresh kernel
    assert _printed(course, "bob", "MODULES") == "True True []"


def test_prestart_imports_must_be_module_names_and_do_not_change_the_fingerprint(tmp_path):
    root = tmp_path / "course"
    course = make_tiny_course(root)
    toml = root / "source" / "tiny" / "assignment.toml"
    plain = toml.read_text()
    config = load_assignment(course, "tiny")
    index = source_index(course, config)
    toml.write_text(plain + "prestart_imports = ['numpy', 'keras']\n")
    assert fingerprint(index, load_assignment(course, "tiny")) == fingerprint(index, config)
    for bad in ("'numpy'", "['os; import shutil']", "[3]"):
        toml.write_text(plain + f"prestart_imports = {bad}\n")
        with pytest.raises(ConfigError, match=re.escape("prestart_imports must be a list")):
            load_assignment(course, "tiny")


@pytest.mark.parametrize(
    ("flag", "expected"), [([], None), (["--prestart"], True), (["--no-prestart"], False)]
)
def test_grade_prestarts_unless_told_not_to(tmp_path, monkeypatch, flag, expected):
    import importlib

    from click.testing import CliRunner

    grade_module = importlib.import_module("autograder.grade")
    from autograder.cli import cli

    course = make_tiny_course(tmp_path / "course")
    _submit(course, "alice")
    seen: dict[str, object] = {}
    real = grade_module.grade

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(grade_module, "grade", spy)
    args = ["--course-dir", str(course.root), "grade", "tiny", "--unsafe-no-sandbox", *flag]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["prestart"] is expected
    assert _printed(course, "alice", "AGE")  # graded all the same


def test_prestart_by_default_only_where_a_core_or_a_gpu_waits(monkeypatch):
    from autograder.grade import prestart_pays

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert prestart_pays(1, use_gpu=False)  # the default: one worker per two cores
    assert not prestart_pays(2, use_gpu=False)  # a worker per core: the spare competes
    assert prestart_pays(2, use_gpu=True)


@pytest.mark.parametrize(
    ("workers", "flag", "expected"),
    [(1, None, True), (2, None, False), (2, True, True), (1, False, False)],
)
def test_grade_prestarts_the_evaluator_and_the_next_kernel_by_the_same_rule(
    tmp_path, monkeypatch, workers, flag, expected
):
    import importlib

    grade_module = importlib.import_module("autograder.grade")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    seen: dict[str, object] = {}

    def spy(jobs, **kwargs):
        seen.update(kwargs, jobs=len(jobs))

    monkeypatch.setattr(grade_module, "run_jobs", spy)
    course = make_tiny_course(tmp_path / "course")
    _submit(course, "alice")
    grade_module.grade(course, "tiny", settings=UNSAFE, workers=workers, prestart=flag)
    assert seen["jobs"] == 1
    assert (seen["prestart"], seen["prestart_evaluator"]) == (expected, expected)


@pytest.mark.parametrize(
    ("workers", "gpus", "expected"), [(1, (), True), (2, (), False), (2, (0,), True)]
)
def test_the_service_starts_each_evaluator_ahead_where_a_core_or_a_gpu_waits(
    tmp_path, monkeypatch, workers, gpus, expected
):
    """The service grades one job per run (no next kernel); its evaluator starts while the
    notebook runs by the rule ``grade`` follows."""
    from autograder import schedule
    from autograder.dispatch import Dispatcher
    from autograder.jobqueue import Queue

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    course = make_tiny_course(tmp_path / "course")
    dispatcher = Dispatcher(
        course, Queue(course.gradebook_url), settings=UNSAFE, workers=workers, gpus=gpus
    )
    seen: dict[str, object] = {}
    monkeypatch.setattr(dispatcher, "prepare", lambda assignment: None)
    monkeypatch.setattr(dispatcher, "_job", lambda sub, prepared: "job")
    monkeypatch.setattr(dispatcher, "_grader_failed", lambda sub, message: None)
    monkeypatch.setattr(schedule, "run_jobs", lambda jobs, **kwargs: seen.update(kwargs))
    dispatcher.grade(types.SimpleNamespace(id="x", assignment="tiny"), dispatcher.slots[0])
    assert seen["prestart_evaluator"] is expected
    assert seen.get("prestart", False) is False


@pytest.mark.sandbox
def test_a_killed_grader_leaves_no_worker_kernel_or_spare_behind(tmp_path):
    import subprocess
    import sys
    import time

    course = make_tiny_course(tmp_path / "course")
    for student in ("orphan1", "orphan2", "orphan3"):
        _submit(course, student, "time.sleep(30)\n")
    running = _spare_processes()
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "autograder", "--course-dir", str(course.root)]
    command += ["grade", "tiny", "--workers", "1", "--prestart"]
    grader = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (_spare_processes() - running):
            assert grader.poll() is None, "the grader ended before its spare kernel started"
            time.sleep(0.1)
        assert host_processes("autograder-orphan1-"), "orphan1's kernel should be running"
    finally:
        grader.kill()  # the coordinator only, as the OOM killer or `kill -9 PID` would
        grader.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        host_processes("autograder-orphan") or _spare_processes() - running
    ):
        time.sleep(0.2)
    assert host_processes("autograder-orphan") == []  # the worker's running kernel
    assert _spare_processes() <= running  # and the spare it started


# --- the held-out evaluator, started while the notebook runs ----------------------------------

#: Stands in for a prestarted evaluator (no Keras): it waits for the end of its input.
WAITS = [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"]


def _eval_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("autograder-eval-*")}


def _running_in(folder: Path) -> list[int]:
    """Processes of the evaluator in ``folder`` (its command line names the folder)."""
    return [pid for pid, _ in host_processes(str(folder))]


def _python_in(folder: Path) -> list[int]:
    """The evaluator's own Python in ``folder``, past the commands that start its sandbox."""
    return [pid for pid, cmd in host_processes(str(folder)) if cmd.startswith(f"{sys.executable} ")]


def _waiting(tmp_path: Path, key: object):
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((3, 28, 28), np.uint8))

    def start(folder: Path):
        return start_evaluator(
            images_path=images,
            scale=255.0,
            n_classes=10,
            workdir=folder,
            key=key,
            command_wrapper=lambda command, env=None: WAITS,
        )

    return start


def test_an_evaluator_started_ahead_serves_only_its_check_with_the_same_key_and_only_once(
    tmp_path,
):
    pool = prestart.Evaluators()
    pool.start("acc", _waiting(tmp_path, "key"))
    pool.start("acc", _waiting(tmp_path, "other key"))  # one waits already: nothing more
    first = pool.pending()["acc"]
    assert (first.key, first.n_images, first.alive()) == ("key", 3, True)
    assert pool.take("another check", lambda folder: "key") is None
    assert pool.take("acc", lambda folder: "other key") is None  # another policy: stopped
    assert first.process.poll() is not None and not first.workdir.exists()
    assert pool.pending() == {}

    pool.start("acc", _waiting(tmp_path, "key"))
    second = pool.take("acc", lambda folder: "key")
    assert second is not None and second is not first and second.alive()
    assert pool.take("acc", lambda folder: "key") is None  # never twice
    second.close()
    assert second.process.poll() is not None and not second.workdir.exists()


def test_an_evaluator_that_died_or_could_not_start_is_not_handed_out(tmp_path):
    pool = prestart.Evaluators()
    pool.start("acc", _waiting(tmp_path, "key"))
    died = pool.pending()["acc"]
    died.process.kill()
    died.process.wait()
    assert pool.take("acc", lambda folder: "key") is None
    assert not died.workdir.exists()
    before = _eval_folders()
    pool.start("acc", lambda folder: None)  # the sandbox refused, say
    pool.start("other", lambda folder: 1 / 0)
    assert pool.pending() == {}
    assert _eval_folders() <= before


def test_evaluators_nobody_took_are_stopped_at_the_end_of_the_job(tmp_path):
    pool = prestart.Evaluators()
    pool.start("acc", _waiting(tmp_path, "key"))
    pool.start("acc-2", _waiting(tmp_path, "key"))
    waiting = list(pool.pending().values())
    assert len(waiting) == 2 and all(e.alive() for e in waiting)
    pool.close()
    assert pool.pending() == {}
    assert all(e.process.poll() is not None and not e.workdir.exists() for e in waiting)


def _three_heldout_images(folder: Path) -> Path:
    """``folder`` holding a held-out set of three blank digits (their labels are not needed)."""
    folder.mkdir(parents=True)
    np.save(folder / "heldout-images.npy", np.zeros((3, 28, 28), np.uint8))
    (folder / "meta.json").write_text(json.dumps({"classes": list(range(10))}))
    return folder


def test_the_evaluator_key_changes_with_the_sandbox_policy_and_the_images(tmp_path):
    course = make_tiny_course(tmp_path / "course")
    heldout = _three_heldout_images(course.heldout("digits"))
    job = tiny_job(course, tmp_path, heldout, GradeSettings(memory_limit="1G"))
    check = AccuracyCheck(id="acc", points=1, threshold=0.5, dataset="digits")
    folder = tmp_path / "eval"
    folder.mkdir()
    key = evaluator_key(job, check, folder)
    assert evaluator_key(job, check, folder) == key
    others = [
        dataclasses.replace(job, settings=GradeSettings(memory_limit="2G")),
        dataclasses.replace(job, settings=GradeSettings(memory_limit="1G", sandbox=False)),
        dataclasses.replace(job, gpus=(0,)),
    ]
    for other in others:
        assert evaluator_key(other, check, folder) != key
    assert evaluator_key(job, dataclasses.replace(check, scale=1.0), folder) != key
    np.save(heldout / "heldout-images.npy", np.zeros((4, 28, 28), np.uint8))  # prepared again
    assert evaluator_key(job, check, folder) != key


#: A model the kernel leaves in `model` (random but seeded: every copy predicts alike).
MODEL = (
    "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
    "import keras\n"
    "keras.utils.set_random_seed(0)\n"
    "model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),\n"
    "                          keras.layers.Dense(10, activation='softmax')])\n"
)
ACCURACY_CHECK = (
    "\n[[checks]]\nid = 'heldout-accuracy'\nkind = 'accuracy'\nvariable = 'model'\n"
    "dataset = 'digits'\nthreshold = 0.5\npoints = 2\n"
)


@pytest.mark.sandbox
@pytest.mark.slow
def test_each_model_goes_to_an_evaluator_started_for_it_while_its_notebook_ran(
    tmp_path, monkeypatch
):
    from autograder import checks

    root = tmp_path / "course"
    course = make_tiny_course(root)
    toml = root / "source" / "tiny" / "assignment.toml"
    toml.write_text(toml.read_text() + ACCURACY_CHECK)
    release(course, "tiny")
    prepare("digits", course=course)
    for student in ("alice", "bob"):
        _submit(course, student, MODEL)
    started, handed = [], []
    real_start, real_evaluate = checks.start_evaluator, checks.evaluate_model

    def spy_start(**kwargs):
        started.append(real_start(**kwargs))
        return started[-1]

    def spy_evaluate(**kwargs):
        handed.append((str(kwargs["model_path"]), kwargs["evaluator"]))
        return real_evaluate(**kwargs)

    monkeypatch.setattr(checks, "start_evaluator", spy_start)
    monkeypatch.setattr(checks, "evaluate_model", spy_evaluate)
    settings = GradeSettings(sandbox=True, timeout_cell=120, timeout_total=300)

    report = grade(course, "tiny", settings=settings, backend="inline", prestart=True)

    results = {r.student: r.item("heldout-accuracy") for r in report.graded}
    # Each model went to an evaluator of its own, started during its own notebook, once.
    assert len(started) == 2 and None not in started
    assert [evaluator for _, evaluator in handed] == started
    assert [("autograder-alice-" in path, "autograder-bob-" in path) for path, _ in handed] == [
        (True, False),
        (False, True),
    ]
    assert started[0].process.pid != started[1].process.pid
    for item in results.values():
        assert item.details["evaluator"]["prestarted"] is True, item.message
        assert item.details["total"] == 359
    # It served that one model and ended; nothing of it is left.
    assert [e.process.returncode for e in started] == [0, 0]
    assert not [e for e in started if e.workdir.exists() or _running_in(e.workdir)]

    # The same notebook, its evaluator started after the notebook: the same item.
    _submit(course, "carol", MODEL)
    again = grade(
        course, "tiny", settings=settings, backend="inline", prestart=False, students=["carol"]
    )
    carol = again.graded[0].item("heldout-accuracy")
    assert carol.details["evaluator"]["prestarted"] is False
    assert len(started) == 2  # none was started for her
    timing = {"duration_s", "evaluator"}
    for item in results.values():
        assert (item.score, item.message) == (carol.score, carol.message)
        assert {k: v for k, v in item.details.items() if k not in timing} == {
            k: v for k, v in carol.details.items() if k not in timing
        }


#: A worker that starts the evaluators of a job's notebook, says where, and waits (to be killed).
WORKER = """
import pickle, sys, time
from autograder import checks, prestart
job = pickle.load(open(sys.argv[1], "rb"))
pool = prestart.Evaluators()
checks.start_evaluators(job, "tiny", pool)
print(*[str(e.workdir) for e in pool.pending().values()], flush=True)
time.sleep(120)
"""


@pytest.mark.sandbox
def test_a_killed_worker_takes_its_waiting_evaluator_along(tmp_path):
    import pickle
    import subprocess
    import time

    root = tmp_path / "course"
    course = make_tiny_course(root)
    toml = root / "source" / "tiny" / "assignment.toml"
    toml.write_text(toml.read_text() + ACCURACY_CHECK)
    heldout = _three_heldout_images(tmp_path / "heldout")
    job = tiny_job(course, tmp_path, heldout, GradeSettings(sandbox=True))
    (tmp_path / "job.pickle").write_bytes(pickle.dumps(job))
    repo = Path(__file__).resolve().parents[1]
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / "job.pickle")],
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        folder = Path(worker.stdout.readline().strip())
        assert folder.name.startswith("autograder-eval-"), folder
        # Its Python runs (inside bubblewrap, which dies with the worker): not still in the
        # commands that set the sandbox up, which an end of input alone would end.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _python_in(folder):
            time.sleep(0.1)
        assert _python_in(folder), "the evaluator should be waiting in its sandbox"
    finally:
        worker.kill()  # as the OOM killer or `kill -9` would
        worker.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running_in(folder):
        time.sleep(0.2)
    assert _running_in(folder) == []
