"""The isolation every untrusted kernel (and the model evaluator) runs in: bubblewrap.

What a sandboxed process sees (DESIGN.md, "Trust boundary"):

- a read-only system (``/usr``, ``/etc``, the ``/lib*`` and ``/bin`` links), the Python
  installation the grader runs (``sys.prefix`` and ``sys.base_prefix``, wherever they live),
  a fresh ``/proc``, a minimal read-only ``/dev`` and small private tmpfs ``/tmp`` and
  ``/dev/shm``; ``HOME`` is ``/tmp/home``;
- its working folder (the copy of one submission) as the only writable place on disk, plus
  the read-only binds of the policy (the released data);
- no network (a new network namespace holds only its own loopback), its own PID namespace
  (killing it kills every process it started, daemons included), no further user namespaces;
- nothing else: not the course folder, not other submissions, not the grader's home, and not
  the public copies the held-out data could be looked up from (:data:`HIDDEN_DEFAULTS`).

The working folder appears at its own path; its parent folders exist inside only as empty
mount points (read-only, or part of the private ``/tmp`` when the copy lives under ``/tmp``).

As root, the command first drops to an unprivileged user and then runs bubblewrap
unprivileged through a user namespace. Each running sandbox takes a user of its own
(``autograder-sandbox-<n>``, created on first use, see :class:`UserSlot`), because
RLIMIT_NPROC counts every process of a uid. Paths that user cannot reach (a Python under
``/root/.pyenv``, a copy under a 0700 folder) are bind-mounted by root into a private staging
folder first, so only what the policy names is exposed.

Limits: processes (RLIMIT_NPROC), CPU seconds and file size per process, and memory:
RLIMIT_DATA per process (TensorFlow runs under it; RLIMIT_AS breaks it) plus a watchdog that
kills the whole sandbox when its processes together hold more than the limit in anonymous and
shared memory (which RLIMIT_DATA does not see). See docs/benchmarks.md for the measurements.

This module is the mechanism only: what a grading job's processes get is
:mod:`autograder.policy`, and whether sandboxes work here at all is :mod:`autograder.probe`.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import SandboxUnavailableError
from .limits import (
    DEFAULT_USER,
    RUN_DIR,
    TOOL_PATH,
    Identity,
    UserSlot,
    Watchdog,
    identity,
    kill_sandbox,
    rlimit_options,
)
from .quota import DiskQuota, own_filesystem, seccomp_filter

log = logging.getLogger(__name__)

#: Paths hidden in every sandbox. ``{prefix}`` stands for each bound Python installation and
#: ``{site}`` for each of its site-packages folders; paths that do not exist are skipped.
HIDDEN_DEFAULTS: tuple[str, ...] = (
    # Public copies of the data sets held-out sets are cut from: a kernel that can read them
    # can look its test images up and recover the labels.
    "{site}/sklearn/datasets/data/digits.csv.gz",  # scikit-learn's load_digits
    "/usr/share/datasets",  # Debian's dataset-fashion-mnist (and any other dataset-* package)
    "{prefix}/pkgs",  # conda's package cache: more copies of scikit-learn
    # The Keras cache (~/.keras/datasets) needs no entry: HOME is a fresh tmpfs.
    # Host secrets a world-readable /etc may still hold.
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
)
#: The system folders every sandbox sees read-only (symlinks, as on merged-/usr systems, are
#: recreated as symlinks).
SYSTEM_PATHS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
NVIDIA_SHARED_DEVICES = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "/dev/nvidia-caps",
)
#: Root mounts the folders the sandbox user cannot reach here, in a private mount namespace.
STAGE_DIR = RUN_DIR
#: Largest file a graded kernel may write: far above a workshop model or CSV, far below a disk.
DEFAULT_FILE_SIZE_BYTES = 2 * 2**30
_STAGE_SCRIPT = """set -e
stage=$1; shift
mount -t tmpfs -o mode=0755,size=64k autograder-stage "$stage"
i=0
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi
  mount --rbind "$1" "$stage/$i"
  i=$((i + 1)); shift
