"""The options several ``autograder`` commands share, and the checks of their values.

Part of the command line (:mod:`autograder.cli`): options parse and check text; the values
and their defaults belong to the library functions the commands call.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .job import GradeSettings


class Registered(click.Choice[str]):
    """A choice among the names of a registry (a dict in ``module``), read when first needed:
    the registry's module is not imported for commands that do not use it. A name not in it
    is refused by the registry's own ``lookup`` function, with the library's message."""

    def __init__(self, module: str, registry: str, lookup: str) -> None:
        super().__init__((), case_sensitive=True)
        self._where = (module, registry, lookup)

    @property
    def choices(self) -> tuple[str, ...]:
        module, registry, _ = self._where
        return tuple(getattr(importlib.import_module(module), registry))

    @choices.setter
    def choices(self, value: object) -> None:
        pass

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if text not in self.choices:
            module, _, lookup = self._where
            getattr(importlib.import_module(module), lookup)(text)  # raises, saying what to do
        return text


def gradebook_option(func: Callable[..., None]) -> Callable[..., None]:
    """``--gradebook URL`` after the command too (DESIGN.md lists it with ``grade``)."""

    def override(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.obj = dataclasses.replace(ctx.obj, gradebook=value)

    return click.option(
        "--gradebook",
        "gradebook_url",
        default=None,
        expose_value=False,
        callback=override,
        help="Gradebook database URL (the same as the option before the command).",
    )(func)


def grade_settings(
    *,
    unsafe: bool,
    timeout_cell: float | None,
    timeout_total: float | None,
    memory_limit: str | None,
    params: tuple[str, ...],
) -> GradeSettings:
    """The settings of a grading run from the options of RUN_OPTIONS (checked by the library:
    a size it does not understand, a --param that is not KEY=VALUE)."""
    from .job import GradeSettings, parse_parameters

    return GradeSettings(
        sandbox=not unsafe,
        timeout_cell=timeout_cell,
        timeout_total=timeout_total,
        memory_limit=memory_limit,
        parameters=parse_parameters(params),
    )


RUN_OPTIONS = [
    click.option("--timeout-cell", type=float, help="Seconds per cell (default: assignment.toml)."),
    click.option(
        "--timeout-total", type=float, help="Seconds per notebook (default: assignment.toml)."
    ),
    click.option("--memory-limit", help="Memory per kernel, e.g. 4G (default: assignment.toml)."),
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="Notebook parameter injected after the 'parameters' cell (repeatable).",
    ),
    click.option(
        "--unsafe-no-sandbox",
        "unsafe",
        is_flag=True,
        help="Run notebooks without the sandbox. Only for trusted notebooks.",
    ),
]


def with_run_options(func: Callable[..., None]) -> Callable[..., None]:
    """The options of a notebook run (limits, parameters, the sandbox) on a command."""
    for option in reversed(RUN_OPTIONS):
        func = option(func)
    return func
