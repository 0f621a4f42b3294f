"""The translation catalogs (tipbox/translations/): one per offered language, each
complete for the source interface (and for the newsroom where promised), none fuzzy,
every placeholder as in English, and every one compiles."""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tests.helpers import extracted_texts
from tipbox.web.locales import LANGUAGES, TRANSLATIONS_DIR

# The newsroom interface is translated in these; in the others journalists read English.
NEWSROOM_LOCALES = {"zh_Hans", "ar", "fr", "es"}
# Where a text only journalists and admins read is written.
NEWSROOM_FILES = ("templates/newsroom/", "tipbox/web/newsroom/", "tipbox/key_registry.py")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
TRANSLATED = [language.code for language in LANGUAGES if language.code != "en"]


def catalog(code: str) -> Catalog:
    with (TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=code)


def for_newsroom_only(message: Message) -> bool:
    return all(path.startswith(NEWSROOM_FILES) for path, _line in message.locations)


def forms(message: Message) -> tuple[str, ...]:
    string = message.string
    return tuple(string) if isinstance(string, (tuple, list)) else (string,)


def ids(message: Message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, (tuple, list)) else (message.id,)


def test_every_offered_language_has_a_catalog() -> None:
    found = {p.parent.parent.name for p in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")}
    assert found == {language.code for language in LANGUAGES}


def test_every_catalog_holds_every_text_of_the_pages(tmp_path: Path) -> None:
    """A text added to a page without `make translations` is missing from the catalogs."""
    extracted = extracted_texts(tmp_path)
    for language in LANGUAGES:
        held = {ids(m)[0] for m in catalog(language.code) if m.id}
        assert extracted - held == set(), f"{language.code}: run make translations"


@pytest.mark.parametrize("code", TRANSLATED)
def test_a_catalog_translates_every_text_a_source_reads(code: str) -> None:
    missing = [ids(m)[0] for m in catalog(code)
               if m.id and not all(forms(m))
               and (code in NEWSROOM_LOCALES or not for_newsroom_only(m))]
    assert missing == []


@pytest.mark.parametrize("code", [language.code for language in LANGUAGES])
def test_no_translation_is_fuzzy_or_changes_a_placeholder(code: str) -> None:
    """A fuzzy entry is a guess that gettext would not show; a placeholder that differs
    from the English one would fail at run time or show the wrong number."""
    for message in catalog(code):
        if not message.id:
            continue
        assert not message.fuzzy, ids(message)[0]
        expected = {frozenset(PLACEHOLDER.findall(text)) for text in ids(message)}
        for form in forms(message):
            if form:
                assert frozenset(PLACEHOLDER.findall(form)) in expected, (ids(message)[0], form)
                # A lone % that is not a placeholder breaks the %-formatting.
                assert "%" not in PLACEHOLDER.sub("", form).replace("%%", ""), form


@pytest.mark.parametrize("code", [language.code for language in LANGUAGES])
def test_every_catalog_compiles(code: str) -> None:
    buffer = io.BytesIO()
    write_mo(buffer, catalog(code))
    buffer.seek(0)
    translations = gettext.GNUTranslations(buffer)
    assert translations.ngettext("x", "y", 2) in ("x", "y")  # the plural rule evaluates