done
shift
exec "$@"
"""


@dataclasses.dataclass(frozen=True)
class SandboxPolicy:
    """What one sandboxed process may see and use."""

    #: The writable copy of the submission; the process's working folder, at the same path.
    workdir: Path
    #: (host path, path inside) pairs mounted read-only, e.g. released data -> workdir/data.
    readonly_binds: tuple[tuple[Path, Path], ...] = ()
    #: Extra paths to hide, on top of HIDDEN_DEFAULTS.
    hidden: tuple[Path, ...] = ()
    #: Memory the sandbox's processes may hold together (None: no limit).
    memory_bytes: int | None = None
    #: Processes and threads of the sandbox user at once (RLIMIT_NPROC).
    max_processes: int = 256
    #: CPU seconds the sandbox's processes may use together, each process at most that
    #: (RLIMIT_CPU) and all of them together (the watchdog); None: no limit.
    cpu_seconds: int | None = None
    #: Largest file a process may write (None: no limit).
    file_size_bytes: int | None = None
    #: The work folder's quota (bytes, files and folders); see :mod:`autograder.quota`.
    #: A folder that is not a file system of its own is watched, and fallocate denied.
    disk_bytes: int | None = None
    disk_files: int = 100_000
    #: GPUs (host indices) the process may use; none means CUDA_VISIBLE_DEVICES="".
    gpus: tuple[int, ...] = ()
    #: Extra environment variables.
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Unprivileged user the sandbox runs as when the grader is root.
    user: str = DEFAULT_USER
    #: As root, run each sandbox as a user of its own, ``<user>-<n>`` (the first free slot),
    #: so that RLIMIT_NPROC, which counts every process of a uid, counts one sandbox only.
    #: Applies to run_sandboxed and SandboxedKernelManager; sandboxed_command uses ``user``.
    own_user: bool = True
    #: Size of the private /tmp (and HOME in it); /dev/shm gets a quarter of it.
    tmp_bytes: int = 512 * 2**20


@dataclasses.dataclass(frozen=True)
class SandboxRun:
    """How a :func:`run_sandboxed` process ended (output capped at ``max_output`` bytes)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    memory_exceeded: bool = False
    #: The limit the watchdog stopped it for (``memory``, ``cpu``, ``disk``, ``files``).
    stopped_for: str | None = None


# --- the command --------------------------------------------------------------------------


