"""What the feedback page and the leaderboard share: the Jinja environment, scrubbing of
student text, and small inline SVG charts.

Every page is one self-contained file: styles inline, images as ``data:`` URIs or inline SVG,
no script at all, and a Content-Security-Policy that forbids scripts and every outside load,
so a page stays safe even if some student text ever slipped through unescaped. All text goes
through Jinja's autoescape; only the SVG built here from numbers is marked safe.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"
#: Terminal escape sequences (ECMA-48): CSI (colours, cursor movement, clearing), OSC (titles,
#: OSC 8 hyperlinks) ended by BEL or ST, DCS/SOS/PM/APC strings, and two-character escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
#: Characters text never shows as itself: C0 and C1 controls but tab and newline (NUL, \r
#: overwrites, escapes), Unicode's format characters but the zero-width joiner of emoji
#: (bidi overrides such as U+202E, zero-width spaces, tags), lone surrogates.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200c"
    "\u200e-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\ud800-\udfff]"
)
#: First characters a spreadsheet reads as a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
#: Larger images in a notebook's outputs are left out of the page (a phone must load it).
MAX_IMAGE_BYTES = 2_000_000
#: Series colours of the charts (colour-blind safe, Okabe-Ito).
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


@functools.cache
def environment() -> Any:
    """The Jinja environment of the templates in ``autograder/templates`` (autoescaped)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["num"] = number
    env.filters["pct"] = percent
    return env


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` of every page: strings lose the characters that never show as
    themselves (then autoescape makes them text); markup built here stays markup."""
    if isinstance(value, Markup):
        return Markup(literal(str(value)))
    if isinstance(value, str):
        return literal(value)
    return value


def render(template: str, **context: Any) -> str:
    """Render ``template`` from ``autograder/templates`` with ``context``."""
    return str(environment().get_template(template).render(**context))


def write_page(path: Path, html: str) -> Path:
    """Write ``html`` to ``path`` atomically (a participant never loads half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def number(value: Any) -> str:
    """A score as people write it: 2, 0.5, 3.25."""
    if value is None:
        return "-"
    return f"{float(value):g}"


def percent(value: Any, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage ("93.4%"); "-" for none."""
    if value is None:
        return "-"
    return f"{100 * float(value):.{digits}f}%"


def plain(text: str) -> str:
    """Text without terminal escape sequences (IPython colours its tracebacks; a notebook may
    print cursor movements or OSC 8 links)."""
    return _ANSI.sub("", text)


def literal(text: str) -> str:
    """``text`` as it is shown as data: escape sequences and the characters that do not show
    as themselves (controls but tab and newline, bidi overrides, zero-width characters)
    removed. A carriage return that overwrote a line leaves both parts visible."""
    return _INVISIBLE.sub("", plain(text.replace("\r\n", "\n")))


def spreadsheet_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: :func:`literal`, and a quote before a value
    that would start a formula (``=``, ``+``, ``-``, ``@``, tab, CR; OWASP's rule); plain
    numbers stay numbers."""
    text = literal("" if value is None else str(value))
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class Scrubber:
    """Removes every line of the hidden tests from text a participant will see.

    The executed notebook has the hidden tests put back (nbgrader's issue #917), and their
    lines can come back in tracebacks, in a test's failure message, or in anything a notebook
    printed (``In``, ``_ih``). Each hidden line of some length is replaced wherever it occurs.
    """

    REPLACEMENT = "[hidden test]"
    #: Shorter lines (``pass``, ``)``) are no secret and would match everywhere.
    MIN_LENGTH = 6

    def __init__(self, hidden_lines: Sequence[str]) -> None:
        lines = {line.strip() for line in hidden_lines}
        self.lines = sorted((ln for ln in lines if len(ln) >= self.MIN_LENGTH), key=len)[::-1]

    def __call__(self, text: str) -> str:
        for line in self.lines:
            if line in text:
                text = text.replace(line, self.REPLACEMENT)
        return text


def image_uri(mime: str, data: Any) -> str | None:
    """A ``data:`` URI for a PNG or JPEG output of a notebook, or None when it is not one.

    The data comes from the student's kernel: only clean base64 of an image that starts like
    one, and not too large, is kept.
    """
    if mime not in {"image/png", "image/jpeg"}:
        return None
    text = "".join(data) if isinstance(data, list) else data
    if not isinstance(text, str):
        return None
    text = "".join(text.split())
    if len(text) > MAX_IMAGE_BYTES or not _BASE64.match(text):
        return None
    try:
        head = base64.b64decode(text[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not head.startswith(b"\x89PNG" if mime == "image/png" else b"\xff\xd8"):
        return None
    return f"data:{mime};base64,{text}"


# --- inline SVG charts (numbers only: safe to mark up) ------------------------------------


def _f(value: float) -> str:
    return f"{value:.1f}"


def line_chart(
    series: Mapping[str, Sequence[float]], *, title: str, width: int = 480, height: int = 260
) -> Markup:
    """An inline SVG line chart of ``series`` (name -> value per epoch), with axes and legend."""
    names = [n for n, v in series.items() if v]
    values = [float(x) for n in names for x in series[n] if x == x and abs(x) != float("inf")]
    if not values:
        return Markup("")
    left, right, top, bottom = 48, 12, 44, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n_max = max(len(series[n]) for n in names)

    def x(i: int) -> float:
        return left + (plot_w * i / (n_max - 1) if n_max > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" class="chart"><title>{escape(title)}</title>',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>',
    ]
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<text x="{left - 4}" y="{_f(y(v) + 4)}" text-anchor="end" class="tick">{v:.3g}</text>'
        )
    for i in sorted({0, (n_max - 1) // 2, n_max - 1}):
        parts.append(
            f'<text x="{_f(x(i))}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">'
            f"{i + 1}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="tick">'
        "epoch</text>"
    )
    for k, name in enumerate(names):
        colour = COLOURS[k % len(COLOURS)]
        # Whole pixels: the values are the notebook's, and finer points would carry more.
        points = " ".join(
            f"{round(x(i))},{round(y(float(v)))}"
            for i, v in enumerate(series[name])
            if v == v and abs(v) != float("inf")
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        # The legend sits between the title and the plot, never over a line.
        lx = left + 130 * (k % 3)
        ly = 24 + 12 * (k // 3)
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 5}" class="tick">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(
    scores: Sequence[float], *, maximum: float, title: str, width: int = 480, height: int = 220
) -> Markup:
    """An inline SVG histogram of total scores, one bar per tenth of ``maximum``."""
    bins = 10
    counts = [0] * bins
    for s in scores:
        i = int(bins * s / maximum) if maximum > 0 else 0
        counts[min(max(i, 0), bins - 1)] += 1
    left, right, top, bottom = 36, 8, 40, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max(counts) or 1
    bar_w = plot_w / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" class="chart"><title>{escape(title)}</title>',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'class="axis"/>',
    ]
    for i, count in enumerate(counts):
        h = plot_h * count / tallest
        bx = left + i * bar_w
        parts.append(
            f'<rect x="{_f(bx + 2)}" y="{_f(top + plot_h - h)}" width="{_f(bar_w - 4)}" '
            f'height="{_f(h)}" fill="{COLOURS[0]}"><title>{count} student(s)</title></rect>'
        )
        if count:
            parts.append(
                f'<text x="{_f(bx + bar_w / 2)}" y="{_f(top + plot_h - h - 4)}" '
                f'text-anchor="middle" class="tick">{count}</text>'
            )
    for i in (0, bins // 2, bins):
        parts.append(
            f'<text x="{_f(left + i * bar_w)}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="tick">{maximum * i / bins:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="tick">'
        "score</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def heat(count: int, row_total: int, *, diagonal: bool) -> str:
    """Background colour of a confusion-matrix cell: blue on the diagonal, orange off it."""
    if not count or not row_total:
        return "transparent"
    alpha = 0.15 + 0.75 * count / row_total
    rgb = "0,114,178" if diagonal else "213,94,0"
    return f"rgba({rgb},{alpha:.2f})"
