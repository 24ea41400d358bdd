"""Processes, users and limits of a sandbox, seen from the host.

Who a sandbox runs as (:func:`identity`, :class:`UserSlot`), the rlimits it starts with, how
to find its processes from the bwrap process that started it, how to kill them all, and the
watchdog that adds up what they hold and use (memory, CPU, disk). :mod:`autograder.sandbox`
builds the sandbox.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

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
#: How often the watchdog looks at the sandbox's processes.
WATCH_INTERVAL_S = 0.1
#: The watchdog adds up CPU time every this many looks (a read of every process's stat).
CPU_EVERY = 5


#: The status and message of a kernel the watchdog (or the grader's memory guard) stopped, by
#: reason; ``limits`` is the run's ExecutionLimits and ``where`` " in cell [n]" or "".
#: ``memory`` is execute's own: its message names the limit only when there is one.
STOP_REASONS = {
    "disk": (
        "disk",
        "the notebook wrote more into its folder than allowed ({limits.disk_limit_text}) and "
        "was stopped{where}; save fewer or smaller files (one model, no checkpoints)",
    ),
    "files": (
        "disk",
        "the notebook made more files in its folder than allowed ({limits.max_files:,}) and "
        "was stopped{where}; write fewer, larger files",
    ),
    "cpu": (
        "timeout",
        "the notebook used more than its {limits.cpu_seconds:,.0f} CPU seconds (all its "
        "processes and threads together) and was stopped{where}; the cells after it were not run",
    ),
    "message": (
        "memory",
        "the notebook sent the grader one output larger than it accepts (32 MiB) and was "
        "stopped{where}; display smaller outputs",
    ),
    "output": (
        "memory",
        "the notebook sent the grader more output than it accepts and was stopped{where}; "
        "print and display less",
    ),
}


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


def _sandbox_init(outer: int) -> int | None:
    """The sandbox's init once ``outer`` is bwrap (before, the commands that lead to it, such
    as root's staging mounts, have children of their own)."""
    try:
        if Path(f"/proc/{outer}/comm").read_text().strip() != "bwrap":
            return None
    except OSError:
        return None
    kids = children(outer)
    return kids[0] if kids else None


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


#: Clock ticks per second, the unit of CPU times in /proc/<pid>/stat.
_TICKS = os.sysconf("SC_CLK_TCK")


def sandbox_cpu_seconds(procs: list[str]) -> float:
    """CPU seconds used by the processes at ``procs`` (/proc folders) and the children they
    waited for: everything a sandbox ran, since its init waits for every orphan."""
    ticks = 0
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(proc, "stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / _TICKS


def tmpfs_bytes(init: int) -> int:
    """Bytes in the sandbox's private /tmp and /dev/shm (memory, not disk)."""
    total = 0
    for mount in ("tmp", "dev/shm"):
        with contextlib.suppress(OSError):
            st = os.statvfs(f"/proc/{init}/root/{mount}")
            total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


class DiskCheck(Protocol):
    """What the watchdog asks of a work folder (:class:`autograder.quota.DiskQuota`)."""

    def exceeded(self, procs: Sequence[str] = ()) -> str | None: ...


class Watchdog:
    """Stops the sandbox the moment it passes one of its limits; ``reason`` says which.

    - ``memory``: its processes together hold more than ``memory`` bytes of anonymous and
      shared memory, counting the files in its private /tmp and /dev/shm (tmpfs: memory).
      RLIMIT_DATA stops one process's heap; it does not see shared memory
      (``mmap(-1, n)``) nor several processes each under the limit.
    - ``cpu``: its processes, their threads and the children they waited for used more than
      ``cpu_seconds`` CPU seconds together (RLIMIT_CPU counts one process at a time).
    - ``disk`` or ``files``: its work folder passed its quota (``disk``, see
      :mod:`autograder.quota`).
    """

    def __init__(
        self,
        outer: int,
        limit: int | None = None,
        *,
        cpu_seconds: float | None = None,
        disk: DiskCheck | None = None,
    ) -> None:
        self.outer = outer
        self.limit = limit
        self.cpu_seconds = cpu_seconds
        self.disk = disk
        self.reason: str | None = None
        self.peak = 0
        self.cpu_used = 0.0
        self._looks = 0
        self._stop = threading.Event()
        if limit is not None or cpu_seconds is not None or disk is not None:
            threading.Thread(target=self._run, name=f"sandbox-watch-{outer}", daemon=True).start()

    @property
    def exceeded(self) -> bool:
        """True when it was stopped for memory."""
        return self.reason == "memory"

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        init: int | None = None
        while not self._stop.wait(WATCH_INTERVAL_S):
            if init is None:
                init = _sandbox_init(self.outer)
                if init is None:
                    if not Path(f"/proc/{self.outer}").exists():
                        return
                    continue
            try:
                reason = self._look(init)
            except Exception as exc:
                if not Path(f"/proc/{init}").exists():
                    return  # the sandbox is gone
                # Starting up (its /proc not mounted yet) or a process just gone: look again.
                if not isinstance(exc, OSError):
                    log.exception("sandbox %d: watchdog look failed; looking again", init)
                continue
            if reason is not None:
                self.reason = reason
                log.info("sandbox %d passed its %s limit: killed", init, reason)
                kill_sandbox(self.outer)
                return

    def _look(self, init: int) -> str | None:
        proc = f"/proc/{init}/root/proc"
        procs = [f"{proc}/{name}" for name in os.listdir(proc) if name.isdigit()]
        if self.limit is not None:
            used = sandbox_memory(init) + tmpfs_bytes(init)
            if used > self.limit:
                # Confirm before killing: forked workers share their parent's pages.
                used = (sandbox_memory(init, proportional=True) or used) + tmpfs_bytes(init)
            self.peak = max(self.peak, used)
            if used > self.limit:
                return "memory"
        self._looks += 1
        if self.cpu_seconds is not None and self._looks % CPU_EVERY == 0:
            self.cpu_used = max(self.cpu_used, sandbox_cpu_seconds(procs))
            if self.cpu_used > self.cpu_seconds:
                return "cpu"
        if self.disk is not None:
            return self.disk.exceeded(procs)
        return None
