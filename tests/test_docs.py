"""Docs that can't go stale: every command has help text and is in the README, every command
and option is in the README or the architecture page, whose module table is the package."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from autograder.cli import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()


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


def _word(text: str) -> str:
    """A pattern for ``text`` as a whole word: `--final` is not in `--finalize`."""
    return rf"(?<![\w-]){re.escape(text)}(?![\w-])"


def _long_options(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [n for n in (*param.opts, *param.secondary_opts) if n.startswith("--")]
    return [n for n in names if n != "--help"]


def test_every_command_and_option_is_in_the_readme_or_the_architecture_page():
    docs = README + "\n" + ARCHITECTURE
    missing = [f"autograder {o}" for o in _long_options(cli) if not re.search(_word(o), docs)]
    for path, command in _commands(cli):
        # 'autograder kaggle download|submit' names both of the group's commands on its line.
        top, *rest = path.split(" ")[1:]
        pattern = _word(f"autograder {top}") + "".join(rf"[^\n]*{_word(w)}" for w in rest)
        if not re.search(pattern, docs):
            missing.append(path)
        missing += [f"{path} {o}" for o in _long_options(command) if not re.search(_word(o), docs)]
    assert missing == [], f"in neither README.md nor docs/architecture.md: {', '.join(missing)}"


def _module_table() -> list[str]:
    """The modules the `## Modules` table of docs/architecture.md lists, in its order."""
    section = re.search(r"^## Modules.*?$(.*?)(?=^## |\Z)", ARCHITECTURE, re.M | re.S)
    assert section, "docs/architecture.md has no '## Modules' section"
    listed = []
    for line in section.group(1).splitlines():
        cells = line.strip().strip("|").split("|")
        if line.startswith("|") and cells[0].strip() not in ("module", "") and "---" not in line:
            listed += re.findall(r"`([^`]+)`", cells[0])
    return listed


def test_the_module_table_lists_exactly_the_modules_of_the_package():
    modules = {p.name for p in (REPO / "autograder").glob("*.py")} - {"__init__.py", "__main__.py"}
    listed = _module_table()
    missing, extra = sorted(modules - set(listed)), sorted(set(listed) - modules)
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert (missing, extra, twice) == ([], [], []), (
        f"the module table of docs/architecture.md lacks {missing or 'nothing'}, lists "
        f"{extra or 'nothing'} that autograder/ does not have, and lists {twice or 'nothing'} "
        "twice"
    )
