"""The source guide (docs/source-guide.md) as a page of the site.

The guide is written in the small part of Markdown it needs: headings, paragraphs, lists
with "- ", **bold** and `code`. This renders exactly that, escaping everything else, so
the page needs no Markdown library and can never carry markup the guide did not mean.
"""

from __future__ import annotations

import re
from pathlib import Path

from markupsafe import Markup, escape

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
)


def _inline(text: str) -> str:
    html = str(escape(" ".join(text.split())))
    for pattern, replacement in _INLINE:
        html = pattern.sub(replacement, html)
    return html


def _block(lines: list[str]) -> str:
    first = lines[0]
    heading = re.match(r"(#{1,3}) (.*)", first)
    if heading and len(lines) == 1:
        level = len(heading.group(1))
        return f"<h{level}>{_inline(heading.group(2))}</h{level}>"
    if first.startswith("- "):
        items: list[list[str]] = []
        for line in lines:
            if line.startswith("- "):
                items.append([line[2:]])
            else:
                items[-1].append(line)
        return "<ul>" + "".join(f"<li>{_inline(' '.join(i))}</li>" for i in items) + "</ul>"
    return f"<p>{_inline(' '.join(lines))}</p>"


def render_guide(markdown: str) -> Markup:
    """The guide's Markdown as HTML; blocks are separated by blank lines."""
    blocks = [block.splitlines() for block in re.split(r"\n\s*\n", markdown.strip())]
    return Markup("\n".join(_block(lines) for lines in blocks if lines))  # noqa: S704 - escaped above


def load_guide(path: Path) -> Markup:
    return render_guide(path.read_text(encoding="utf-8"))
