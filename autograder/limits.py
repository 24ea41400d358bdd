"""Processes, users and limits of a sandbox, seen from the host.

Who a sandbox runs as (:func:`identity`, :class:`UserSlot`), the rlimits it starts with, how
to find its processes from the bwrap process that started it, how to kill them all, and the
memory watchdog that adds up what they hold. :mod:`autograder.sandbox` builds the sandbox.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from .errors import SandboxUnavailableError

log = logging.getLogger(__name__)

DEFAULT_USER = "autograder-sandbox"
#: Host folder of the sandbox's runtime files: user-slot locks, root's staging mounts.
RUN_DIR = Path("/run/autograder-sandbox")
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Extra seconds between the soft CPU limit (SIGXCPU) and the hard one (SIGKILL).
CPU_GRACE_S = 5
#: Users a machine may have running sandboxes as at once (<user>-0 .. <user>-N).
MAX_USER_SLOTS = 64
#: How often the memory watchdog looks at the sandbox's processes.
WATCH_INTERVAL_S = 0.1


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who the sandbox runs as."""

    uid: int
    gid: int
    drop: bool  # True when we are root and must switch to uid/gid before bwrap


def ensure_sandbox_user(name: str = DEFAULT_USER) -> tuple[int, int]:
    """The (uid, gid) of system user ``name``, created (as root) if missing."""
    try:
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    useradd = shutil.which("useradd", path=TOOL_PATH)
    if useradd is not None:
        # Workers starting together would race for /etc/passwd's lock: one at a time.
        RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open(RUN_DIR / "useradd.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return entry.pw_uid, entry.pw_gid
            subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
                 "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                capture_output=True, check=False,
            )  # fmt: skip
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    log.warning(
        "could not create the sandbox user %r; using 'nobody' instead, which shares its "
        "process limit with every other 'nobody' process (create it: useradd --system %s)",
        name,
        name,
    )
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def identity(user: str) -> Identity:
    """The sandbox's uid and gid: ``user`` (created if needed) as root, else ourselves."""
    if os.geteuid() != 0:
        return Identity(os.getuid(), os.getgid(), drop=False)
    uid, gid = ensure_sandbox_user(user)
    return Identity(uid, gid, drop=True)


class UserSlot:
    """Holds ``<base>-<n>`` for one running sandbox (as root, when ``own`` is true).

    The claim is an flock on ``RUN_DIR/<base>-<n>.lock``: it is shared by every grader process
    on the machine and released when the holder closes it or dies. ``user`` is the user to
    run as: the slot's, or ``base`` when no slot was taken.
    """

    def __init__(self, base: str, *, own: bool = True) -> None:
        self.user = base
        self._fd: int | None = None
        if os.geteuid() != 0 or not own:
            return
        RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        for n in range(MAX_USER_SLOTS):
            fd = os.open(RUN_DIR / f"{base}-{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd = fd
            self.user = f"{base}-{n}"
            return
        raise SandboxUnavailableError(
            f"all {MAX_USER_SLOTS} sandbox users {base}-N are in use; run fewer workers"
        )

    def release(self) -> None:
        """Give the user back (after every process of the sandbox is gone)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> UserSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def rlimit_options(
    *,
    who: Identity,
    max_processes: int,
    cpu_seconds: int | None,
    file_size_bytes: int | None,
    memory_bytes: int | None,
) -> list[str]:
    """``prlimit`` options for these limits (``--core=0`` always: no core dumps)."""
    nproc = max_processes
    if not who.drop:
        # RLIMIT_NPROC counts every task of the uid: without a dedicated uid, allow for the
        # user's own processes on top.
        nproc += _tasks_of(who.uid)
    limits = [f"--nproc={nproc}", "--core=0"]
    if cpu_seconds is not None:
        limits.append(f"--cpu={cpu_seconds}:{cpu_seconds + CPU_GRACE_S}")
    if file_size_bytes is not None:
        limits.append(f"--fsize={file_size_bytes}")
    if memory_bytes is not None:
        limits.append(f"--data={memory_bytes}")
    return limits


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def children(pid: int) -> list[int]:
    """Pids of the children of ``pid`` (its main thread's)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def command_pid(outer: int) -> int | None:
    """Host pid of the command the sandbox runs (its pid 2, the child of its init).

    ``outer`` is the pid of the bwrap process that was started (the Popen pid).
    """
    for init in children(outer):
        for kid in children(init):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{kid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "2":
                        return kid
    return None


def kill_sandbox(outer: int) -> None:
    """SIGKILL the sandbox's init: the kernel then kills every process of its namespace.

    bwrap (``outer``) exits once its init is gone, hence after the whole namespace: waiting
    for ``outer`` waits for everything. Before the init exists, bwrap itself is killed.
    """
    inits = children(outer)
    for init in inits:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
    if not inits:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(outer, signal.SIGKILL)


def sandbox_memory(init: int, *, proportional: bool = False) -> int:
    """Anonymous and shared memory held by every process of the sandbox, in bytes.

    The quick sum (``RssAnon + RssShmem`` from ``status``) counts pages that forked processes
    share once per process; ``proportional`` sums ``Pss_Anon + Pss_Shmem`` instead, which
    splits them, at the price of a page-table walk (about 10 ms for a 600 MB process).
    """
    fields = ("Pss_Anon:", "Pss_Shmem:") if proportional else ("RssAnon:", "RssShmem:")
    total = 0
    proc = f"/proc/{init}/root/proc"
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            text = Path(proc, name, "smaps_rollup" if proportional else "status").read_text()
            for line in text.splitlines():
                if line.startswith(fields):
                    total += int(line.split()[1]) * 1024
    return total


class MemoryWatch:
    """Kills the sandbox when its processes together hold more than ``limit`` bytes.

    RLIMIT_DATA stops one process's heap; it does not see shared memory (``mmap(-1, n)``)
    nor several processes each under the limit. tmpfs files are bounded by their size.
    """

    def __init__(self, outer: int, limit: int | None) -> None:
        self.outer = outer
        self.limit = limit
        self.exceeded = False
        self.peak = 0
        self._stop = threading.Event()
        if limit is not None:
            threading.Thread(target=self._run, name=f"sandbox-memory-{outer}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        assert self.limit is not None
        init: int | None = None
        while not self._stop.wait(WATCH_INTERVAL_S):
            if init is None:
                kids = children(self.outer)
                if not kids:
                    if not Path(f"/proc/{self.outer}").exists():
                        return
                    continue
                init = kids[0]
            try:
                used = sandbox_memory(init)
                if used > self.limit:
                    # Confirm before killing: forked workers share their parent's pages.
                    used = sandbox_memory(init, proportional=True) or used
            except OSError:
                return  # the sandbox is gone
            self.peak = max(self.peak, used)
            if used > self.limit:
                self.exceeded = True
                log.info("sandbox %d holds %d bytes (limit %d): killed", init, used, self.limit)
                kill_sandbox(self.outer)
                return
