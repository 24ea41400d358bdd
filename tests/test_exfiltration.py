"""No hidden test reaches a participant, and student text is data: graded end to end.

A class of attackers on an assignment with hidden tests is graded once, in the sandbox. Each
attacker reads the hidden tests from inside the kernel (the input history ``In``, a
``pre_run_cell`` hook's ``raw_cell``, the frames and ``linecache`` of the test that calls it)
and tries to carry them out through another channel, in another encoding: an exception's
message (base64) or class name (hex), stdout (rot13) and stderr (reversed), display outputs
(HTML of zlib, Markdown, JSON, an execute_result repr, a PNG's text chunk), the training
history's metric names, the values of the CSV the check reads, the message of the cell that
should write it, stderr inside the test itself, one character per output. The test decodes
every scheme the attackers used and checks that no hidden-test line is recoverable from the
feedback pages, ``results --json`` or the CSV export, while the kernels did hold them (the
executed notebooks, which only the grader keeps, show the attacks worked). Other students are
named like spreadsheet formulas and terminal escapes, and one puts rich markup, escape
sequences and HTML in the messages shown before the hidden tests: every sink shows it as text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import csv
import dataclasses
import html
import io
import re
import zlib

import nbformat
import pytest
from click.testing import CliRunner
from conftest import KERNELSPEC, graded, write_nb
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import gradebook
from autograder.cli import cli
from autograder.config import Course
from autograder.console import ConsoleProgress
from autograder.datasets import prepare
from autograder.feedback import write_feedback
from autograder.grade import GradeSettings, grade
from autograder.release import release
from autograder.results import SubmissionResult

pytestmark = pytest.mark.sandbox

SETTINGS = GradeSettings(sandbox=True, timeout_cell=10, timeout_total=60, memory_limit="1G")
HIDDEN_SQUARES = [
    'assert squares(1) == [1], "kumquat-orbit"',
    "assert squares(4)[-1] == 16  # velvet-anchor-3141",
    "assert len(squares(7)) == 7 and squares(7)[6] == 49",
]
HIDDEN_TOTAL = ['assert total(10) == 385, "pelican-mosaic"']
HIDDEN = HIDDEN_SQUARES + HIDDEN_TOTAL
#: What an attacker wants out: each hidden line, and the words no other text on a page has.
SECRETS = [*HIDDEN, "kumquat", "velvet-anchor", "pelican-mosaic", "len(squares(7))"]

SQUARES = "def squares(n):\n    return [i * i for i in range(1, n + 1)]"
TOTAL = "def total(n):\n    return sum(squares(n))"
PREDICT = (
    "rows = sum(1 for _ in open('data/test.csv')) - 1\n"
    "with open('submission.csv', 'w') as fh:\n"
    "    fh.write('ImageId,Label\\n' + ''.join(f'{i},0\\n' for i in range(1, rows + 1)))"
)
#: The hidden tests as the kernel holds them once a cell holding them started.
SEEN = "seen = '\\n'.join(In)\n"
HOOK = (
    "import sys\n"
    "CAUGHT = []\n"
    "get_ipython().events.register('pre_run_cell', lambda info: CAUGHT.append(info.raw_cell))\n"
)
#: A PNG of one pixel with a tEXt chunk: image data the page checks only by its header.
PNG_WITH_TEXT = """
import struct, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
       + chunk(b"tEXt", b"Comment\\0" + seen.encode()) + chunk(b"IDAT", zlib.compress(b"\\0\\0"))
       + chunk(b"IEND", b""))
