"""The Jupyter kernel manager that runs each notebook's kernel inside the sandbox.

nbclient takes it as ``NotebookClient(nb, km=SandboxedKernelManager(policy=...))``; as with
any kernel manager passed in, the caller shuts it down (``shutdown_kernel`` then
``cleanup_resources``). The kernel talks ZMQ over the ``ipc`` transport through a private
socket folder bound into the sandbox, so it needs no network at all. Every grading kernel,
this one and the unsandboxed :class:`PlainKernelManager`, starts as :data:`KERNEL_ARGV` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from .limits import TOOL_PATH, UserSlot, Watchdog, command_pid, identity, kill_sandbox
from .sandbox import SandboxPolicy, hand_over, sandboxed_command, watchdog

#: How every grading kernel starts, sandboxed or not. ``capture_fd_output=False``: what
#: native code writes to file descriptors 1 and 2 (TensorFlow's absl and oneDNN start-up
#: lines, CUDA's factory registrations, a subprocess's output) goes to the kernel's log, not
#: into the running cell, where nbgrader's rule scores a test cell with any stderr 0. What
#: the notebook's Python writes (``print``, ``warnings``, logging, tracebacks) still reaches
#: its cell and counts as nbgrader counts it.
KERNEL_ARGV = (
    sys.executable,
    "-m",
    "ipykernel_launcher",
    "-f",
    "{connection_file}",
    "--IPKernelApp.capture_fd_output=False",
)


def grading_kernel_spec(display_name: str) -> KernelSpec:
    """The kernel spec of a grading kernel: this Python's ipykernel, :data:`KERNEL_ARGV`."""
    return KernelSpec(
        argv=list(KERNEL_ARGV),
        display_name=display_name,
        language="python",
        interrupt_mode="signal",
        metadata={},
    )


