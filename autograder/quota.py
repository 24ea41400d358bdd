"""The disk quota of a work folder: what one submission may keep on disk.

Two mechanisms, the strongest this machine allows (:func:`make_workdir` picks):

- *A file system of its own* (as root, with loop devices): the work folder is an ext4 file
  system in a sparse image beside it, a little larger than the quota. It refuses what passes
  its size (ENOSPC), however it is written: one big file, many small ones (its inodes are
  limited too), ``fallocate``, sparse files (only allocated blocks count), hard links (counted
  once). The sandbox's watchdog reads its usage with one ``statvfs`` and stops the kernel once
  it passes the quota itself, so the status says ``disk``.
- *A watched folder* (without root): a plain folder whose usage the watchdog adds up as it
  runs (allocated blocks, hard links once, files deleted but still open). Space is then taken
  only as fast as it is written: the sandbox denies ``fallocate`` and io_uring with a seccomp
  filter (:func:`seccomp_filter`), which would otherwise reserve gigabytes in a millisecond.
  What passes the quota before the next look (a tenth of a second) is the margin;
  docs/benchmarks.md measures it.

Files in the sandbox's private ``/tmp`` and ``/dev/shm`` are not on disk: they are memory,
bounded by their tmpfs size and counted by the watchdog as memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .limits import TOOL_PATH

log = logging.getLogger(__name__)

#: Suffix of the image file of a work folder with a file system of its own, with the pid of
#: the grader process that made it (a folder whose process is gone is swept up).
IMAGE_SUFFIX = ".quota-"
#: Look at a watched folder at most this often (its walk gets slower with its files).
MIN_WALK_INTERVAL_S = 0.1
#: Blocks and inodes a fresh file system holds before anything is written, by mount point.
_BASELINE: dict[str, tuple[int, int]] = {}


def make_workdir(prefix: str, *, limit: int | None, files: int | None = None) -> Path:
    """A new, empty work folder (``tempfile.mkdtemp``), on a file system of its own sized to
    ``limit`` bytes and ``files`` inodes when this machine allows it (see the module)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if limit is not None and _can_mount():
        sweep()
        try:
            _mount(path, limit, files or limit // 4096)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("work folder quota: no file system of its own (%s); watching it", exc)
            _unmount(path)
    return path


def remove_workdir(path: Path) -> None:
    """Remove a work folder made by :func:`make_workdir` (and its file system)."""
    _unmount(path)
    shutil.rmtree(path, ignore_errors=True)


def own_filesystem(path: Path) -> bool:
    """True when ``path`` is the root of a file system (a quota of its own)."""
    try:
        return os.stat(path).st_dev != os.stat(Path(path).parent).st_dev
    except OSError:
        return False


class DiskQuota:
    """What the watchdog asks of a work folder: has it passed ``limit`` bytes or ``files``?"""

    def __init__(self, path: Path, limit: int, files: int) -> None:
        self.path = Path(path)
        self.limit = limit
        self.files = files
        self.own = own_filesystem(self.path)
        self.peak = 0
        self._next = 0.0

    def exceeded(self, procs: Sequence[str] = ()) -> str | None:
        """``disk`` or ``files`` once the folder holds more than allowed, else None.
        ``procs`` are the /proc folders of the sandbox's processes (for files they deleted
        but keep open, which a watched folder's walk does not see)."""
        now = time.monotonic()
        if now < self._next:
            return None
        if self.own:
            used, count = filesystem_usage(self.path)
        else:
            used, count = folder_usage(self.path, self.limit, self.files, procs)
            # A walk of many files is slow: look less often, never less than every 2 s.
            self._next = now + min(2.0, max(MIN_WALK_INTERVAL_S, 4 * (time.monotonic() - now)))
        self.peak = max(self.peak, used)
        if used > self.limit:
            return "disk"
        if count > self.files:
            return "files"
        return None


def filesystem_usage(path: Path) -> tuple[int, int]:
    """Bytes and inodes in use on the file system at ``path``, less what it held when new."""
    st = os.statvfs(path)
    base = _BASELINE.get(str(path), (0, 0))
    used = (st.f_blocks - st.f_bfree) * st.f_frsize - base[0]
    return max(0, used), max(0, st.f_files - st.f_ffree - base[1])


def folder_usage(path: Path, limit: int, files: int, procs: Sequence[str] = ()) -> tuple[int, int]:
    """Allocated bytes and entries under ``path`` (hard links once), plus files the processes
    in ``procs`` deleted and keep open; the walk stops once past ``limit`` or ``files``."""
    root_dev = os.stat(path).st_dev
    seen: set[tuple[int, int]] = set()
    used = count = 0
    stack = [str(path)]
    while stack and used <= limit and count <= files:
        for entry in _entries(stack.pop()):
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                count += 1
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    used += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode) and info.st_dev == root_dev:
                    stack.append(entry.path)
    for proc in procs:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"{proc}/fd"):
                with contextlib.suppress(OSError):
                    info = os.stat(fd.path)
                    key = (info.st_dev, info.st_ino)
                    deleted = stat.S_ISREG(info.st_mode) and info.st_nlink == 0
                    if deleted and info.st_dev == root_dev and key not in seen:
                        seen.add(key)
                        used += info.st_blocks * 512
    return used, count


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except PermissionError:
        # Without root the sandbox runs as our own uid: a folder it made unreadable is still
        # ours to open.
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
            return list(os.scandir(folder))
    except OSError:
        pass
    return []