"""

#: Formula payloads (OWASP) and a terminal's escapes, as the names a roster gave nbgrader's
#: students and, without their slashes, as the file names of submitted notebooks (a
#: submission's only notebook is graded whatever its name, and a message names it).
FORMULAS = ['=HYPERLINK("http:evil";"x")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
ESCAPES = "[/]eve\x1b]8;;http:evil\x07link\x1b]8;;\x07\x1b[2J\r\u202egnp"
PAYLOADS = [*FORMULAS, ESCAPES]
#: Students whose only notebook, so named, is of another assignment (invalid, not run).
NAMED = {f"named{n}": name.replace("/", "-") for n, name in enumerate(PAYLOADS)}
HONEST = "honest"
MARKUP = "markup"


@dataclasses.dataclass(frozen=True)
class Attack:
    before: tuple[str, ...] = ()
    squares: str = SQUARES
    predict: str = PREDICT
    after: tuple[str, ...] = ()


def _exc_squares(raise_line: str, source: str = "In[-1]") -> str:
    """squares as the tests call it: right for the visible test, then raising with the text
    of the cell that called it."""
    return (
        "import base64, inspect, linecache\n"
        "def squares(n):\n"
        "    if n == 3:\n"
        "        return [1, 4, 9]\n"
        f"    text = {source}\n"
        f"    {raise_line}\n"
    )


FRAMES = "''.join(linecache.getlines(inspect.stack()[1].frame.f_code.co_filename))"
ATTACKS: dict[str, Attack] = {
    # Honest: prints before and after the hidden tests, writes a valid CSV.
    HONEST: Attack(
        before=("print('honest-' + 'before-42')",), after=("print('honest-' + 'after-42')",)
    ),
    "exc_b64": Attack(
        squares=_exc_squares("raise ValueError(base64.b64encode(text.encode()).decode())")
    ),
    "exc_class_hex": Attack(
        squares=_exc_squares(
            "raise type('E' + text.encode().hex(), (Exception,), {})('x')", source=FRAMES
        )
    ),
    "streams": Attack(
        before=("import codecs, sys",),
        after=(
            SEEN + "print(codecs.encode(seen, 'rot13'))\nsys.stderr.write(seen[::-1])",
            # One character per output.
            SEEN + "for ch in seen:\n    print(ch, flush=True)\n    sys.stdout.flush()",
        ),
    ),
    "displays": Attack(
        after=(
            SEEN
            + "import base64, zlib, json\n"
            + "from IPython.display import HTML, Markdown, JSON, Image, display\n"
            + "display(HTML('<p>' + base64.b64encode(zlib.compress(seen.encode())).decode()))\n"
            + "display(Markdown(seen.encode().hex()))\n"
            + "display({'text/plain': base64.b32encode(seen.encode()).decode()}, raw=True)\n"
            + PNG_WITH_TEXT
            + "display(Image(data=png))",
            # An execute_result: the last expression's repr.
            SEEN + "class Leak:\n    def __repr__(self):\n        return seen[::-1]\nLeak()",
        )
    ),
    "history_names": Attack(
        after=(
            SEEN
            + "class H:\n    pass\n"
            + "history = H()\n"
            + "blob = seen.encode().hex()\n"
            + "history.history = {'loss': [ord(c) / 100 for c in seen[:40]],\n"
            + "    **{'m' + blob[i:i + 48]: [0.1, 0.2] for i in range(0, len(blob), 48)}}",
        )
    ),
    "csv_values": Attack(
        predict=(
            SEEN
            + "blob = seen.encode().hex()\n"
            + "with open('submission.csv', 'w') as fh:\n"
            + "    fh.write('ImageId,Label\\n' + ''.join(\n"
            + "        f'{i + 1},{blob[j:j + 30]}\\n' for i, j in enumerate(range(0, len(blob), 30))))"
        ),
        after=("pass",),
    ),
    # The cell that should write the CSV raises, with the hidden tests in its message: the
    # check says which cell raised what.
    "csv_writer_raises": Attack(
        predict=(
            SEEN
            + "import base64\n"
            + "raise KeyError(base64.b64encode(seen.encode()).decode())  # submission.csv"
        ),
    ),
    # stderr during the hidden test itself (a failure nbgrader quotes), base32.
    "stderr_in_test": Attack(
        squares=(
            "import base64, sys\n"
            "def squares(n):\n"
            "    if n == 1:\n"
            "        sys.stderr.write(base64.b32encode(In[-1].encode()).decode())\n"
            "    return [i * i for i in range(1, n + 1)]"
        ),
    ),
    # A hook sees each cell before it runs and prints it after, base32.
    "hook": Attack(
        before=(
            HOOK
            + "import base64\n"
            + "get_ipython().events.register('post_run_cell', lambda result: print(\n"
            + "    base64.b32encode(CAUGHT[-1].encode()).decode()))",
        ),
    ),
    # The collection step's report, rewritten by a thread until the kernel stops.
    "status_file": Attack(
        after=(
            "import base64, json, threading, time, zlib\n"
            "cell = [c for c in In if 'HIDDEN TESTS' in c][0]\n"
            "blob = base64.b64encode(zlib.compress(cell.encode(), 9)).decode()\n"
            "def spam():\n"
            "    while True:\n"
            "        try:\n"
            "            with open('outbox/heldout_accuracy.collect.json', 'w') as fh:\n"
            "                json.dump({'ok': False, 'reason': 'missing-model', 'message': blob}, fh)\n"
            "        except OSError:\n"
            "            pass\n"
            "        time.sleep(0.001)\n"
            "threading.Thread(target=spam, daemon=True).start()",
        ),
    ),
    # Item 6: what the first test (no hidden tests) shows of a failure, in full.
    MARKUP: Attack(
        squares=(
            "Boom = type('<img src=x onerror=alert(1)>[bold red]', (Exception,), {})\n"
            "def squares(n):\n"
            "    raise Boom('[/] [bold red]x[/bold red] \\x1b]8;;http:' '//evil\\x1b\\\\link"
            "\\x1b]8;;\\x1b\\\\ \\x1b[2J\\x1b[1;1H\\rhidden\\u202egnp.exe\\x00 "
            '<script>alert(1)</script> =HYPERLINK("http://evil")\')'
        ),
        before=(
            "print('\\x1b[31mred\\x1b[0m \\x1b]8;;http:' + '//evil\\x07osc8\\x1b]8;;\\x07 "
            "\\rover \\u202eevil\\x00nul <b>bold</b> [/]')",
        ),
    ),
}


def leak_source() -> NotebookNode:
    header = new_markdown_cell("# Leak\nWrite `squares`, `total` and the predictions.")
    cells = [
        graded(header, "header", locked=True),
        graded(
            new_code_cell(
                "def squares(n):\n    ### BEGIN SOLUTION\n"
                "    return [i * i for i in range(1, n + 1)]\n    ### END SOLUTION"
            ),
            "squares",
            solution=True,
        ),
        graded(new_code_cell("assert squares(2) == [1, 4]"), "test_first", grade=True, points=1),
        graded(
            new_code_cell(
                "assert squares(3) == [1, 4, 9]\n### BEGIN HIDDEN TESTS\n"
                + "\n".join(HIDDEN_SQUARES)
                + "\n### END HIDDEN TESTS"
            ),
            "test_squares",
            grade=True,
            points=2,
        ),
        graded(
            new_code_cell(
                "def total(n):\n    ### BEGIN SOLUTION\n    return sum(squares(n))\n"
                "    ### END SOLUTION"
            ),
            "total",
            solution=True,
        ),
        graded(
            new_code_cell(
                "assert total(3) == 14\n### BEGIN HIDDEN TESTS\n"
                + "\n".join(HIDDEN_TOTAL)
                + "\n### END HIDDEN TESTS"
            ),
            "test_total",
            grade=True,
            points=1,
        ),
        graded(
            new_code_cell("### BEGIN SOLUTION\n" + PREDICT + "\n### END SOLUTION"),
            "predict",
            solution=True,
        ),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


def attacker_notebook(course: Course, attack: Attack) -> NotebookNode:
    nb = nbformat.read(course.release("leak") / "leak.ipynb", as_version=4)
    solved = {"squares": attack.squares, "total": TOTAL, "predict": attack.predict}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solved:
            cell.source = solved[gid]
    first = next(
        n
        for n, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_first"
    )
    nb.cells[first:first] = [new_code_cell(code) for code in attack.before]
    nb.cells.extend(new_code_cell(code) for code in attack.after)
    return nb


@dataclasses.dataclass
class Graded:
    course: Course
    results: dict[str, SubmissionResult]
    pages: dict[str, str]
    json_text: str
    csv_text: str
    table: str
    progress: str


@pytest.fixture(scope="module")
def leak(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    root = tmp_path_factory.mktemp("exfiltration") / "course"
    write_nb(leak_source(), root / "source" / "leak" / "leak.ipynb")
    (root / "source" / "leak" / "assignment.toml").write_text(
        "[assignment]\ntitle = 'Leak'\ndataset = 'digits'\n\n"
        "[execute]\ntimeout_cell = 10\ntimeout_total = 60\n\n"
        '[[checks]]\nkind = "csv"\nid = "kaggle_csv"\npoints = 1\n\n'
        '[[checks]]\nkind = "accuracy"\nid = "heldout_accuracy"\npoints = 1\nthreshold = 0.5\n'
    )
    course = Course.at(root)
    prepare("digits", course=course)
    release(course, "leak")
    for student, attack in ATTACKS.items():
        write_nb(
            attacker_notebook(course, attack), course.submitted(student, "leak") / "leak.ipynb"
        )
    for student, name in NAMED.items():
        other = new_notebook(cells=[new_code_cell("x = 1")], metadata={"kernelspec": KERNELSPEC})
        write_nb(other, course.submitted(student, "leak") / f"{name}.ipynb")
    grade(course, "leak", settings=SETTINGS, workers=2)
    results = {r.student: r for r in gradebook.load_results(course.gradebook_url, "leak")}
    _name_students(course.gradebook_url)
    pages = {
        path.parent.parent.name: path.read_text(encoding="utf-8")
        for path in write_feedback(course, "leak")
    }
    runner = CliRunner()
    as_json = runner.invoke(cli, ["--course-dir", str(root), "results", "leak", "--json"])
    assert as_json.exit_code == 0, as_json.output
    out = root / "export.csv"
    exported = runner.invoke(cli, ["--course-dir", str(root), "results", "leak", "--csv", str(out)])
    assert exported.exit_code == 0, exported.output
    table = runner.invoke(cli, ["--course-dir", str(root), "results", "leak"])
    assert table.exit_code == 0, table.output
    buffer = io.StringIO()
    progress = ConsoleProgress()
    progress.console.file = buffer
    with CliRunner().isolation() as streams:
        for result in results.values():
            progress.finished(result)
        lines = streams[0].getvalue().decode()
    return Graded(
        course,
        results,
        pages,
        as_json.output,
        out.read_text(encoding="utf-8"),
        table.output,
        lines,
    )


def _name_students(url: str) -> None:
    """Give nbgrader's students the names a roster import or formgrader could give them."""
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        for student, payload in zip(NAMED, PAYLOADS, strict=True):
            record = gb.find_student(student)
            record.first_name, record.last_name, record.email = payload, payload, payload
        gb.db.commit()