class _SandboxProvisioner(LocalProvisioner):
    """Launches the kernel command inside the sandbox and signals it there.

    ``self.process`` is the outer bwrap; the sandbox's init is its child, the kernel the
    init's first child. SIGINT (interrupt) and SIGTERM go to the kernel's process group;
    SIGKILL kills the sandbox's init, which takes every process of the namespace with it.
    """

    watch: Watchdog | None = None
    exit_status: int | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        km = self.parent
        assert isinstance(km, SandboxedKernelManager)
        argv = sandboxed_command(cmd, km.kernel_policy(), extra_binds=[(km.socket_dir,) * 2])
        # The kernel's own stdout/stderr (C++ logs, bwrap errors) go to a log, not our terminal.
        with open(km.log_path, "ab") as log_file:
            kwargs.update(env={"PATH": TOOL_PATH}, cwd="/", stdout=log_file, stderr=log_file)
            info = await super().launch_kernel(argv, **kwargs)
        assert self.process is not None
        self.exit_status = None
        self.watch = watchdog(self.process.pid, km.policy)
        return info

    async def poll(self) -> int | None:
        ret: int | None = await super().poll()
        if ret is not None and self.process is not None:
            self.exit_status = ret
        return ret

    async def send_signal(self, signum: int) -> None:
        if self.process is None:
            return
        if signum == signal.SIGKILL:
            kill_sandbox(self.process.pid)
            return
        kernel = command_pid(self.process.pid)
        if kernel is not None:
            # bwrap --new-session puts the kernel in the session of the sandbox's init, which
            # ignores these signals (a namespace's init only gets signals it handles).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(kernel), signum)

    async def cleanup(self, restart: bool = False) -> None:
        if self.watch is not None:
            self.watch.stop()
        await super().cleanup(restart=restart)


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel runs in the sandbox ``policy`` describes.

    The kernel is always this Python's ipykernel, whatever the notebook asks for. It talks
    ZMQ over the ``ipc`` transport through a private socket folder bound into the sandbox.
    The environment is the sandbox's, updated by ``policy.env`` and by the ``env`` given to
    ``start_kernel`` (never the grader's own environment). Start and use it from one thread:
    bwrap's ``--die-with-parent`` follows the thread that launched it.
    """

    def __init__(self, *, policy: SandboxPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.transport = "ipc"
        #: Host-only folder (0700) made at start: the kernel log, and k/, the socket folder
        #: the kernel sees; removed by cleanup_resources.
        self.runtime_dir: Path | None = None
        self._slot: UserSlot | None = None
        self._caller_env: dict[str, str] = {}
        self._spec = grading_kernel_spec("Python 3 (sandboxed)")
        self._log_tail = b""
        self._stopped_for: str | None = None

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._spec

    def kernel_policy(self) -> SandboxPolicy:
        """The policy the kernel runs under: ``policy`` with its user slot and the env given
        to start_kernel."""
        user = self._slot.user if self._slot is not None else self.policy.user
        return dataclasses.replace(
            self.policy, user=user, env={**self.policy.env, **self._caller_env}
        )

    def termination_reason(self) -> str | None:
        """Why the sandbox stopped the kernel: ``memory``, ``cpu``, ``disk``, ``files`` (its
        limits, see :class:`~autograder.limits.Watchdog`), ``output`` (:meth:`stop_for`) or None
        (not stopped)."""
        prov = self.provisioner
        if isinstance(prov, _SandboxProvisioner):
            if prov.watch is not None and prov.watch.reason is not None:
                return prov.watch.reason
            if self._stopped_for is not None:
                return self._stopped_for
            # bwrap exits with 128 + signal when the kernel is killed by one.
            if prov.exit_status == 128 + signal.SIGXCPU:
                return "cpu"
        return None

    @property
    def socket_dir(self) -> Path:
        assert self.runtime_dir is not None, "the kernel has not been started"
        return self.runtime_dir / "k"

    @property
    def log_path(self) -> Path:
        assert self.runtime_dir is not None, "the kernel has not been started"
        return self.runtime_dir / "kernel.log"

    def sandbox_log(self) -> str:
        """The last lines the kernel and bwrap wrote to stderr (why a start failed)."""
        if self.runtime_dir is not None:
            with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - 4000))
                self._log_tail = fh.read()
        return self._log_tail.decode("utf-8", "replace")

    def hand_over_workdir(self) -> None:
        """Give the working folder's files to the sandbox user, as at start: for files copied
        in after the kernel started (a prestarted kernel's submission)."""
        who = identity(self.kernel_policy().user)
        if who.drop:
            hand_over(self.policy.workdir, who)

    def write_connection_file(self, **kwargs: Any) -> None:
        super().write_connection_file(**kwargs)
        who = identity(self.kernel_policy().user)
        if who.drop:
            os.chown(self.socket_dir, who.uid, who.gid)
            os.chown(self.connection_file, who.uid, who.gid)

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        self._caller_env = {str(k): str(v) for k, v in (kw.get("env") or {}).items()}
        if self.runtime_dir is None:
            self._slot = UserSlot(self.policy.user, own=self.policy.own_user)
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
            self.socket_dir.mkdir(mode=0o700)
            self.ip = str(self.socket_dir / "kernel")
            self.connection_file = str(self.socket_dir / "kernel.json")
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            self.provisioner = _SandboxProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart=restart)
        finally:
            if not restart and self.runtime_dir is not None:
                self.sandbox_log()
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
                self.runtime_dir = None
                if self._slot is not None:
                    self._slot.release()
                    self._slot = None

    # AsyncKernelManager binds its public coroutines to KernelManager's functions, so an
    # override of the private one is only seen through these.
    pre_start_kernel = _async_pre_start_kernel
    cleanup_resources = _async_cleanup_resources

    def stop_for(self, reason: str) -> None:
        """Kill the sandbox now, from any thread, and remember why (``termination_reason``)."""
        prov = self.provisioner
        if isinstance(prov, _SandboxProvisioner) and prov.process is not None:
            if prov.process.poll() is None:  # not already gone for another reason
                self._stopped_for = self._stopped_for or reason
            kill_sandbox(prov.process.pid)

    async def kill_all(self) -> None:
        """Kill the sandbox and everything in it, whatever state the manager is in."""
        prov = self.provisioner
        if isinstance(prov, _SandboxProvisioner) and prov.process is not None:
            kill_sandbox(prov.process.pid)
            await asyncio.to_thread(prov.process.wait)


class PlainKernelManager(AsyncKernelManager):
    """A local kernel with no isolation, started as the sandboxed one is (:data:`KERNEL_ARGV`),
    so a notebook's outputs, and its score, are the same with or without the sandbox."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spec = grading_kernel_spec("Python 3")

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._spec


def kernel_factory(*, policy: SandboxPolicy) -> Callable[..., SandboxedKernelManager]:
    """A factory ``(*, workdir, env) -> SandboxedKernelManager`` with ``policy``'s limits."""

    def make(*, workdir: Path, env: Mapping[str, str]) -> SandboxedKernelManager:
        merged = {**policy.env, **env}
        return SandboxedKernelManager(
            policy=dataclasses.replace(policy, workdir=Path(workdir), env=merged)
        )

    return make
