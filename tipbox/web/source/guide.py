"""The source guide (docs/source-guide.md and its translations) as a page of the site.

The guide is written in the small part of Markdown it needs: headings, paragraphs, lists
with "- ", **bold** and `code`. This renders exactly that, escaping everything else, so
the page needs no Markdown library and can never carry markup the guide did not mean.

Each translation, docs/source-guide/<code>.md, starts with a line that records the
SHA-256 of the English file it was translated from (what ``sha256sum
docs/source-guide.md`` prints). When the English has changed since, the page still
shows the translation, since an older guide in the reader's language helps more than
none, but says that the English is newer (docs/translating.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape

ENGLISH = "en"
ENGLISH_FILE = "source-guide.md"
TRANSLATIONS_FOLDER = "source-guide"
_MADE_FROM = re.compile(r"<!-- source: sha256 ([0-9a-f]{64}) -->\r?\n")

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
)
_HEADING = re.compile(r"(#{1,3}) (.*)")


def _inline(text: str) -> str:
    html = str(escape(" ".join(text.split())))
    for pattern, replacement in _INLINE:
        html = pattern.sub(replacement, html)
    return html


def _blocks(markdown: str) -> list[list[str]]:
    """Blocks are separated by blank lines."""
    return [lines for lines in (block.splitlines() for block in
                                re.split(r"\n\s*\n", markdown.strip())) if lines]


def _list_items(lines: list[str]) -> list[str]:
    items: list[list[str]] = []
    for line in lines:
        if line.startswith("- "):
            items.append([line[2:]])
        else:
            items[-1].append(line)
    return [" ".join(item) for item in items]


def _block_kind(lines: list[str]) -> str:
    """h1-h3, ul, or p: what the block renders as."""
    heading = _HEADING.match(lines[0])
    if heading and len(lines) == 1:
        return f"h{len(heading.group(1))}"
    return "ul" if lines[0].startswith("- ") else "p"


def _block(lines: list[str]) -> str:
    kind = _block_kind(lines)
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in _list_items(lines)) + "</ul>"
    if kind == "p":
        return f"<p>{_inline(' '.join(lines))}</p>"
    heading = _HEADING.match(lines[0])
    assert heading  # noqa: S101 - _block_kind said so
    return f"<{kind}>{_inline(heading.group(2))}</{kind}>"


def render_guide(markdown: str) -> Markup:
    """The guide's Markdown as HTML."""
    return Markup("\n".join(_block(lines) for lines in _blocks(markdown)))  # noqa: S704 - escaped above


def block_structure(markdown: str) -> list[str]:
    """The guide's shape, to compare a translation with the English: each block's kind,
    a list with its number of items (``ul×4``), so a dropped section or item shows."""
    return [f"ul×{len(_list_items(lines))}" if _block_kind(lines) == "ul" else
            _block_kind(lines) for lines in _blocks(markdown)]


def digest(english: str) -> str:
    """What a translation records: the SHA-256 of the English file's UTF-8 bytes."""
    return hashlib.sha256(english.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Translation:
    """One translation's Markdown, without its first line, and the English it was made from."""

    code: str
    made_from: str  # digest() of the English it was translated from
    markdown: str

    @classmethod
    def parse(cls, code: str, text: str) -> Translation:
        found = _MADE_FROM.match(text)
        if found is None:
            raise ValueError(
                f"{TRANSLATIONS_FOLDER}/{code}.md must start with the line "
                "'<!-- source: sha256 <sha256sum of docs/source-guide.md> -->' that says "
                "which English text it was made from (docs/translating.md)")
        return cls(code, found.group(1), text[found.end():])


@dataclass(frozen=True)
class Guide:
    """The guide as one reader gets it."""

    html: Markup
    language: str  # the catalog code of the text shown: the reader's, or "en"
    stale: bool = False  # a translation of an older English guide


class GuideLibrary:
    """The English guide and its translations. Each translation is checked when read but
    rendered when first asked for: most processes serve few languages, and every app
    built (each test builds one) would otherwise render all twelve."""

    def __init__(self, english: str, translations: Mapping[str, str]) -> None:
        self.english = Guide(render_guide(english), ENGLISH)
        self.made_from = digest(english)
        self.sources = {code: Translation.parse(code, text)
                        for code, text in translations.items()}
        # Filled on first use; two threads rendering the same language at once only
        # store equal values.
        self._rendered: dict[str, Guide] = {}

    @classmethod
    def load(cls, docs_dir: Path) -> GuideLibrary:
        """docs/source-guide.md and every docs/source-guide/<code>.md. Bytes are decoded
        as they are, without newline translation, so the digest is sha256sum's."""
        folder = docs_dir / TRANSLATIONS_FOLDER
        return cls((docs_dir / ENGLISH_FILE).read_bytes().decode("utf-8"),
                   {path.stem: path.read_bytes().decode("utf-8")
                    for path in sorted(folder.glob("*.md"))})

    def for_language(self, code: str) -> Guide:
        """The reader's translation if there is one, else the English."""
        translation = self.sources.get(code)
        if translation is None:
            return self.english
        guide = self._rendered.get(code)
        if guide is None:
            guide = Guide(render_guide(translation.markdown), code,
                          stale=translation.made_from != self.made_from)
            self._rendered[code] = guide
        return guide

    def stale(self) -> list[str]:
        """The codes of translations made from an older English guide."""
        return sorted(code for code, t in self.sources.items() if t.made_from != self.made_from)
