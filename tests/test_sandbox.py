"""The sandbox: real kernels run through nbclient with SandboxedKernelManager.

Every bomb here is bounded twice: by the test policy's low limits and by its own loop size,
so a broken sandbox fails the test without hurting the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import host_processes, tiny_job
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from autograder import limits, sandbox
from autograder import probe as probe_module
from autograder.errors import SandboxUnavailableError
from autograder.kernel import SandboxedKernelManager
from autograder.policy import evaluator_wrapper
from autograder.probe import SandboxStatus, probe
from autograder.sandbox import SandboxPolicy, run_sandboxed

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[1]

MiB = 2**20
ATTEMPT = '''
import os
import pwd

def attempt(action):
    """'ok <result>' or the OSError's class and errno: the exact outcome of one action."""
    try:
        result = action()
    except OSError as exc:
        return f"{type(exc).__name__} {exc.errno}"
    return f"ok {result!r}"
'''


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder with grader-only files, and a submission copy inside it."""
    root = tmp_path / "course"
    (root / ".autograder" / "heldout" / "digits").mkdir(parents=True)
    (root / ".autograder" / "heldout" / "digits" / "labels.csv").write_text("ImageId,Label\n")
    (root / "gradebook.db").write_text("secret")
    (root / "source" / "a1").mkdir(parents=True)
    (root / "source" / "a1" / "a1.ipynb").write_text("{}")
    (root / "submitted" / "bob" / "a1").mkdir(parents=True)
    (root / "submitted" / "bob" / "a1" / "a1.ipynb").write_text("{}")
    (root / "data" / "digits").mkdir(parents=True)
    (root / "data" / "digits" / "train.csv").write_text("label,pixel0\n3,0\n")
    (root / "work" / "alice").mkdir(parents=True)
    return root


def _policy(workdir: Path, **kw: Any) -> SandboxPolicy:
    defaults: dict[str, Any] = dict(memory_bytes=1024 * MiB, max_processes=64, tmp_bytes=64 * MiB)
    return SandboxPolicy(workdir=workdir, **{**defaults, **kw})


def _text(cell: NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _errors(cell: NotebookNode) -> list[str]:
    return [o.ename for o in cell.outputs if o.output_type == "error"]


def _processes(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    return [pid for pid, _cmdline in host_processes(marker)]


def _gone(marker: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while _processes(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _run(
    policy: SandboxPolicy,
    sources: Sequence[str],
    *,
    timeout: int = 30,
    polite: bool = False,
    between: Any = None,
    **client_kw: Any,
) -> tuple[NotebookNode, SandboxedKernelManager, BaseException | None]:
    """Run the cells in a sandboxed kernel; return the notebook, the manager, the error.

    ``between(nb)`` runs on the host after the cells and before the shutdown.
    """
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    km = SandboxedKernelManager(policy=policy)
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True, **client_kw)

    runtime: list[Path] = []

    async def go() -> BaseException | None:
        error = None
        try:
            async with client.async_setup_kernel():
                assert km.runtime_dir is not None
                runtime.append(km.runtime_dir)
                for index, cell in enumerate(nb.cells):
                    await client.async_execute_cell(cell, index)
                if between is not None:
                    between(nb)
        except DeadKernelError as exc:
            error = exc
        finally:
            if await km.is_alive():
                await km.shutdown_kernel(now=not polite)
            await km.cleanup_resources()
        return error

    error = asyncio.run(go())
    assert not runtime[0].exists()  # the host-side folder went with the kernel
    return nb, km, error


# --- the view ---------------------------------------------------------------------------


def test_kernel_runs_in_its_workdir_as_an_unprivileged_user(course: Path) -> None:
    workdir = course / "work" / "alice"
    nb, _, error = _run(
        _policy(workdir),
        [
            "import os, sys; print(os.getcwd()); print(os.getuid() != 0); print(sys.executable)",
            "open('model.txt', 'w').write('trained'); print(sorted(os.listdir('.')))",
            "print(os.environ['HOME'], os.environ['CUDA_VISIBLE_DEVICES'] == '')",
            "print(os.getpid())",
        ],
    )
    assert error is None
    assert _text(nb.cells[0]) == f"{workdir}\nTrue\n{sys.executable}\n"
    assert _text(nb.cells[1]) == "['model.txt']\n"
    assert (workdir / "model.txt").read_text() == "trained"
    assert _text(nb.cells[2]) == "/tmp/home True\n"
    # Its own PID namespace: bwrap's init is 1, the kernel 2.
    assert _text(nb.cells[3]) == "2\n"


def test_writing_outside_the_workdir_fails_or_stays_private(course: Path) -> None:
    workdir = course / "work" / "alice"
    private = f"/tmp/autograder-test-{uuid.uuid4().hex}"
    nb, _, _ = _run(
        _policy(workdir),
        [
            ATTEMPT,
            "print(attempt(lambda: open('/usr/evil.py', 'w')))",
            f"print(attempt(lambda: open({str(REPO / 'README.md')!r}).read()))",
            "print(attempt(lambda: open('/evil', 'w')))",
            "print(attempt(lambda: open('/dev/evil', 'w')))",
            "print(attempt(lambda: open(os.path.expanduser('~/ok'), 'w').write('x')))",
            f"print(attempt(lambda: open({private!r}, 'w').write('x')))",
            # The workdir's parents exist inside only as empty mount points; here, under
            # /tmp, they belong to the sandbox's private /tmp.
            f"print(attempt(lambda: open({str(course / 'grades.csv')!r}, 'w').write('x')))",
        ],
    )
    assert [_text(c) for c in nb.cells[1:]] == [
        "OSError 30\n",  # /usr is mounted read-only (EROFS)
        # The grader's checkout is not there (at most an empty mount point for its .venv).
        "FileNotFoundError 2\n",
        "OSError 30\n",  # the sandbox's root is read-only
        "OSError 30\n",  # and so is its /dev
        "ok 1\n",  # HOME and /tmp are a private tmpfs
        "ok 1\n",
        "ok 1\n",
    ]
    assert not Path(private).exists()
    assert not (course / "grades.csv").exists()


def test_grader_files_next_to_the_workdir_are_not_visible(course: Path) -> None:
    workdir = course / "work" / "alice"
    secret = course / ".autograder" / "heldout" / "digits" / "labels.csv"
    nb, _, _ = _run(
        _policy(workdir),
        [
            ATTEMPT,
            f"print(attempt(lambda: open({str(secret)!r}).read()))",
            "print(attempt(lambda: open('../../.autograder/heldout/digits/labels.csv').read()))",
            f"print(attempt(lambda: open({str(course / 'gradebook.db')!r}).read()))",
            f"print(attempt(lambda: os.listdir({str(course / 'submitted')!r})))",
            f"print(attempt(lambda: os.listdir({str(course / 'source')!r})))",
            "print(attempt(lambda: os.listdir('..')))",
        ],
    )
    assert [_text(c) for c in nb.cells[1:]] == [
        "FileNotFoundError 2\n",
        "FileNotFoundError 2\n",
        "FileNotFoundError 2\n",
        "FileNotFoundError 2\n",
        "FileNotFoundError 2\n",
        "ok ['alice']\n",  # only the mount point's own parents exist, empty but for it
    ]


def test_released_data_is_mounted_read_only(course: Path) -> None:
    workdir = course / "work" / "alice"
    policy = _policy(workdir, readonly_binds=((course / "data" / "digits", workdir / "data"),))
    nb, _, _ = _run(
        policy,
        [
            ATTEMPT,
            "print(attempt(lambda: open('data/train.csv').read()))",
            "print(attempt(lambda: open('data/train.csv', 'w')))",
            "print(attempt(lambda: open('data/labels.csv', 'w')))",
        ],
    )
    assert [_text(c) for c in nb.cells[1:]] == [
        "ok 'label,pixel0\\n3,0\\n'\n",
        "OSError 30\n",
        "OSError 30\n",
    ]


def test_public_copies_of_the_heldout_data_are_hidden(course: Path) -> None:
    import sklearn

    digits = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert digits.is_file()  # the host has it; the sandbox must not show it
    nb, _, _ = _run(
        _policy(course / "work" / "alice"),
        [
            ATTEMPT,
            f"print(attempt(lambda: open({str(digits)!r}, 'rb').read(2)))",
            "from sklearn.datasets import load_digits\n"
            "try:\n    load_digits()\nexcept OSError as exc:\n    print(type(exc).__name__)",
            "print(attempt(lambda: os.listdir('/usr/share/datasets')))",
            "print(attempt(lambda: os.listdir(os.path.expanduser('~/.keras'))))",
            "print(attempt(lambda: open('/etc/shadow').read()))",
            "from sklearn.datasets import load_iris; print(load_iris().data.shape)",
        ],
    )
    datasets = "ok []\n" if Path("/usr/share/datasets").is_dir() else "FileNotFoundError 2\n"
    assert [_text(c) for c in nb.cells[1:]] == [
        "PermissionError 13\n",  # /dev/null mounted nodev over the file
        "PermissionError\n",
        datasets,
        "FileNotFoundError 2\n",
        "PermissionError 13\n",
        "(150, 4)\n",  # the rest of scikit-learn's bundled data still works
    ]


def test_environment_of_the_grader_is_not_passed_on(
    course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_KEY", "grader-secret")
    nb, _, _ = _run(
        _policy(course / "work" / "alice", env={"KERAS_BACKEND": "tensorflow"}),
        ["import os; print(os.environ.get('KAGGLE_KEY'), os.environ['KERAS_BACKEND'])"],
    )
    assert _text(nb.cells[0]) == "None tensorflow\n"


def test_the_kernel_is_always_our_python_whatever_the_notebook_asks(course: Path) -> None:
    km = SandboxedKernelManager(policy=_policy(course / "work" / "alice"), kernel_name="ir")
    assert km.kernel_spec.argv[:3] == [sys.executable, "-m", "ipykernel_launcher"]
    assert (km.transport, km.runtime_dir) == ("ipc", None)  # nothing on disk before a start


# --- the network ----------------------------------------------------------------------


def test_no_network_not_even_the_hosts_loopback(course: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        nb, _, _ = _run(
            _policy(course / "work" / "alice"),
            [
                ATTEMPT,
                "import socket\n"
                f"print(attempt(lambda: socket.create_connection(('127.0.0.1', {port}), 2)))",
                "try:\n    socket.getaddrinfo('pypi.org', 443)\n"
                "except socket.gaierror as exc:\n    print(type(exc).__name__)",
                "print(socket.if_nameindex())",
                "print(attempt(lambda: socket.create_connection(('10.255.255.53', 53), 2)))",
            ],
        )
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host's server
    finally:
        server.close()
    assert [_text(c) for c in nb.cells[1:]] == [
        "ConnectionRefusedError 111\n",  # the sandbox's own, empty loopback
        "gaierror\n",
        "[(1, 'lo')]\n",
        "OSError 101\n",  # ENETUNREACH: no route anywhere
    ]


# --- processes and limits -----------------------------------------------------------------


def test_a_fork_bomb_hits_the_process_limit(course: Path) -> None:
    bomb = """
import os, time
children, error = [], None
for _ in range(200):  # bounded: a broken limit still stops here
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(type(error).__name__, error.errno if error else None, len(children) < 40)
"""
    policy = _policy(course / "work" / "alice", max_processes=40)
    nb, _, error = _run(policy, [bomb, "print('alive')"])
    assert error is None
    assert _text(nb.cells[0]) == "BlockingIOError 11 True\n"
    assert _text(nb.cells[1]) == "alive\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run sandboxes as other users")
def test_kernels_running_at_once_run_as_users_of_their_own(course: Path) -> None:
    # RLIMIT_NPROC counts every process of a uid: a shared one would pool the limit.
    notebooks = [new_notebook(cells=[new_code_cell("import os; print(os.getuid())")]) for _ in "ab"]
    kms = [SandboxedKernelManager(policy=_policy(course / "work" / "alice")) for _ in "ab"]
    clients = [NotebookClient(nb, km=km, timeout=30) for nb, km in zip(notebooks, kms, strict=True)]

    async def go() -> None:
        try:
            async with clients[0].async_setup_kernel(), clients[1].async_setup_kernel():
                for nb, client in zip(notebooks, clients, strict=True):
                    await client.async_execute_cell(nb.cells[0], 0)
        finally:
            for km in kms:
                await km.shutdown_kernel(now=True)
                await km.cleanup_resources()

    asyncio.run(go())
    uids = [int(_text(nb.cells[0])) for nb in notebooks]
    names = [pwd.getpwuid(uid).pw_name for uid in uids]
    assert names[0] != names[1]
    assert all(n.startswith("autograder-sandbox-") and n[19:].isdigit() for n in names)


def test_a_detached_daemon_is_gone_after_shutdown(course: Path) -> None:
    marker = f"{4000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    daemon = f"""
import os
import pwd
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{marker}"])
    os._exit(0)
os.wait()
"""
    seen: list[int] = []
    _, _, error = _run(
        _policy(course / "work" / "alice"),
        [daemon, "import time; time.sleep(0.3)"],
        polite=True,
        between=lambda nb: seen.extend(_processes(f"sleep {marker}")),
    )
    assert error is None
    assert len(seen) == 1  # it was running, detached, while the kernel lived
    assert _gone(f"sleep {marker}")


def test_an_interrupt_stops_a_busy_cell(course: Path) -> None:
    nb, _, error = _run(
        _policy(course / "work" / "alice"),
        ["while True: pass", "print('after')"],
        timeout=2,
        interrupt_on_timeout=True,
    )
    assert error is None
    assert _errors(nb.cells[0]) == ["KeyboardInterrupt"]
    assert _text(nb.cells[1]) == "after\n"


def test_os_exit_is_a_dead_kernel_and_leaves_nothing_behind(course: Path) -> None:
    marker = f"{5000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    nb, km, error = _run(
        _policy(course / "work" / "alice"),
        [
            f"import subprocess; subprocess.Popen(['setsid', 'sleep', '{marker}'])",
            "import os; os._exit(3)",
            "print('never')",
        ],
    )
    assert isinstance(error, DeadKernelError)
    assert _text(nb.cells[2]) == ""
    assert km.termination_reason() is None
    assert _gone(f"sleep {marker}")


def test_a_heap_memory_bomb_is_a_memory_error(course: Path) -> None:
    nb, km, error = _run(
        _policy(course / "work" / "alice", memory_bytes=512 * MiB),
        ["x = bytearray(3 * 2**30)", "import numpy as np\nnp.ones(2**30)", "print('alive')"],
    )
    assert error is None
    assert _errors(nb.cells[0]) == ["MemoryError"]
    assert _errors(nb.cells[1]) == ["MemoryError"]
    assert _text(nb.cells[2]) == "alive\n"
    assert km.termination_reason() is None


def test_a_shared_memory_bomb_kills_the_kernel_with_reason_memory(course: Path) -> None:
    # RLIMIT_DATA does not count shared mappings: the watchdog must catch this one.
    bomb = """
import mmap, time
m = mmap.mmap(-1, 1536 * 2**20)  # bounded: at most 1.5 GiB, even if nothing stops it
for i in range(0, len(m), 4096):
    m[i] = 1
time.sleep(10)
"""
    nb, km, error = _run(
        _policy(course / "work" / "alice", memory_bytes=512 * MiB), [bomb, "print('never')"]
    )
    assert isinstance(error, DeadKernelError)
    assert km.termination_reason() == "memory"
    assert _text(nb.cells[1]) == ""


def test_cpu_time_limit_kills_the_kernel_with_reason_cpu(course: Path) -> None:
    _, km, error = _run(
        _policy(course / "work" / "alice", cpu_seconds=2), ["while True: pass", "print('never')"]
    )
    assert isinstance(error, DeadKernelError)
    assert km.termination_reason() == "cpu"


def test_file_size_and_tmp_are_limited(course: Path) -> None:
    workdir = course / "work" / "alice"
    nb, _, _ = _run(
        _policy(workdir, file_size_bytes=1 * MiB, tmp_bytes=4 * MiB),
        [
            ATTEMPT,
            "print(attempt(lambda: open('big.bin', 'wb').write(b'x' * 2**21)))",
            "def fill():\n    for i in range(8):\n"
            "        open(f'/tmp/f{i}', 'wb').write(b'x' * (2**20 - 1))\n",
            "print(attempt(fill))",
        ],
    )
    assert _text(nb.cells[1]) == "OSError 27\n"  # EFBIG
    assert _text(nb.cells[3]) == "OSError 28\n"  # ENOSPC: /tmp is 4 MiB
    assert (workdir / "big.bin").stat().st_size == 1 * MiB


@pytest.mark.slow
def test_tensorflow_trains_under_2_gib_and_a_bomb_there_is_stopped(course: Path) -> None:
    fit = """
import numpy as np, keras
x = np.random.rand(256, 28, 28, 1).astype('float32'); y = np.random.randint(0, 10, 256)
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation='softmax')])
model.compile('adam', 'sparse_categorical_crossentropy')
model.fit(x, y, epochs=1, verbose=0)
print('fit ok')
"""
    nb, km, error = _run(
        _policy(course / "work" / "alice", memory_bytes=2048 * MiB, max_processes=256),
        [fit, "big = np.ones((2**30,))", "print('alive')"],
        timeout=120,
    )
    assert error is None
    assert _text(nb.cells[0]).endswith("fit ok\n")
    assert _errors(nb.cells[1]) == ["MemoryError"]
    assert _text(nb.cells[2]) == "alive\n"
    assert km.termination_reason() is None


# --- the evaluator's helper and the availability check ------------------------------------


def test_run_sandboxed_returns_output_and_kills_on_timeout(course: Path) -> None:
    workdir = course / "work" / "alice"
    done = run_sandboxed(
        [sys.executable, "-c", "import os, sys; print(os.getcwd(), sys.stdin.read())"],
        policy=_policy(workdir),
        timeout=30,
        input=b"42",
    )
    assert (done.returncode, done.stdout, done.timed_out) == (0, f"{workdir} 42\n".encode(), False)
    marker = f"{6000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    slow = run_sandboxed(
        ["sh", "-c", f"setsid sleep {marker} & sleep 60"], policy=_policy(workdir), timeout=1
    )
    assert (slow.returncode, slow.timed_out) == (128 + 9, True)  # bwrap: 128 + signal
    assert _gone(f"sleep {marker}")


def test_run_sandboxed_stops_memory_spread_over_processes(course: Path) -> None:
    # Each child stays under RLIMIT_DATA (256 MiB); together they pass the 384 MiB limit.
    code = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        block = bytearray(200 * 2**20)
        time.sleep(20)
        os._exit(0)
time.sleep(20)
"""
    done = run_sandboxed(
        [sys.executable, "-c", code],
        policy=_policy(course / "work" / "alice", memory_bytes=384 * MiB),
        timeout=15,
    )
    assert (done.memory_exceeded, done.timed_out, done.returncode) == (True, False, 128 + 9)


def test_pages_forked_processes_share_count_once(course: Path) -> None:
    # 3 processes map the same 250 MiB: 750 MiB by RSS, 250 MiB in truth, under 384 MiB.
    code = """
import os, time
block = b"x" * (250 * 2**20)
for _ in range(2):
    if os.fork() == 0:
        time.sleep(20)
        os._exit(0)
time.sleep(20)
"""
    done = run_sandboxed(
        [sys.executable, "-c", code],
        policy=_policy(course / "work" / "alice", memory_bytes=384 * MiB),
        timeout=2,
    )
    assert (done.memory_exceeded, done.timed_out) == (False, True)


def test_probe_says_how_to_install_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "TOOL_PATH", "/nonexistent")
    assert probe() == SandboxStatus(
        ok=False,
        reason="bubblewrap (bwrap) is not installed",
        fix="install it: apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap",
    )


def test_require_sandbox_names_the_problem_the_fix_and_the_escape_hatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        probe_module, "_cached_probe", lambda: SandboxStatus(False, "bwrap failed: x", "do y")
    )
    with pytest.raises(SandboxUnavailableError) as info:
        probe_module.require_sandbox()
    assert str(info.value) == (
        "the sandbox for untrusted notebooks is not available: bwrap failed: x; do y; "
        "or, for trusted notebooks only, pass --unsafe-no-sandbox"
    )


def test_a_missing_workdir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.sandboxed_command(["true"], SandboxPolicy(workdir=tmp_path / "nope"))
    assert str(info.value) == f"the sandbox working folder {tmp_path / 'nope'} is not a folder"


def test_a_gpu_that_is_not_there_is_a_clear_error(course: Path) -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.sandboxed_command(["true"], _policy(course / "work" / "alice", gpus=(97,)))
    assert str(info.value) == (
        "GPU 97 was assigned but /dev/nvidia97 does not exist; give --gpus the indices "
        "nvidia-smi -L lists, or none"
    )


def test_a_workdir_in_a_system_folder_is_refused() -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.sandboxed_command(["true"], SandboxPolicy(workdir=Path("/usr/share")))
    assert str(info.value) == (
        "the sandbox working folder /usr/share is inside /usr, which every sandbox sees; keep "
        "the course and its copies outside the system folders"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to the sandbox user")
def test_as_root_the_command_drops_privileges_before_bwrap(course: Path) -> None:
    workdir = course / "work" / "alice"
    (workdir / "a1.ipynb").write_text("{}")
    cmd = sandbox.sandboxed_command(["true"], _policy(workdir))
    uid, gid = limits.ensure_sandbox_user()
    setpriv, bwrap = cmd.index(sandbox._tool("setpriv")), cmd.index(sandbox._tool("bwrap"))
    assert setpriv < bwrap
    assert cmd[setpriv + 1 : setpriv + 4] == [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    assert (workdir / "a1.ipynb").stat().st_uid == uid


def test_a_symbolic_link_in_the_workdir_is_never_mounted(course: Path) -> None:
    workdir = course / "work" / "alice"
    secret = course / ".autograder" / "heldout" / "digits" / "labels.csv"
    (workdir / "model.keras").symlink_to(secret)
    policy = _policy(workdir, readonly_binds=((workdir / "model.keras", Path("/model")),))
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.sandboxed_command(["true"], policy)
    assert str(info.value) == (
        f"{workdir / 'model.keras'} leads outside the working folder {workdir}; it is not mounted"
    )


# --- wired into grading ---------------------------------------------------------------------


def test_the_evaluator_sees_its_folder_and_package_and_nothing_else(
    tiny_course: Any, tmp_path: Path
) -> None:
    from autograder.grade import GradeSettings

    workdir, scratch = tmp_path / "work", tmp_path / "scratch"
    workdir.mkdir()
    scratch.mkdir()
    (workdir / "model.keras").write_bytes(b"the kernel's")
    (scratch / "model.keras").write_bytes(b"model")  # the copies evaluate_model makes
    (scratch / "images.npy").write_bytes(b"images")
    images = tiny_course.heldout("digits") / "heldout-images.npy"
    images.parent.mkdir(parents=True)
    images.write_bytes(b"images")
    job = tiny_job(tiny_course, tmp_path, images.parent, GradeSettings(), submission=workdir)
    wrap = evaluator_wrapper(job=job, scratch=scratch)
    assert wrap is not None
    code = (
        "import os, sys, autograder\n"
        "print(open('model.keras').read(), open('images.npy').read())\n"
        f"print([os.path.exists(p) for p in ({str(workdir)!r}, {str(images.parent)!r})])\n"
        "print(os.getcwd() == sys.argv[1], os.environ['WHO'])"
    )
    cmd = wrap([sys.executable, "-c", code, str(scratch)], env={"WHO": "evaluator"})
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "model images\n[False, False]\nTrue evaluator\n")
    assert (
        evaluator_wrapper(
            job=dataclasses.replace(job, settings=GradeSettings(sandbox=False)), scratch=scratch
        )
        is None
    )


def test_grading_a_class_in_the_sandbox(tiny_course: Any, submit: Any) -> None:
    from conftest import complete, with_cell

    from autograder.grade import GradeSettings, grade

    submit("alice", complete(tiny_course))
    bomb = "import mmap, time\nm = mmap.mmap(-1, 2**30)\nm.write(b'x' * 2**30)\ntime.sleep(10)"
    submit("bob", with_cell(complete(tiny_course), "squares", bomb))
    report = grade(
        tiny_course,
        "tiny",
        settings=GradeSettings(sandbox=True, memory_limit="300M"),
        backend="inline",
    )
    results = {r.student: r for r in report.graded}
    assert (results["alice"].status, results["alice"].score) == ("graded", 3.0)
    assert results["bob"].status == "memory"
