"""Notebook text as the feedback page shows it, with no script and nothing loaded from outside:
markdown with raw HTML escaped, math as MathML, the images the released assignment ships, and
code highlighted by Pygments.

nbgrader's own feedback renders math with MathJax from a CDN, which fails offline and under
the pages' Content-Security-Policy. Here the markdown parser (mistune's math plugin) finds the
math, ``latex2mathml`` turns it into a MathML tree, and only known MathML elements and
attributes are written back out (the converter passes ``\\text{<b>}`` and ``\\href`` through
as markup): browsers render MathML themselves. Math that does not convert is shown as text.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

#: Longer formulas are shown as text (conversion time grows with them).
MAX_MATH_CHARS = 4_000

# fmt: off
#: The MathML elements written out; any other is replaced by an ``mrow`` of its children.
MATHML_ELEMENTS = frozenset((
    "math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup",
    "munder", "mover", "munderover", "mfrac", "msqrt", "mroot", "mstyle", "mtable", "mtr",
    "mtd", "mlabeledtr", "mpadded", "mphantom", "menclose", "merror", "mmultiscripts",
    "mprescripts", "none", "semantics", "annotation",
))
#: The attributes kept on them (presentation only: no links, no styles, no events).
MATHML_ATTRIBUTES = frozenset((
    "display", "mathvariant", "stretchy", "fence", "separator", "lspace", "rspace", "accent",
    "accentunder", "movablelimits", "largeop", "form", "symmetric", "minsize", "maxsize",
    "width", "height", "depth", "linethickness", "displaystyle", "scriptlevel", "columnalign",
    "columnspacing", "columnlines", "rowalign", "rowspacing", "rowlines", "frame",
    "framespacing", "notation", "align", "open", "close", "mathcolor", "mathbackground",
    "columnspan", "rowspan", "bevelled",
))
# fmt: on
_SAFE_VALUE = re.compile(r"^[#A-Za-z0-9 .%\-]{0,64}$")
_MATHML_NS = "http://www.w3.org/1998/Math/MathML"

#: What an image's first bytes must be, by the type written into its ``data:`` URI.
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG or GIF by its first bytes; None for anything else."""
    return next((mime for magic, mime in IMAGE_MAGIC if data.startswith(magic)), None)


def image_data_uri(data: bytes) -> str | None:
    """A ``data:`` URI of a verified PNG, JPEG or GIF; None for anything else."""
    mime = image_type(data)
    if mime is None:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def mathml(latex: str, *, block: bool) -> Markup | None:
    """``latex`` as a MathML element of known tags and attributes only; None when it does
    not convert (then the caller shows it as text)."""
    import xml.etree.ElementTree as ET

    from latex2mathml.converter import convert_to_element

    if not latex.strip() or len(latex) > MAX_MATH_CHARS:
        return None
    try:
        root = convert_to_element(latex, display="block" if block else "inline")
    except Exception:  # the converter raises many kinds for malformed LaTeX
        return None
    for element in root.iter():
        # The converter writes entities (&#x0003D;) into its text; ElementTree would escape
        # their '&', so they are turned into characters first, and escaped once on the way out.
        if element.text:
            element.text = html.unescape(element.text)
        if element.tail:
            element.tail = html.unescape(element.tail)
        tag = str(element.tag)
        if tag not in MATHML_ELEMENTS:
            element.tag = "mrow"
        for name in list(element.attrib):
            value = element.attrib[name]
            if name == "xmlns" and element is root and value == _MATHML_NS:
                continue
            if name not in MATHML_ATTRIBUTES or not _SAFE_VALUE.match(value):
                del element.attrib[name]
    # ElementTree escapes text and attribute values as it writes them.
    return Markup(ET.tostring(root, encoding="unicode", short_empty_elements=False))


class Markdown:
    """Markdown to HTML: raw HTML escaped, math as MathML, images only from ``image`` (which
    maps a relative URL to a ``data:`` URI or None), links only http(s), mailto and anchors."""

    def __init__(self, image: Callable[[str], str | None] | None = None) -> None:
        self.render = _parser(image or (lambda url: None))

    def __call__(self, text: str) -> str:
        return str(self.render(text))


def _parser(image_for: Callable[[str], str | None]) -> Any:
    import mistune
    from mistune.util import striptags

    class SafeRenderer(mistune.HTMLRenderer):
        def text(self, text: str) -> str:
            # Entity references (&#8594;, &amp;) read as the characters they stand for, as in
            # Jupyter; every character is then escaped, so no markup gets through.
            return str(escape(html.unescape(text)))

        def image(self, text: str, url: str, title: str | None = None) -> str:
            uri = image_for(url)
            if uri is None:
                return f"<em>[image: {text}]</em>"
            # ``text`` is rendered HTML: its tags go, its entities become characters, and
            # the result is escaped once for the attribute.
            alt = escape(html.unescape(striptags(text)))
            return f'<img class="figure" src="{escape(uri)}" alt="{alt}">'

        def link(self, text: str, url: str, title: str | None = None) -> str:
            if url.startswith(("http://", "https://", "mailto:", "#")):
                return str(super().link(text, url, title))
            return text

        def block_code(self, code: str, info: str | None = None) -> str:
            language = (info or "").split(maxsplit=1)[0] if info and info.strip() else "text"
            return f'<pre class="source">{highlight(code.rstrip(chr(10)), language)}</pre>\n'

        def block_math(self, text: str) -> str:
            converted = mathml(text, block=True)
            return f'<div class="math">{converted or escape(f"$${text}$$")}</div>\n'

        def inline_math(self, text: str) -> str:
            converted = mathml(text, block=False)
            return str(converted) if converted else f"<code>{escape(f'${text}$')}</code>"

    return mistune.create_markdown(
        escape=True,
        renderer=SafeRenderer(escape=True),
        plugins=["table", "strikethrough", "math"],
    )


def highlight(source: str, language: str = "python") -> Markup:
    """``source`` as Pygments' HTML spans (escaped by Pygments; classes styled by
    :func:`highlight_css`); plain escaped text for a language Pygments does not know."""
    from pygments import highlight as pygmentize
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language or "python")
    except ClassNotFound:
        return escape(source)
    html = pygmentize(source, lexer, HtmlFormatter(nowrap=True))
    # Pygments ends what it highlights with a newline the cell did not have.
    return Markup(html[:-1] if html.endswith("\n") and not source.endswith("\n") else html)


@functools.cache
def highlight_css() -> Markup:
    """The styles of Pygments' classes inside ``pre.source`` (a light, readable palette):
    Pygments' own text, safe to put in a ``<style>`` element as it is."""
    from pygments.formatters import HtmlFormatter

    return Markup(HtmlFormatter(style="default").get_style_defs("pre.source"))
