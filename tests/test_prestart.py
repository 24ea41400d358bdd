"""The next kernel starts while a notebook runs (autograder.prestart), without weakening isolation.

A local worker starts a spare kernel once its job's kernel answers; its next job takes it when
it was started under the same policy, copies its submission in and runs. The tests read each
kernel's age at its first cell from /proc (no clock of the grader involved): a spare is older
than the notebook that ran before it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nbformat
import pytest
from conftest import complete, host_processes, make_tiny_course, with_cell

from autograder import prestart
from autograder.config import Course, load_assignment
from autograder.datasets import prepare
from autograder.errors import ConfigError
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