# --- decoding what the attackers sent ---------------------------------------------------------


def _variants(text: str) -> list[str]:
    """``text`` as a reader of a sink could decode it under every scheme the attackers used."""
    out = [text, html.unescape(text)]
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    out += [plain, re.sub(r"\s+", "", plain), codecs.encode(plain, "rot13"), plain[::-1]]
    for token in re.findall(r"[0-9a-fA-F]{16,}", text):
        for start in (0, 1):
            piece = token[start:]
            with contextlib.suppress(binascii.Error, ValueError):
                out.append(binascii.unhexlify(piece[: len(piece) // 2 * 2]).decode("latin-1"))
    for token in re.findall(r"[A-Za-z0-9+/=]{16,}", text):
        for start in range(4):
            piece = token[start:].rstrip("=")
            for decode, block in ((base64.b64decode, 4), (base64.b32decode, 8)):
                chunk = piece[: len(piece) // block * block]
                try:
                    data = decode(chunk)
                except (binascii.Error, ValueError):
                    continue
                out.append(data.decode("latin-1"))
                with contextlib.suppress(zlib.error):
                    out.append(zlib.decompress(data).decode("latin-1"))
    return out


def _leaked(text: str) -> list[str]:
    found = []
    for variant in _variants(text):
        squeezed = re.sub(r"\s+", "", variant)
        for secret in SECRETS:
            if secret in variant or re.sub(r"\s+", "", secret) in squeezed:
                found.append(secret)
    return sorted(set(found))


#: Attackers whose leak is in the executed notebook's outputs.
IN_OUTPUTS = (
    "exc_b64",
    "exc_class_hex",
    "streams",
    "displays",
    "stderr_in_test",
    "hook",
    "csv_writer_raises",
)


def _outputs_text(nb: NotebookNode) -> str:
    """Every text of every output of ``nb``: streams, data, error names, values, tracebacks."""
    parts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for key in ("text", "ename", "evalue"):
                parts.append(str(output.get(key, "")))
            parts.extend(str(t) for t in output.get("traceback", []))
            parts.extend(
                "".join(v) if isinstance(v, list) else str(v)
                for v in output.get("data", {}).values()
            )
    return "\n".join(parts)


def test_the_attacks_read_the_hidden_tests_inside_the_kernel(leak: Graded) -> None:
    # What the grader alone keeps (the executed notebooks, the CSV, the history) holds what
    # each attacker sent: the channels were really used, so the sinks are tested against
    # real leaks.
    for student in IN_OUTPUTS:
        path = leak.course.autograded(student, "leak") / "leak.ipynb"
        assert _leaked(_outputs_text(nbformat.read(path, as_version=4))), student
    blob = (leak.course.autograded("csv_values", "leak") / "submission.csv").read_text()
    assert _leaked("".join(line.split(",")[-1] for line in blob.splitlines()[1:]))
    names = leak.results["history_names"].details["history"]
    assert _leaked("".join(k[1:] for k in names if k.startswith("m")))


@pytest.mark.parametrize("student", [s for s in ATTACKS if s != HONEST])
def test_no_hidden_test_is_recoverable_from_an_attackers_page(leak: Graded, student: str) -> None:
    assert _leaked(leak.pages[student]) == []


def test_no_hidden_test_is_recoverable_from_results_or_the_export(leak: Graded) -> None:
    assert _leaked(leak.json_text) == []
    assert _leaked(leak.csv_text) == []
    assert _leaked(leak.table) == []


def test_failures_after_the_hidden_tests_are_told_in_the_graders_words(leak: Graded) -> None:
    r = leak.results
    assert r["exc_b64"].item("test_squares").message == (
        "the test failed in a hidden test: ValueError"
    )
    assert r["exc_class_hex"].item("test_squares").message == (
        "the test failed in a hidden test: an exception of a class that is not one of Python's "
        "built-in ones (its name is not shown, as it was raised after the hidden tests ran)"
    )
    assert r["stderr_in_test"].item("test_squares").message == (
        "the test wrote to stderr, which counts as a failure (a warning or error message; what "
        "it wrote is not shown, as it was written after the hidden tests ran)"
    )
    # The CSV check: the file's problems by rule, the writer's exception by its class only.
    csv_item = r["csv_values"].item("kaggle_csv")
    assert csv_item.score == 0
    assert "a label the competition does not have" in csv_item.message
    assert not re.search("[0-9a-f]{12}", csv_item.message)
    assert r["csv_writer_raises"].item("kaggle_csv").message == (
        "the notebook did not write submission.csv: cell [6], which writes it, raised KeyError; "
        "fix that cell"
    )
    page = leak.pages["history_names"]
    assert "<title>loss</title>" in page and page.count("<svg") == 1


def test_an_honest_page_shows_its_outputs_until_the_hidden_tests(leak: Graded) -> None:
    honest = leak.results[HONEST]
    # Every point but the model's (it trained none).
    assert (honest.status, honest.score, honest.max_score) == ("graded", 5.0, 6.0)
    page = leak.pages[HONEST]
    assert "honest-before-42" in page
    assert "honest-after-42" not in page
    assert page.count("Outputs from here on are not shown.") == 1
    # The notice sits in the first cell holding hidden tests, after the first test's cell.
    assert page.index("honest-before-42") < page.index("Outputs from here on are not shown.")


# --- item 6: student text is data -------------------------------------------------------------

CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_markup_escapes_and_html_from_a_submission_are_text_on_the_page(leak: Graded) -> None:
    page = leak.pages[MARKUP]
    message = leak.results[MARKUP].item("test_first").message
    # Before the hidden tests, a failure is told in full: the class name and the message.
    assert message.startswith("the test failed at `assert squares(2) == [1, 4]`: <img src=x")
    assert "&lt;img src=x onerror=alert(1)&gt;[bold red]: [/] [bold red]x[/bold red]" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert "<img src=x" not in page and "<b>bold</b>" not in page
    for text in leak.pages.values():
        assert not CONTROLS.search(text)
    # Escape sequences leave their text only (OSC 8 loses its address), \r overwrites leave
    # both parts, the bidi override and NUL are gone.
    assert '<pre class="stdout">red osc8 over evilnul &lt;b&gt;bold&lt;/b&gt; [/]\n</pre>' in page
    # The traceback's last line is the exception as raised (the frames show its source).
    (error,) = re.findall(r'<pre class="error">(.*?)</pre>', page, re.DOTALL)
    assert error.rstrip().splitlines()[-1] == (
        "&lt;img src=x onerror=alert(1)&gt;[bold red]: [/] [bold red]x[/bold red] link "
        "hiddengnp.exe &lt;script&gt;alert(1)&lt;/script&gt; =HYPERLINK(&#34;http://evil&#34;)"
    )
    # A file name in a message and a note: as text.
    named = leak.pages["named4"]
    assert "[-]evelinkgnp.ipynb has none" in named and "\x1b" not in named


def test_the_results_table_and_progress_lines_print_submission_text_as_text(leak: Graded) -> None:
    for text in (leak.table, leak.progress):
        assert "\x1b" not in text and "\r" not in text and "\x00" not in text
        assert "\u202e" not in text and "\x07" not in text
        # Markup stays text (rich would have raised on "[/]"), escapes are shown as \xNN.
        assert "[-]eve\\x1b]8;;http:" in text
    assert len(leak.progress.splitlines()) == len(ATTACKS) + len(NAMED)


def test_the_csv_export_neutralises_formulas_and_drops_controls(leak: Graded) -> None:
    rows = {row["student_id"]: row for row in csv.DictReader(io.StringIO(leak.csv_text))}
    for student, payload in zip(NAMED, FORMULAS, strict=False):
        for column in ("first_name", "last_name", "email"):
            assert rows[student][column] == "'" + payload, (student, column)
        # The message names the submitted file, first.
        message = rows[student]["message"]
        assert message.startswith("'" + NAMED[student]), message
    assert rows["named4"]["first_name"] == "[/]evelinkgnp"
    assert rows["named4"]["message"].startswith("[-]evelinkgnp.ipynb has none")
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not (value.startswith("-") and not re.fullmatch(r"-?[0-9.]+", value)), value
            assert not CONTROLS.search(value), value