# --- a file system of its own -------------------------------------------------------------


@functools.cache
def _can_mount() -> bool:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        return False
    return all(shutil.which(t, path=TOOL_PATH) for t in ("mkfs.ext4", "mount", "umount"))


def _tool(name: str) -> str:
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        raise OSError(f"{name} not found")
    return found


def _image(path: Path, pid: int | None = None) -> Path:
    return Path(f"{path}{IMAGE_SUFFIX}{pid or os.getpid()}")


def _mount(path: Path, limit: int, files: int) -> None:
    """Make ``path`` an ext4 file system a little larger than ``limit`` (so the watchdog sees
    it pass the quota before the file system refuses): 1/32 more, plus 16 MiB."""
    image = _image(path)
    inodes = files + files // 32 + 64
    size = limit + limit // 32 + 16 * 2**20 + inodes * 256  # 256-byte inodes
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, size)  # sparse: the disk holds only what is written
    finally:
        os.close(fd)
    _run(
        [_tool("mkfs.ext4"), "-q", "-F", "-m", "0", "-b", "4096", "-N", str(inodes),
         "-O", "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard",
         str(image)]
    )  # fmt: skip
    _run([_tool("mount"), "-t", "ext4", "-o", "loop,nosuid,nodev,noatime", str(image), str(path)])
    os.rmdir(path / "lost+found")
    os.chmod(path, 0o700)
    st = os.statvfs(path)
    _BASELINE[str(path)] = ((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree)


def _run(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, check=True, timeout=60, env={"PATH": TOOL_PATH})


def _unmount(path: Path, pid: int | None = None) -> None:
    image = _image(path, pid)
    if own_filesystem(path):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [_tool("umount"), str(path)], capture_output=True, timeout=60, check=False
            )
            if done.returncode != 0:  # still busy: detach now, freed when the last user goes
                subprocess.run([_tool("umount"), "-l", str(path)], capture_output=True, timeout=60)
    _BASELINE.pop(str(path), None)
    with contextlib.suppress(FileNotFoundError):
        image.unlink()


_MOUNT_LINE = re.compile(r"^\S+ \S+ \S+ \S+ (\S+) .* - ext4 (\S+) ")


def sweep() -> None:
    """Remove the work folders (their file systems and images) of grader processes that are
    gone: a worker killed with ``kill -9`` leaves its folder mounted."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
        prefix = os.path.join(tempfile.gettempdir(), "autograder-")
        for line in lines:
            match = _MOUNT_LINE.match(line)
            if not match or not match.group(2).startswith("/dev/loop"):
                continue
            point = match.group(1).replace("\\040", " ")
            if not point.startswith(prefix):
                continue
            for image in Path(point).parent.glob(f"{Path(point).name}{IMAGE_SUFFIX}*"):
                pid = image.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    remove_workdir_of(Path(point), int(pid))


def remove_workdir_of(path: Path, pid: int) -> None:
    """Remove the work folder ``path`` that grader process ``pid`` made."""
    _unmount(path, pid)
    shutil.rmtree(path, ignore_errors=True)


# --- the seccomp filter of a watched folder -----------------------------------------------

#: (audit arch, syscalls that reserve space without writing it) of the machines we know:
#: fallocate, and io_uring (whose requests include fallocate and escape the filter).
_DENIED = {
    "x86_64": (0xC000003E, (285, 425, 426, 427)),
    "aarch64": (0xC00000B7, (47, 425, 426, 427)),
}
_EOPNOTSUPP, _ENOSYS = 95, 38


def seccomp_program(machine: str | None = None) -> bytes | None:
    """A classic BPF seccomp program (what ``bwrap --seccomp`` loads): ``fallocate`` fails
    with EOPNOTSUPP (glibc's ``posix_fallocate`` then writes the blocks, at write speed),
    io_uring with ENOSYS, and so does every call of another ABI (32-bit ``int 0x80``, x32)
    that could reach them by other numbers. None for a machine not in the table."""
    arch = _DENIED.get(machine or os.uname().machine)
    if arch is None:
        return None
    audit, calls = arch
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, errno = 0x7FFF0000, 0x00050000

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    prog = [
        op(ld_abs, 4),  # seccomp_data.arch
        op(jeq, audit, 1, 0),
        op(ret, errno | _ENOSYS),
        op(ld_abs, 0),  # seccomp_data.nr
        op(jge, 0x40000000, 0, 1),  # x32 numbers
        op(ret, errno | _ENOSYS),
    ]
    for nr in calls:
        code = _EOPNOTSUPP if nr == calls[0] else _ENOSYS
        prog += [op(jeq, nr, 0, 1), op(ret, errno | code)]
    prog.append(op(ret, allow))
    return b"".join(prog)


@functools.cache
def seccomp_filter() -> Path | None:
    """A file holding :func:`seccomp_program` (made once per process, removed at exit)."""
    program = seccomp_program()
    if program is None:
        return None
    fd, name = tempfile.mkstemp(prefix="autograder-seccomp-", suffix=".bpf")
    with os.fdopen(fd, "wb") as fh:
        fh.write(program)
    os.chmod(name, 0o644)
    import atexit

    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)
