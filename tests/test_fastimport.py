"""The CLI and its workers skip jsonschema's slow optional grammar; validation still works."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys
import autograder.cli
import nbformat
from nbformat.v4 import new_notebook
nbformat.validate(new_notebook())
try:
    nbformat.validate({"cells": "not a list"})
except nbformat.ValidationError:
    print("invalid notebooks are still caught")
print("rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is not None)
"""


def test_the_cli_process_validates_notebooks_without_the_slow_import():
    pytest.importorskip("nbformat")
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out == "invalid notebooks are still caught\nFalse\n"
