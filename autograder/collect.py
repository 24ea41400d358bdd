"""Step 3, collect: save the notebook's trained model from inside its kernel.

After the notebook ran, :func:`collect_snippet` is run in the same kernel. It saves the model
variable in the Keras v3 ``.keras`` format to the submission's outbox, or writes
``<stem>.collect.json`` beside it saying why it could not (no such variable, not a
``keras.Model``, not serializable). The grader reads that status with
:func:`read_collect_status`, as untrusted text, and :mod:`autograder.evaluate` takes it from
there: the kernel only ever produces a file, and the file is judged elsewhere.
"""

from __future__ import annotations

import inspect
import json
import keyword
import os
import stat
import textwrap
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Status files are a few hundred bytes; anything longer is not ours.
MAX_STATUS_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 600
#: Why the snippet saved no model (the ``reason`` of a failed status).
COLLECT_REASONS = ("missing-model", "not-a-model", "save-failed")


def _collect_in_kernel(namespace: dict, variable: str, path: str, status_path: str) -> None:
    """Save ``namespace[variable]`` to ``path`` and write how it went to ``status_path``.

    Its source is sent to the kernel by :func:`collect_snippet` and run there from a namespace
    of its own, so names the notebook rebound (``keras = 3``, ``open = None``, ``json``...) are
    not the ones used here; only the model is taken from the notebook's namespace.

    This is convenience, not security: student code ran before this and may have patched
    builtins, Keras or the file system, so what lands in the outbox is whatever the kernel
    wrote. That is why the model is evaluated in another process, which loads the file with
    Keras safe mode: only a standard model that loads without running code can score.
    """
    import builtins
    import contextlib
    import io
    import json
    import os

    def first_paragraph(exc: BaseException) -> str:
        text = str(exc).strip().split("\n\n")[0]
        text = " ".join(text.split())
        text = text if len(text) <= 300 else text[:297] + "..."
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def report(ok: bool, reason: str, message: str) -> None:
        status = {"ok": ok, "reason": reason, "message": message, "variable": variable}
        try:
            # io.open, not open: a notebook that rebinds builtins.open rarely touches io.
            with io.open(status_path, "w", encoding="utf-8") as fh:  # noqa: UP020
                fh.write(json.dumps(status))
        except OSError as exc:
            message = f"{message} (and the status file could not be written: {exc})"
        builtins.print(f"autograder: {message}")

    # A file left by an earlier run (or by the notebook itself) must not stand in for this one.
    with contextlib.suppress(OSError):
        os.remove(status_path)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        report(False, "save-failed", f"the model could not be saved: {path} is in the way ({exc})")
        return
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)

    if variable not in namespace:
        report(
            False,
            "missing-model",
            f"no variable named {variable!r} in the notebook; "
            f"assign your trained keras.Model to {variable!r}",
        )
        return
    obj = namespace[variable]
    try:
        import keras
    except Exception as exc:
        report(False, "not-a-model", f"keras could not be imported ({first_paragraph(exc)})")
        return
    if not isinstance(obj, keras.Model):
        kind = type(obj).__name__
        hint = ""
        if kind == "History":
            hint = f"; model.fit returns a History: keep the model itself in {variable!r}"
        elif type(obj).__module__.split(".")[0] in {"tf_keras", "tensorflow"}:
            hint = "; build the model with Keras 3 ('import keras')"
        report(
            False, "not-a-model", f"the variable {variable!r} is a {kind}, not a keras.Model{hint}"
        )
        return
    try:
        keras.saving.save_model(obj, path)
    except Exception as exc:
        # Keras leaves a partial archive behind when get_config() fails half-way.
        with contextlib.suppress(OSError):
            os.remove(path)
        report(False, "save-failed", f"the model could not be saved: {first_paragraph(exc)}")
        return
    try:
        size = f", {obj.count_params():,} parameters"
    except Exception:  # an unbuilt model has no parameters yet; the evaluator says so
        size = ""
    report(True, "ok", f"saved {variable!r} ({type(obj).__name__}{size}) to {path}")


def collect_status_path(model_path: Path) -> Path:
    """The JSON the collection snippet writes beside ``model_path``: ``<stem>.collect.json``."""
    return model_path.with_name(f"{model_path.stem}.collect.json")


def collect_snippet(variable: str, path: str) -> str:
    """Python source to run in the kernel after the notebook: save model ``variable`` to ``path``.

    ``path`` (ending in ``.keras``) is as the kernel sees it; a relative path is taken from the
    kernel's current folder. The snippet never raises for a problem with the model: it writes
    ``<stem>.collect.json`` with the reason (see :func:`read_collect_status`) and prints it.
    """
    if not variable.isidentifier() or keyword.iskeyword(variable):
        raise ConfigError(
            f"variable {variable!r} is not a Python name; set the accuracy check's 'variable' "
            "to the name the notebook gives its model"
        )
    if not path.endswith(".keras"):
        raise ConfigError(f"the model path {path!r} must end in .keras (the Keras v3 format)")
    source = textwrap.dedent(inspect.getsource(_collect_in_kernel))
    status = str(collect_status_path(Path(path)))
    return (
        "# Added by the autograder after the notebook ran: save the model for grading.\n"
        "import builtins as __autograder_builtins\n"
        "__autograder_ns = {'__builtins__': __autograder_builtins, '__name__': 'autograder'}\n"
        f"__autograder_builtins.exec({source!r}, __autograder_ns)\n"
        "try:\n"
        "    __autograder_ns['_collect_in_kernel'](\n"
        f"        __autograder_builtins.globals(), {variable!r}, {path!r}, {status!r}\n"
        "    )\n"
        "finally:\n"
        "    del __autograder_builtins, __autograder_ns\n"
    )


def read_regular_file(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file, not through a symlink, at most ``limit``; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def _plain(text: str) -> str:
    """Text from an untrusted file made safe to show: one line, printable, bounded."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def read_collect_status(model_path: Path) -> dict[str, Any] | None:
    """The status the snippet wrote beside ``model_path`` (``ok``, ``reason``, ``message``).

    The file comes from the kernel, so it is read without following links, size-bounded, and
    its message is flattened to one printable line. None when there is no readable status.
    """
    data = read_regular_file(collect_status_path(model_path), MAX_STATUS_BYTES)
    if data is None:
        return None
    try:
        status = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("message"), str):
        return None
    return {
        "ok": status.get("ok") is True,
        "reason": _plain(str(status.get("reason", ""))),
        "message": _plain(status["message"]),
    }
