"""The dask backend: the same worker function on a Dask cluster, results recorded here."""

from __future__ import annotations

import builtins
import socket

import pytest
from conftest import complete, released, with_cell

from autograder import dask_backend, gradebook, schedule
from autograder.dask_backend import worker_gpus
from autograder.errors import ConfigError
from autograder.grade import GradeSettings, grade

pytest.importorskip("distributed")

UNSAFE = GradeSettings(sandbox=False)


def scores(report):
    return {
        r.student: (r.status, r.score, [(i.id, i.score) for i in r.items]) for r in report.graded
    }


def _class(tiny_course, submit):
    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    submit("carol", with_cell(complete(tiny_course), "squares", "raise ValueError('stuck')"))
    submit("dave", b"this is not a notebook\n")


def test_dask_scores_equal_the_local_backend(tiny_course, submit):
    _class(tiny_course, submit)
    on_dask = grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=2)
    local = grade(tiny_course, "tiny", settings=UNSAFE, backend="local", workers=2, force=True)

    assert scores(on_dask) == scores(local)
    assert scores(on_dask)["alice"] == (
        "graded",
        3.0,
        [("test_squares", 2.0), ("test_total", 1.0), ("explain", 0.0)],
    )
    stored = {r.student: r.score for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")}
    assert stored == {"alice": 3.0, "bob": 0.0, "carol": 0.0, "dave": 0.0}


@pytest.mark.sandbox
def test_dask_grades_in_the_sandbox(tiny_course, submit):
    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    report = grade(tiny_course, "tiny", backend="dask", workers=2)
    assert {r.student: (r.status, r.score) for r in report.graded} == {
        "alice": ("graded", 3.0),
        "bob": ("graded", 0.0),
    }


def test_a_submission_that_kills_its_dask_worker_is_an_error_and_the_class_goes_on(
    tiny_course, submit
):
    # Without the sandbox the kernel can see its parent, the worker; the OOM killer does the same.
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
    submit("mallory", with_cell(complete(tiny_course), "squares", killer))
    submit("alice", complete(tiny_course))
    submit("bob", complete(tiny_course))

    results = {
        r.student: r
        for r in grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=2).graded
    }

    assert {s: r.score for s, r in results.items() if s != "mallory"} == {"alice": 3, "bob": 3}
    mallory = results["mallory"]
    assert (mallory.status, mallory.score) == ("error", 0)
    assert mallory.message == (
        "the Dask worker grading this submission died each time it tried (2 tries: the system "
        "stops processes that use too much memory, or the worker's machine went away); grade it "
        "again alone with `autograder grade tiny --student mallory --workers 1`"
    )
    stored = {r.student: r for r in gradebook.load_results(tiny_course.gradebook_url, "tiny")}
    assert stored["mallory"].status == "error"


def test_ctrl_c_cancels_the_rest_and_closes_the_cluster(tiny_course, submit):
    import psutil

    for student in ("alice", "bob", "carol", "dave"):
        submit(student, complete(tiny_course))
    recorded = []

    def record(result):
        recorded.append(result.student)
        raise KeyboardInterrupt

    from autograder.grade import build_jobs

    jobs, *_ = build_jobs(tiny_course, "tiny", settings=UNSAFE)
    # The fork server the workers fork from lives as long as this process (one per process).
    schedule.start_fork_server(with_dask=True)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(KeyboardInterrupt):
        schedule.run_jobs(jobs, record=record, workers=2, backend="dask")
    assert len(recorded) == 1
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    alive = [p for p in left if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []


def _alive_children_since(before: set[int]) -> list[int]:
    import psutil

    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    return [p for p in left if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_the_cluster_started_ahead_is_closed_when_there_is_nothing_to_grade(tiny_course, submit):
    import psutil

    submit("alice", complete(tiny_course))
    grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=2)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    again = grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=2)
    assert (again.graded, again.skipped) == ((), ("alice",))
    assert _alive_children_since(before) == []