def sandboxed_command(
    argv: Sequence[str],
    policy: SandboxPolicy,
    *,
    extra_binds: Sequence[tuple[Path, Path]] = (),
) -> list[str]:
    """The command that runs ``argv`` inside the sandbox ``policy`` describes.

    Prepares the host side first: as root, creates the sandbox user if needed and hands the
    workdir to it. ``extra_binds`` are writable (host, inside) binds (the kernel's sockets).
    The memory watchdog is not part of the command; :func:`run_sandboxed` and
    :class:`SandboxedKernelManager` add it.
    """
    if not argv:
        raise ValueError("sandboxed_command needs a command to run")
    for gpu in policy.gpus:
        if not Path(f"/dev/nvidia{gpu}").exists():
            raise SandboxUnavailableError(
                f"GPU {gpu} was assigned but /dev/nvidia{gpu} does not exist; give --gpus "
                "the indices nvidia-smi -L lists, or none"
            )
    who = identity(policy.user)
    workdir = _check_workdir(policy.workdir)
    if who.drop:
        hand_over(workdir, who)
    prefixes = _python_prefixes()
    for prefix in prefixes:
        if workdir == prefix or prefix in workdir.parents:
            raise SandboxUnavailableError(
                f"the Python installation {prefix} contains the working folder {workdir}; "
                "put the course outside the Python installation"
            )
    binds: list[tuple[str, Path, Path]] = [("--ro-bind", p, p) for p in prefixes]
    binds.append(("--bind", workdir, workdir))
    binds += [("--ro-bind", Path(src), Path(dest)) for src, dest in policy.readonly_binds]
    binds += [("--bind", Path(src), Path(dest)) for src, dest in extra_binds]
    for kind, src, _ in binds:
        if not src.exists():
            what = "folder" if kind == "--bind" else "read-only bind source"
            raise SandboxUnavailableError(f"the sandbox {what} {src} does not exist")
        # The submission controls what is inside the workdir: a symbolic link there must not
        # mount a file from outside it (root follows links when it stages a bind).
        given = src.absolute().parents
        inside = workdir in given or Path(policy.workdir).absolute() in given
        if inside and workdir not in src.resolve().parents:
            raise SandboxUnavailableError(
                f"{src} leads outside the working folder {workdir}; it is not mounted"
            )

    staged: list[Path] = []
    if who.drop:
        # bwrap resolves bind sources as the sandbox user; root mounts what it cannot reach.
        for i, (kind, src, dest) in enumerate(binds):
            if not _reachable(src, who):
                binds[i] = (kind, STAGE_DIR / str(len(staged)), dest)
                staged.append(src)

    args = [_tool("bwrap"), "--unshare-all", "--unshare-user"]
    if _bwrap_supports("--disable-userns"):
        args.append("--disable-userns")
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    for key, value in _environment(policy).items():
        args += ["--setenv", key, value]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if policy.gpus:
        for gpu in policy.gpus:
            args += ["--dev-bind", f"/dev/nvidia{gpu}", f"/dev/nvidia{gpu}"]
        for dev in NVIDIA_SHARED_DEVICES:
            args += ["--dev-bind-try", dev, dev]
        args += ["--ro-bind-try", "/sys", "/sys"]  # the CUDA runtime reads PCI topology here
    # /dev is a tmpfs bwrap leaves writable and unbounded: size /dev/shm, freeze the rest.
    args += ["--size", str(max(policy.tmp_bytes // 4, 2**20)), "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev", "--size", str(policy.tmp_bytes), "--tmpfs", "/tmp"]
    args += ["--dir", "/tmp/home"]
    for kind, src, dest in binds:
        args += [kind, str(src), str(dest)]
    for hidden in _hidden_paths(policy, prefixes):
        if hidden.is_dir():
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
        else:
            # /dev/null mounted nodev: opening the file fails with "Permission denied".
            args += ["--ro-bind", "/dev/null", str(hidden)]
    seccomp = _seccomp(policy, workdir)
    if seccomp is not None:
        args += ["--seccomp", "3"]
    args += ["--remount-ro", "/", "--chdir", str(workdir), "--", *argv]

    limits = [_tool("prlimit")]
    limits += rlimit_options(
        who=who,
        max_processes=policy.max_processes,
        cpu_seconds=policy.cpu_seconds,
        file_size_bytes=policy.file_size_bytes,
        memory_bytes=policy.memory_bytes,
    )
    limits.append("--")
    if seccomp is not None:
        # bwrap reads the filter from a descriptor: opened here, after Popen closed the rest.
        limits = [_tool("sh"), "-c", 'exec 3<"$0" && exec "$@"', str(seccomp), *limits]
    if not who.drop:
        return [*limits, *args]
    setpriv = [
        _tool("setpriv"),
        f"--reuid={who.uid}",
        f"--regid={who.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]
    if not staged:
        return [*limits, *setpriv, *args]
    STAGE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    stage = [_tool("unshare"), "--mount", "--propagation", "private", "--", _tool("sh")]
    stage += ["-c", _STAGE_SCRIPT, "sh", str(STAGE_DIR), *map(str, staged), "--"]
    return [*stage, *limits, *setpriv, *args]


def run_sandboxed(
    argv: Sequence[str],
    *,
    policy: SandboxPolicy,
    timeout: float,
    input: bytes | None = None,
    max_output: int = 1 << 20,
) -> SandboxRun:
    """Run ``argv`` in the sandbox and wait at most ``timeout`` seconds (then kill it all)."""
    with UserSlot(policy.user, own=policy.own_user) as slot:
        run_policy = dataclasses.replace(policy, user=slot.user)
        cmd = sandboxed_command(argv, run_policy)
        return _run(cmd, run_policy, timeout, input, max_output)


def _run(
    cmd: list[str], policy: SandboxPolicy, timeout: float, input: bytes | None, max_output: int
) -> SandboxRun:
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as inp,
    ):
        inp.write(input or b"")
        inp.seek(0)
        proc = subprocess.Popen(
            cmd, stdin=inp, stdout=out, stderr=err, env={"PATH": TOOL_PATH}, cwd="/",
            start_new_session=True,
        )  # fmt: skip
        watch = watchdog(proc.pid, policy)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_sandbox(proc.pid)
            proc.wait()
        finally:
            watch.stop()
        out.seek(0)
        err.seek(0)
        return SandboxRun(
            returncode=proc.returncode,
            stdout=out.read(max_output),
            stderr=err.read(max_output),
            timed_out=timed_out,
            memory_exceeded=watch.exceeded,
            stopped_for=watch.reason,
        )


# --- helpers ------------------------------------------------------------------------------


def watchdog(outer: int, policy: SandboxPolicy) -> Watchdog:
    """The watchdog of the sandbox started as ``outer`` (its bwrap's pid) under ``policy``."""
    disk = None
    if policy.disk_bytes is not None:
        disk = DiskQuota(policy.workdir, policy.disk_bytes, policy.disk_files)
    return Watchdog(outer, policy.memory_bytes, cpu_seconds=policy.cpu_seconds, disk=disk)


def _seccomp(policy: SandboxPolicy, workdir: Path) -> Path | None:
    """The seccomp filter of a sandbox whose quota is watched (see :mod:`autograder.quota`)."""
    if policy.disk_bytes is None or own_filesystem(workdir):
        return None
    if not _bwrap_supports("--seccomp"):
        log.warning("bwrap cannot load a seccomp filter: fallocate can pass the disk quota")
        return None
    return seccomp_filter()


def _check_workdir(workdir: Path) -> Path:
    path = Path(workdir).resolve()
    if not path.is_dir():
        raise SandboxUnavailableError(f"the sandbox working folder {workdir} is not a folder")
    for system in ("/", *SYSTEM_PATHS):
        if path == Path(system) or (system != "/" and Path(system) in path.parents):
            # Everything under it is visible to every sandbox, the course with it.
            raise SandboxUnavailableError(
                f"the sandbox working folder {path} is inside {system}, which every sandbox "
                "sees; keep the course and its copies outside the system folders"
            )
    return path


def hand_over(workdir: Path, who: Identity) -> None:
    """Give the copy to the sandbox user (it is ours, a fresh copy of the submission)."""
    workdir = _check_workdir(workdir)
    os.lchown(workdir, who.uid, who.gid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), who.uid, who.gid)


def _reachable(path: Path, who: Identity) -> bool:
    """Can ``who`` traverse every folder above ``path``? (ACLs ignored: staged if unsure.)"""
    for parent in reversed(path.parents):
        st = os.stat(parent)
        if st.st_uid == who.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == who.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _python_prefixes() -> list[Path]:
    """The Python installations to bind, as given and resolved, outside the system folders."""
    found: list[Path] = []
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for path in (Path(prefix), Path(prefix).resolve()):
            system = any(path == Path(s) or Path(s) in path.parents for s in SYSTEM_PATHS)
            if not system and path not in found:
                found.append(path)
    # A parent mounted after its child would hide it: bind outer folders first.
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def _hidden_paths(policy: SandboxPolicy, prefixes: Sequence[Path]) -> Iterator[Path]:
    roots = [*prefixes, Path("/usr"), Path("/usr/local")]
    sites: list[str] = []
    for root in roots:
        sites += glob.glob(f"{root}/lib/python3*/site-packages")
        sites += glob.glob(f"{root}/lib/python3*/dist-packages")
        sites += glob.glob(f"{root}/lib/python3/dist-packages")
    seen: set[Path] = set()
    for pattern in HIDDEN_DEFAULTS:
        if "{site}" in pattern:
            candidates = [pattern.replace("{site}", s) for s in sites]
        elif "{prefix}" in pattern:
            candidates = [pattern.replace("{prefix}", str(p)) for p in prefixes]
        else:
            candidates = [pattern]
        for text in candidates:
            path = Path(text)
            if path.exists() and path not in seen:
                seen.add(path)
                yield path
    for path in policy.hidden:
        if path.exists() and path not in seen:
            seen.add(path)
            yield path


def _environment(policy: SandboxPolicy) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
    }
    env.update(policy.env)
    # Inside, only the private /tmp is a home: a HOME the caller chose may not exist there.
    env["HOME"], env["TMPDIR"] = "/tmp/home", "/tmp"
    # The devices bound in decide these, whatever the caller asked for.
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in policy.gpus)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # /dev/nvidiaN numbering
    for key in [k for k in env if k.startswith("JPY_")]:
        del env[key]
    return env


@functools.cache
def _tool(name: str) -> str:
    path = shutil.which(name, path=TOOL_PATH)
    if path is None:
        raise SandboxUnavailableError(
            f"{name} was not found in {TOOL_PATH}; install bubblewrap and util-linux "
            "(apt-get install bubblewrap util-linux)"
        )
    return path


@functools.cache
def _bwrap_supports(option: str) -> bool:
    result = subprocess.run([_tool("bwrap"), "--help"], capture_output=True, text=True)
    return option in result.stdout + result.stderr
