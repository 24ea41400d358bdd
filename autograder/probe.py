"""Whether sandboxes work on this machine, and the refusal that says how to make them work.

:func:`require_sandbox` is what ``grade`` and ``validate`` call before they touch anything:
without bubblewrap or user namespaces they refuse (unless told to grade without the
sandbox), naming the fix, instead of failing every student with ``sandbox-error``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import SandboxUnavailableError
from .limits import DEFAULT_USER, TOOL_PATH, identity
from .sandbox import SandboxPolicy, run_sandboxed


@dataclasses.dataclass(frozen=True)
class SandboxStatus:
    """Whether sandboxes work on this machine; ``fix`` says what to do when they do not."""

    ok: bool
    reason: str
    fix: str = ""


def probe() -> SandboxStatus:
    """Whether sandboxes work here: bwrap installed, user namespaces allowed, Python visible."""
    missing = [t for t in ("bwrap", "prlimit") if shutil.which(t, path=TOOL_PATH) is None]
    if os.geteuid() == 0:
        missing += [t for t in ("setpriv", "unshare") if shutil.which(t, path=TOOL_PATH) is None]
    if "bwrap" in missing:
        return SandboxStatus(
            False,
            "bubblewrap (bwrap) is not installed",
            "install it: apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap",
        )
    if missing:
        return SandboxStatus(
            False,
            f"{', '.join(missing)} not found",
            "install util-linux (apt-get install util-linux)",
        )
    try:
        with tempfile.TemporaryDirectory(prefix="autograder-probe-") as tmp:
            result = run_sandboxed(
                [sys.executable, "-I", "-S", "-c", "pass"],
                policy=SandboxPolicy(workdir=Path(tmp), max_processes=64),
                timeout=30,
            )
    except (OSError, SandboxUnavailableError) as exc:
        return SandboxStatus(False, f"the sandbox could not be set up: {exc}", _userns_fix())
    if result.returncode == 0:
        who = identity(DEFAULT_USER)
        as_user = f" as uid {who.uid}" if who.drop else ""
        return SandboxStatus(True, f"bubblewrap works{as_user}")
    detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
    reason = detail[-1] if detail else f"exit status {result.returncode}"
    return SandboxStatus(False, f"bwrap failed: {reason}", _userns_fix())


@functools.lru_cache(maxsize=1)
def _cached_probe() -> SandboxStatus:
    return probe()


def require_sandbox() -> None:
    """Raise SandboxUnavailableError, saying how to fix it, unless sandboxes work here."""
    status = _cached_probe()
    if not status.ok:
        raise SandboxUnavailableError(
            f"the sandbox for untrusted notebooks is not available: {status.reason}; "
            f"{status.fix}; or, for trusted notebooks only, pass --unsafe-no-sandbox"
        )


def _userns_fix() -> str:
    def read(name: str) -> str | None:
        try:
            return Path("/proc/sys", name).read_text().strip()
        except OSError:
            return None

    if read("kernel/unprivileged_userns_clone") == "0":
        return "enable user namespaces: sysctl -w kernel.unprivileged_userns_clone=1"
    if read("user/max_user_namespaces") == "0":
        return "enable user namespaces: sysctl -w user.max_user_namespaces=15000"
    if read("kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor blocks user namespaces: sysctl -w "
            "kernel.apparmor_restrict_unprivileged_userns=0, or add an AppArmor profile "
            "for /usr/bin/bwrap that allows userns"
        )
    return (
        "make sure unprivileged user namespaces work (try: unshare --user true) and, in a "
        "container, that it may create namespaces (e.g. docker --security-opt seccomp=unconfined)"
    )
