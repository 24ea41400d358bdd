"""Errors raised by the autograder.

Every error derives from :class:`AutograderError`, says what to do in its message, and can be
pickled, so it survives the trip from a worker process or a Dask worker to the coordinator.
"""

from __future__ import annotations

from typing import Any


class AutograderError(Exception):
    """Base class: a problem the user can fix, described in a sentence that says how.

    ``student``, ``notebook`` and ``cell`` locate the problem when it concerns a submission.
    """

    def __init__(
        self,
        message: str,
        *,
        student: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.student = student
        self.notebook = notebook
        self.cell = cell

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not restored by the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.student, self.notebook, self.cell))

    def __str__(self) -> str:
        where = [
            f"{label} {value}"
            for label, value in (
                ("student", self.student),
                ("notebook", self.notebook),
                ("cell", self.cell),
            )
            if value
        ]
        return f"{self.message} ({', '.join(where)})" if where else self.message


def _rebuild(
    cls: type[AutograderError],
    message: str,
    student: str | None,
    notebook: str | None,
    cell: str | None,
) -> AutograderError:
    err = cls.__new__(cls)
    AutograderError.__init__(err, message, student=student, notebook=notebook, cell=cell)
    return err


class ConfigError(AutograderError):
    """An assignment or course configuration is missing or wrong."""


class DataError(AutograderError):
    """A data set is missing, cannot be fetched, or is malformed."""


class InvalidNotebookError(AutograderError):
    """A submitted file is not a notebook this assignment can grade."""


class ReleaseError(AutograderError):
    """An instructor notebook cannot be turned into a student version."""


class SandboxUnavailableError(AutograderError):
    """The sandbox cannot be set up on this machine."""


class ExecutionError(AutograderError):
    """A notebook could not be run to the end (timeout, dead kernel, memory...)."""

    def __init__(
        self,
        message: str,
        *,
        status: str = "error",
        student: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
    ) -> None:
        super().__init__(message, student=student, notebook=notebook, cell=cell)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_execution,
            (type(self), self.message, self.status, self.student, self.notebook, self.cell),
        )


def _rebuild_execution(
    cls: type[ExecutionError],
    message: str,
    status: str,
    student: str | None,
    notebook: str | None,
    cell: str | None,
) -> ExecutionError:
    return cls(message, status=status, student=student, notebook=notebook, cell=cell)


class KaggleError(AutograderError):
    """The Kaggle client failed or refused a request."""
