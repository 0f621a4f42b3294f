"""Printing the codename page gives a card with the numbered words and nothing that says
where it came from (no site name, no language list, no buttons)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Site

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_printed_codename_page_shows_the_numbered_words_and_nothing_else(
        chromium: Any, site: Site) -> None:
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "/generate")
        words = [str(w).strip() for w in page.locator("ol.codename-words li").all_inner_texts()]
        assert len(words) == 7
        assert page.is_visible("header.site") and page.is_visible("nav.languages")

        page.emulate_media(media="print")
        assert page.locator("ol.codename-words li").all_inner_texts() == words
        assert page.is_visible("ol.codename-words")
        for hidden in ("header.site", "nav.languages", "footer.site", "form", "ul.advice"):
            assert not page.is_visible(hidden), hidden
        printed = str(page.inner_text("body"))
        assert "tipbox" not in printed and "Give me a different codename" not in printed
    finally:
        context.close()
