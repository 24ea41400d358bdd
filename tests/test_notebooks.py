"""Reading hostile notebook files: every broken kind gets its own plain message."""

from __future__ import annotations

import gzip
import json
import os

import nbformat
import pytest

from autograder.errors import InvalidNotebookError
from autograder.notebooks import MAX_NOTEBOOK_BYTES, parse_notebook, read_notebook


def _msg(tmp_path, data: bytes, name: str = "nb.ipynb") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidNotebookError) as err:
        read_notebook(path)
    return err.value.message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "nb.ipynb is empty; save the notebook in Jupyter (File > Save) and submit it again"),
        (
            b"  \n\n",
            "nb.ipynb is empty; save the notebook in Jupyter (File > Save) and submit it again",
        ),
        (
            b"hello",
            "nb.ipynb is not valid notebook JSON (line 1, column 1: Expecting value); download "
            "the notebook again from Jupyter (File > Download) and submit that file",
        ),
        (
            b'{"cells": [{"cell_type": "code"',
            "nb.ipynb is not valid notebook JSON (it ends too early (the file is truncated)); "
            "download the notebook again from Jupyter (File > Download) and submit that file",
        ),
        (
            gzip.compress(b"{}"),
            "nb.ipynb is a gzip-compressed file, not a notebook; submit the .ipynb file as "
            "Jupyter saves it",
        ),
        (
            b"PK\x03\x04rest-of-zip",
            "nb.ipynb is a zip archive, not a notebook; submit the .ipynb file as Jupyter saves it",
        ),
        (
            '{"cells": []}'.encode("utf-16"),
            "nb.ipynb is a UTF-16 or binary file, not a notebook; submit the .ipynb file as "
            "Jupyter saves it",
        ),
        (
            b"\xff\xd8\xff\xe0 jpeg bytes \x81\x82",
            "nb.ipynb is not UTF-8 text (byte 0); submit the .ipynb file as Jupyter saves it",
        ),
        (
            b"[1, 2, 3]",
            "nb.ipynb is JSON but not a notebook (it has no cells); submit the .ipynb file",
        ),
        (
            json.dumps({"cells": [], "nbformat": 2}).encode(),
            "nb.ipynb has nbformat 2, which is too old or missing; open it in a current Jupyter, "
            "save it, and submit again",
        ),
        (
            json.dumps({"cells": [], "metadata": {}}).encode(),
            "nb.ipynb has nbformat None, which is too old or missing; open it in a current "
            "Jupyter, save it, and submit again",
        ),
        (
            json.dumps({"cells": [], "nbformat": 5, "nbformat_minor": 0, "metadata": {}}).encode(),
            "nb.ipynb has nbformat 5, newer than this grader understands (4)",
        ),
        (
            json.dumps(
                {
                    "cells": [{"cell_type": "weird", "source": ""}],
                    "nbformat": 4,
                    "nbformat_minor": 5,
                    "metadata": {},
                }
            ).encode(),
            "nb.ipynb: cell 1 is not a valid notebook cell",
        ),
    ],
)
def test_broken_files_get_plain_messages(tmp_path, data, message):
    assert _msg(tmp_path, data) == message


def test_a_symlink_is_refused_without_being_followed(tmp_path):
    secret = tmp_path / "secret.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), secret)
    link = tmp_path / "nb.ipynb"
    os.symlink(secret, link)
    with pytest.raises(InvalidNotebookError) as err:
        read_notebook(link)
    assert err.value.message == (
        "nb.ipynb is a symbolic link, not a notebook; submit the notebook file itself"
    )


def test_a_huge_notebook_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "nb.ipynb"
    with open(path, "wb") as fh:
        fh.truncate(MAX_NOTEBOOK_BYTES + 1)  # sparse: no real disk used
    with pytest.raises(InvalidNotebookError) as err:
        read_notebook(path)
    assert err.value.message == (
        "nb.ipynb is 52 MB, over the 52 MB limit; clear the outputs (Kernel > Restart & Clear "
        "Output) and submit again"
    )


def test_nbformat_3_is_converted_and_small_schema_slips_are_forgiven():
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "input": "x = 1",
                        "language": "python",
                        "outputs": [],
                        "metadata": {},
                    }
                ]
            }
        ],
    }
    nb = parse_notebook(json.dumps(v3).encode(), name="old.ipynb")
    assert nb.nbformat == 4
    assert nb.cells[0].source == "x = 1"
    slip = {
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "source": "y = 2",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "colab": {"stray": True},
            }
        ],
    }
    nb = parse_notebook(json.dumps(slip).encode(), name="colab.ipynb")
    assert nb.cells[0].source == "y = 2"
    assert "colab" not in nb.cells[0]
    nbformat.validate(nb)