def test_dask_workers_see_the_environment_of_the_grade_call(tiny_course, submit, monkeypatch):
    schedule.start_fork_server(with_dask=True)  # keeps the environment it started with
    monkeypatch.setenv("TZ", "Etc/GMT+3")  # one of the variables a kernel is given
    check = 'import os\nassert os.environ["TZ"] == "Etc/GMT+3", os.environ.get("TZ")\n'
    solution = "def squares(n):\n    return [i * i for i in range(1, n + 1)]\n"
    submit("alice", with_cell(complete(tiny_course), "squares", check + solution))
    report = grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=1)
    assert [(r.student, r.score) for r in report.graded] == [("alice", 3)]


def test_an_unreachable_scheduler_names_the_address_and_the_wait(tiny_course, submit, monkeypatch):
    submit("alice", complete(tiny_course))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(dask_backend, "DASK_CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConfigError) as err:
        grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", scheduler=address)
    assert err.value.message == (
        f"no Dask scheduler answered at {address} within 1 s; check the address and that a "
        "scheduler runs there (`dask scheduler`, or the SLURMCluster of docs/cluster.md), or "
        "leave out --scheduler to start a cluster on this machine"
    )


def test_without_dask_the_backend_says_what_to_install(tiny_course, submit, monkeypatch):
    submit("alice", complete(tiny_course))
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith(("dask.", "distributed")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ConfigError) as err:
        grade(tiny_course, "tiny", settings=UNSAFE, backend="dask")
    assert err.value.message == (
        "the dask backend needs Dask's distributed scheduler, which is not installed here: run "
        "pip install 'workshop-autograder[dask]' (or use --backend local)"
    )


def test_grading_imports_no_dask():
    import subprocess
    import sys

    code = (
        "import sys, autograder.grade, autograder.schedule, autograder.pipeline, autograder.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'dask', 'distributed'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "visible", "slots", "expected"),
    [
        (1, None, [(0,), (0,), (1,), (1,)], (0,)),  # own cluster: slot of the worker's number
        (2, "0,1", [(0,), (0,), (1,), (1,)], (1,)),  # ... whatever this machine's env says
        ("tcp://node7:40000", "3", None, (3,)),  # a worker pinned with CUDA_VISIBLE_DEVICES
        ("tcp://node7:40000", None, None, (1,)),  # not pinned: the coordinator's slot
        ("tcp://node7:40000", "GPU-5f3e", None, (1,)),  # UUIDs are not indices
    ],
)
def test_a_dask_job_gets_its_workers_gpu(name, visible, slots, expected):
    assert worker_gpus(name=name, visible=visible, slots=slots, assigned=(1,)) == expected


def test_gpu_jobs_ask_for_the_gpu_resource_and_get_their_workers_slot(tiny_course, submit):
    # No GPU is needed to check the plumbing: with --gpus the local cluster's workers declare
    # GPU=1, jobs ask for it, and each kernel is given its worker's slot (CPU Keras ignores it).
    for student in ("alice", "bob", "carol"):
        submit(student, complete(tiny_course))
    report = grade(
        tiny_course, "tiny", settings=UNSAFE, backend="dask", workers=2, gpus=[3], per_gpu=2
    )
    assert {r.student: (r.score, r.device) for r in report.graded} == {
        "alice": (3.0, "cuda:3"),
        "bob": (3.0, "cuda:3"),
        "carol": (3.0, "cuda:3"),
    }


def test_a_scheduler_given_by_address_grades_and_is_left_running(tiny_course, submit):
    import logging

    from distributed import Client, LocalCluster

    submit("alice", complete(tiny_course))
    submit("bob", released(tiny_course))
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        report = grade(
            tiny_course,
            "tiny",
            settings=UNSAFE,
            backend="dask",
            scheduler=cluster.scheduler_address,
        )
        assert {r.student: (r.status, r.score) for r in report.graded} == {
            "alice": ("graded", 3.0),
            "bob": ("graded", 0.0),
        }
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            # The scheduler's own allowed-failures (Dask's default 3) sets the tries reported.
            assert dask_backend._scheduler_tries(client, default=99) == 4


def test_a_scheduler_that_is_no_address_says_how_to_write_one(tiny_course, submit):
    submit("alice", complete(tiny_course))
    with pytest.raises(ConfigError) as err:
        grade(tiny_course, "tiny", settings=UNSAFE, backend="dask", scheduler="not an address")
    assert err.value.message == (
        "--scheduler 'not an address' is not a Dask scheduler address (missing port number in "
        "address 'not an address'); write it like tcp://HOST:8786"
    )
