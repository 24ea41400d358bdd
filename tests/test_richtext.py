"""Markdown, math, images and code as the feedback page shows them: rendered, and never a
way in for markup, scripts, links or files outside the released assignment."""

from __future__ import annotations

import base64
import os
import re

import pytest

from autograder.config import Course
from autograder.release import released_file
from autograder.richtext import Markdown, highlight, image_data_uri, mathml

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_math_becomes_mathml_with_entities_as_characters():
    html = Markdown()("Return $x_i=i^2$ for $1\\leq i$.\n\n$$\\sum_{i=1}^n i^2$$\n")
    assert html.count("<math") == 3
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in html
    assert 'display="block"' in html
    assert "<mo>=</mo>" in html and "<mo>≤</mo>" in html and "<mo>∑</mo>" in html
    assert "&amp;#x" not in html and "$" not in html


@pytest.mark.parametrize(
    "latex",
    [
        r"\text{<script>alert(1)</script>}",
        r"\text{<img src=x onerror=alert(1)>}",
        r"\href{javascript:alert(1)}{click}",
        r"\style{background:url(http://evil/x)}{y}",
        r"\mathrm{</math><script>alert(1)</script>}",
        r"\color{red;background:url(http://evil)}{x}",
        r"\text{&lt;script&gt;}",
    ],
)
def test_math_carries_no_markup_links_or_styles(latex):
    out = str(mathml(latex, block=False) or "")
    assert out.startswith("<math") and out.endswith("</math>")
    assert not re.search(r"<(?!/?(math|mrow|mi|mn|mo|mtext|mstyle|mspace)\b)", out), out
    assert "href" not in out and "style=" not in out and "url(" not in out, out
    assert "<script" not in out and "onerror" not in out.replace("onerror=alert", "")
    page = Markdown()(f"see ${latex}$")
    assert "<script" not in page and "<img" not in page and "href" not in page


def test_math_that_does_not_convert_is_shown_as_text():
    assert mathml("\\frac{1}{", block=False) is None
    html = Markdown()("broken $\\frac{1}{$ math and a price of $5")
    assert "<math" not in html and "<code>$\\frac{1}{$</code>" in html


def test_markdown_escapes_raw_html_and_keeps_only_safe_links():
    html = Markdown()(
        "<script>alert(1)</script>\n\n"
        "text <b onclick=x>b</b> <img src=x onerror=alert(1)> [a](javascript:alert(1)) "
        "[b](https://example.org) [c](data:text/html,x) [d](file:///etc/passwd) "
        "Kernel &#8594; Restart &lt;tag&gt;"
    )
    assert "<script" not in html and "<b" not in html and "<img" not in html
    assert html.count("<a ") == 1 and '<a href="https://example.org">b</a>' in html
    assert "Kernel → Restart &lt;tag&gt;" in html


def test_code_is_highlighted_and_escaped():
    html = str(highlight("def f(x):\n    return x < '<b>'"))
    assert '<span class="k">def</span>' in html and "&lt;b&gt;" in html and "<b>" not in html
    assert str(highlight("<b>", "no-such-language")) == "&lt;b&gt;"
    fenced = Markdown()("```python\nimport os\n```\n\n```\n<b>\n```")
    assert '<span class="kn">import</span>' in fenced and "&lt;b&gt;" in fenced


def test_only_verified_images_become_data_uris():
    assert image_data_uri(PNG).startswith("data:image/png;base64,iVBOR")
    assert image_data_uri(b"\xff\xd8\xff\xe0rest").startswith("data:image/jpeg;")
    assert image_data_uri(b"GIF89a...").startswith("data:image/gif;")
    for data in (b"<svg onload=alert(1)>", b"%PDF-1.4", b"", b"\x89PNX"):
        assert image_data_uri(data) is None


@pytest.fixture
def course_with_image(tmp_path) -> Course:
    src = tmp_path / "course" / "source" / "a1"
    (src / "images").mkdir(parents=True)
    (src / "images" / "plot.png").write_bytes(PNG)
    (src / "fake.png").write_text("not an image")
    (src / "assignment.toml").write_text("[assignment]\n")
    (tmp_path / "course" / "gradebook.db").write_bytes(b"SQLite format 3\0")
    (tmp_path / "secret.png").write_bytes(PNG)
    os.symlink(tmp_path / "secret.png", src / "link.png")
    return Course.at(tmp_path / "course")


def test_released_files_are_found_and_nothing_outside_the_assignment(course_with_image):
    course = course_with_image
    assert released_file(course, "a1", "images/plot.png", limit=10_000) == PNG
    assert released_file(course, "a1", "./images/plot.png", limit=10_000) == PNG
    assert released_file(course, "a1", "images/plot.png", limit=10) is None  # too large
    for url in (
        "../../gradebook.db",
        "..%2F..%2Fgradebook.db",
        "images/../../../secret.png",
        "/etc/passwd",
        "file:///etc/passwd",
        "http://example.org/x.png",
        "//example.org/x.png",
        "images\\..\\..\\secret.png",
        "assignment.toml",
        "link.png",  # a link out of the folder
        "missing.png",
        "",
    ):
        assert released_file(course, "a1", url, limit=10_000) is None, url


def test_markdown_images_come_from_the_released_assignment_only(course_with_image):
    def image(url: str) -> str | None:
        data = released_file(course_with_image, "a1", url, limit=100_000)
        return image_data_uri(data) if data is not None else None

    html = Markdown(image)(
        '![plot "x" <b>](images/plot.png) ![fake](fake.png) ![out](../../secret.png) '
        "![web](http://example.org/a.png) ![att](attachment:a.png)"
    )
    assert html.count("<img") == 1
    assert '<img class="figure" src="data:image/png;base64,' in html
    assert 'alt="plot &#34;x&#34; &lt;b&gt;"' in html
    for alt in ("fake", "out", "web", "att"):
        assert f"<em>[image: {alt}]</em>" in html
