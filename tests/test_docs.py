"""Docs that can't go stale: every command has help text and is in the README."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from autograder.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "autograder") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        out.append((path, command))
        if isinstance(command, click.Group):
            out.extend(_commands(command, path))
    return out


def test_every_command_has_help_and_is_in_the_readme():
    commands = _commands(cli)
    assert len(commands) >= 7
    for path, command in commands:
        assert command.help and len(command.help.strip()) > 10, f"{path} has no help text"
        leaf = path.split(" ", 1)[1]
        top = leaf.split(" ")[0]
        assert f"autograder {top}" in README, f"'{path}' is not in README.md"
        result = CliRunner().invoke(cli, [*leaf.split(" "), "--help"])
        assert result.exit_code == 0, result.output


def test_the_readme_names_the_two_commands():
    assert "make demo" in README and "make test" in README
