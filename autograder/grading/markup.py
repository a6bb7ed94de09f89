"""Markdown and TeX as HTML that runs nothing: what a feedback page shows of a student's cells.

mistune renders the markdown with raw HTML escaped; links are kept only for http(s), mailto
and in-page anchors; images only as data: PNG/JPEG/GIF/WebP URIs or a cell attachment of those
types; `$...$` and `$$...$$` become MathML (latex2mathml), re-serialised through an element and
attribute allow-list. Every text is escaped with esc()/attr().
"""

from __future__ import annotations

import base64
import binascii
import html
import re

import mistune
import mistune.plugins.math
import mistune.util
from latex2mathml.converter import convert_to_element

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
LINK_SCHEMES = ("http://", "https://", "mailto:")


# ---- markdown --------------------------------------------------------------------------------------


class _SafeRenderer(mistune.HTMLRenderer):
    """mistune's HTML with raw HTML escaped, only harmless links and images, math as MathML."""

    def __init__(self, attachments: dict | None = None):
        super().__init__(escape=True)
        self.attachments = attachments or {}

    def link(self, text: str, url: str, title: str | None = None) -> str:
        url = url.strip()
        if not (url.lower().startswith(LINK_SCHEMES) or re.fullmatch(r"#[A-Za-z0-9_.:-]*", url)) or "\\" in url:
            return f'<span class="dropped-link">{text}</span>'
        return f'<a href="{attr(url)}" rel="noopener noreferrer nofollow">{text}</a>'

    def image(self, text: str, url: str, title: str | None = None) -> str:
        source = _image_data_uri(url.strip(), self.attachments)
        alt = attr(html.unescape(mistune.util.striptags(text)))  # text: the alt's markdown, rendered
        if source is None:
            return f'<span class="dropped-image">[image: {alt}]</span>'
        return f'<img src="{attr(source)}" alt="{alt}">'

    def inline_math(self, text: str) -> str:
        return math_html(text, display=False)

    def block_math(self, text: str) -> str:
        return f'<div class="math">{math_html(text, display=True)}</div>\n'


def render_markdown(source: str, attachments: dict | None = None) -> str:
    markdown = mistune.create_markdown(
        renderer=_SafeRenderer(attachments), escape=True, plugins=["table", "strikethrough", "math"]
    )
    mistune.plugins.math.math_in_list(markdown)
    mistune.plugins.math.math_in_quote(markdown)
    html = markdown(source)
    assert isinstance(html, str)  # a renderer given: mistune renders text, not its token list
    return html


def _image_data_uri(url: str, attachments: dict) -> str | None:
    if url.startswith("attachment:"):
        bundle = attachments.get(url[len("attachment:") :]) or {}
        for mime in IMAGE_TYPES:
            data = bundle.get(mime)
            if isinstance(data, str) and _is_base64(data):
                return f"data:{mime};base64,{''.join(data.split())}"
        return None
    match = re.fullmatch(r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=\s]+)", url)
    return f"data:{match[1]};base64,{''.join(match[2].split())}" if match and _is_base64(match[2]) else None


def _is_base64(data: str) -> bool:
    try:
        base64.b64decode("".join(data.split()), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


# ---- math ------------------------------------------------------------------------------------------

# MathML that latex2mathml produces and Chromium renders; anything else makes the formula plain text.
MATH_ELEMENTS = {
    "math",
    "mrow",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "mspace",
    "msub",
    "msup",
    "msubsup",
    "mfrac",
    "msqrt",
    "mroot",
    "munder",
    "mover",
    "munderover",
    "mtable",
    "mtr",
    "mtd",
    "mstyle",
    "mpadded",
    "mphantom",
    "menclose",
    "merror",
    "mmultiscripts",
    "mprescripts",
    "none",
    "semantics",
}
MATH_ATTRIBUTES = {
    "display",
    "mathvariant",
    "mathsize",
    "displaystyle",
    "scriptlevel",
    "rowspacing",
    "columnspacing",
    "columnalign",
    "rowalign",
    "columnlines",
    "rowlines",
    "stretchy",
    "fence",
    "separator",
    "lspace",
    "rspace",
    "width",
    "height",
    "depth",
    "voffset",
    "minsize",
    "maxsize",
    "accent",
    "accentunder",
    "movablelimits",
    "linethickness",
    "notation",
    "form",
    "largeop",
    "symmetric",
    "frame",
    "framespacing",
    "align",
    "mathcolor",
    "mathbackground",
}
SAFE_ATTRIBUTE_VALUE = re.compile(r"[A-Za-z0-9 .#%+-]*")


def math_html(tex: str, display: bool) -> str:
    """TeX as MathML, re-serialised from latex2mathml's element tree through allow-lists (its own
    string output passes \\text{...} through unescaped); TeX it cannot convert stays as text."""
    try:
        element = convert_to_element(tex, display="block" if display else "inline")
        return '<math xmlns="http://www.w3.org/1998/Math/MathML"' + _math_node(element)[len("<math") :]
    except Exception:  # latex2mathml raises many kinds on bad TeX; the student still sees their formula
        delimiter = "$$" if display else "$"
        return f'<code class="tex">{esc(delimiter + tex + delimiter)}</code>'


def _math_node(element) -> str:
    tag = element.tag
    if tag not in MATH_ELEMENTS:
        raise ValueError(f"unexpected MathML element {tag!r}")
    attributes = "".join(
        f' {name}="{attr(value)}"'
        for name, value in element.attrib.items()
        if name in MATH_ATTRIBUTES and SAFE_ATTRIBUTE_VALUE.fullmatch(str(value))
    )
    inner = esc(html.unescape(element.text or "")) + "".join(
        _math_node(child) + esc(html.unescape(child.tail or "")) for child in element
    )
    return f"<{tag}{attributes}>{inner}</{tag}>"


# ---- helpers -------------------------------------------------------------------------------------


def esc(text) -> str:
    """Text content (quotes need no escaping outside attributes)."""
    return html.escape(str(text), quote=False)


def attr(text) -> str:
    """An attribute value, always written between double quotes."""
    return html.escape(str(text), quote=True)
