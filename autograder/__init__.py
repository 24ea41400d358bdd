"""Workshop autograder: release, run and grade Keras notebooks, honestly and safely.

The library API, for a service, a script or a notebook (the CLI is a thin layer over it)::

    import autograder

    course = autograder.Course.at("course")
    autograder.release(course, "exercise")
    autograder.validate(course, "exercise")            # the solution passes everything
    report = autograder.grade(course, "exercise", workers=2)
    results = autograder.results(course, "exercise")   # what `results --json` prints
    autograder.feedback(course, "exercise")             # one HTML page per student
    autograder.check_csv("submission.csv", competition="digit-recognizer")

Each name is imported on first use, so ``import autograder`` (and every CLI command) stays
fast. The functions keep the names of the modules that hold them: ``autograder.grade`` is the
function; the module is ``from autograder.grade import ...`` (or ``sys.modules``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API: name -> (module, name there).
API: dict[str, tuple[str, str]] = {
    "release": ("release", "release"),
    "validate": ("validate", "validate"),
    "grade": ("grade", "grade"),
    "results": ("gradebook", "results"),
    "feedback": ("feedback", "write_feedback"),
    "check_csv": ("csvcheck", "check_csv"),
    "Course": ("config", "Course"),
    "GradeSettings": ("job", "GradeSettings"),
    "SubmissionResult": ("results", "SubmissionResult"),
    "AutograderError": ("errors", "AutograderError"),
}
__all__ = ["API", "__version__", *API]

if TYPE_CHECKING:
    from .config import Course as Course
    from .csvcheck import check_csv as check_csv
    from .errors import AutograderError as AutograderError
    from .feedback import write_feedback as feedback  # noqa: F401  (in __all__ through API)
    from .grade import grade as grade
    from .gradebook import results as results
    from .job import GradeSettings as GradeSettings
    from .release import release as release
    from .results import SubmissionResult as SubmissionResult
    from .validate import validate as validate


class _Package(types.ModuleType):
    """This package, whose API names stay the functions: importing a submodule of the same
    name (``autograder.grade``) would otherwise set the module in the function's place."""

    def __getattr__(self, name: str) -> Any:
        if name not in API:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        module, attribute = API[name]
        value = getattr(importlib.import_module(f"{self.__name__}.{module}"), attribute)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in API and isinstance(value, types.ModuleType):
            return  # the module stays in sys.modules; the name stays the API's
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *API})


sys.modules[__name__].__class__ = _Package
