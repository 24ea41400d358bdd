"""The package's shape: no import cycle, modules of a readable size, the worker's stages in
order, and a library API that stays what it says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autograder"
#: Modules nothing in the package imports: their lazy imports (for start-up speed) can close
#: no cycle, so they are left out of the graph by name rather than by a rule on laziness.
ENTRY_POINTS = {"cli", "__main__"}
MAX_LINES = 500
MAX_COORDINATOR_LINES = 300


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in it: at the top, inside
    functions, under ``if TYPE_CHECKING``."""
    modules = {path.stem for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                own = node.level == 1 or (node.module or "").split(".")[0] == package.name
                if not own:
                    continue
                parts = (node.module or "").split(".")
                if node.level == 0:
                    parts = parts[1:]
                if parts and parts[0]:
                    found.add(parts[0])
                else:  # from . import a, b
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == package.name and len(parts) > 1:
                        found.add(parts[1])
        graph[path.stem] = {m for m in found if m in modules and m != path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert {"grade", "pipeline", "job", "checks", "schedule"} <= set(graph)
    for entry in ENTRY_POINTS:
        graph.pop(entry, None)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_a_planted_cycle_is_found_and_named(tmp_path):
    package = tmp_path / "autograder"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("import os\n\n\ndef later():\n    from . import c\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from autograder.a import x\n"
    )
    (package / "d.py").write_text("from .a import thing\n")  # leads into it, not part of it
    graph = import_graph(package)
    assert graph["b"] == {"c"} and graph["c"] == {"a"}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (package / "b.py").write_text("import os\n")
    assert find_cycle(import_graph(package)) is None


def test_no_module_is_too_long_to_read():
    lengths = {
        p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
    assert lengths["grade.py"] < MAX_COORDINATOR_LINES


def test_the_worker_stages_run_in_this_order():
    from autograder.pipeline import STAGES

    assert [stage.__name__ for stage in STAGES] == [
        "prepare",
        "sanitize_notebooks",
        "execute_notebooks",
        "collect",
        "check",
        "publish",
    ]
    for stage in STAGES:
        assert stage.__doc__ and len(stage.__doc__.strip()) > 20, stage.__name__


def test_the_worker_side_imports_nothing_of_the_coordinator():
    graph = import_graph(PACKAGE)
    reach: set[str] = set()
    todo = ["pipeline"]
    while todo:
        module = todo.pop()
        for target in graph[module] - reach:
            reach.add(target)
            todo.append(target)
    assert reach.isdisjoint({"grade", "validate", "schedule", "dask_backend", "gradebook"})
    assert graph["job"].isdisjoint({"pipeline", "grade", "schedule", "checks", "policy"})


def test_the_library_api_is_the_functions_behind_the_commands():
    import autograder
    from autograder.csvcheck import check_csv
    from autograder.feedback import write_feedback
    from autograder.grade import grade
    from autograder.gradebook import results
    from autograder.release import release
    from autograder.validate import validate

    # Importing the modules of the same names (above) leaves the names to the functions.
    assert autograder.release is release and autograder.validate is validate
    assert autograder.grade is grade and autograder.results is results
    assert autograder.feedback is write_feedback and autograder.check_csv is check_csv
    for name in autograder.__all__:
        assert getattr(autograder, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        autograder.nothing  # noqa: B018


def test_no_module_imports_an_api_name_as_a_module():
    """``from . import grade`` would get the function: modules are imported by their path."""
    import autograder

    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
                clash = {alias.name for alias in node.names} & set(autograder.API)
                assert not clash, f"{path.name}:{node.lineno} imports {clash} as modules"


def test_importing_the_package_or_the_cli_loads_no_grading_code():
    code = (
        "import sys, autograder, autograder.cli\n"
        "print(sorted(m for m in ('nbclient', 'nbformat', 'numpy', 'autograder.grade') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
