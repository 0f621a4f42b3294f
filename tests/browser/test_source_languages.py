"""A source's journey in Simplified Chinese, Uyghur and Arabic in Chromium, JavaScript
off, at a desktop width and at 360 CSS px: every page is in the chosen language and
direction, its heading is drawn with a font of that script (not boxes standing for
missing glyphs), and it never scrolls sideways. A screenshot of each page's first screen
(800 px high: what a reader sees on arrival) is taken on every run; `make screenshots`
keeps them in docs/screenshots/ (lang-<tag>-<step>-<width>.png).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.axe import LAYOUT
from tests.browser.conftest import Site
from tests.browser.kit import keep_screenshot
from tests.helpers import reply_service
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.models import Source
from tipbox.web.locales import BY_CODE, LANGUAGE_COOKIE

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WIDTHS = {"desktop": 1000, "360": 360}

# What each language needs drawn, and a reply a journalist of the newsroom might write in
# it ("Thank you. Which office did the documents come from?").
SCRIPTS = {
    "zh_Hans": ("Noto Sans CJK SC", "谢谢。这些文件来自哪个办公室？"),
    "ug": ("Arabic", "رەھمەت. بۇ ھۆججەتلەر قايسى ئىدارىدىن كەلگەن؟"),
    "ar": ("Arabic", "شكرًا لك. من أي مكتب جاءت هذه الوثائق؟"),
}
FONT_PACKAGES = "fonts-noto-cjk and fonts-noto-core"


def require_script_fonts() -> None:
    """The Noto fonts .ci/run installs; without them Chromium may draw boxes."""
    found = {p.name for d in ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/truetype/noto")
             if Path(d).is_dir() for p in Path(d).iterdir()}
    if any(name.startswith("NotoSansCJK") for name in found) and \
            any("Arabic" in name for name in found):
        return
    problem = f"the fonts are missing: sudo apt-get install {FONT_PACKAGES}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must draw Chinese and Arabic script, but {problem} (see .ci/run)")
    pytest.skip(f"screenshots in other scripts skipped: {problem}")


def heading_fonts(page: Any, devtools: Any) -> set[str]:
    """The fonts Chromium drew the page's <h1> with (the DevTools protocol says which)."""
    devtools.send("DOM.enable")
    devtools.send("CSS.enable")
    root = devtools.send("DOM.getDocument")["root"]["nodeId"]
    node = devtools.send("DOM.querySelector", {"nodeId": root, "selector": "h1"})["nodeId"]
    fonts = devtools.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {str(f["familyName"]) for f in fonts}


class Journey:
    """One tab through the source's pages, checked and photographed at each."""

    def __init__(self, chromium: Any, site: Site, code: str, shots: Path) -> None:
        self.language = BY_CODE[code]
        self.font = SCRIPTS[code][0]
        self.context = chromium.new_context(java_script_enabled=False,
                                            viewport={"width": WIDTHS["desktop"], "height": 800})
        self.context.add_cookies([{"name": LANGUAGE_COOKIE, "value": code, "url": site.url}])
        self.page = self.context.new_page()
        self.devtools = self.context.new_cdp_session(self.page)
        self.shots = shots
        self.taken: list[str] = []

    def shoot(self, step: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        assert page.evaluate("() => [document.documentElement.lang, document.documentElement.dir]"
                             ) == [self.language.tag, self.language.dir], step
        fonts = heading_fonts(page, self.devtools)
        assert any(self.font in family for family in fonts), (step, fonts)
        for width_name, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 800})
            assert page.evaluate(LAYOUT) == [], (step, width_name)
            shot = self.shots / f"lang-{self.language.tag}-{step}-{width_name}.png"
            page.screenshot(path=str(shot))
            keep_screenshot(shot)
            self.taken.append(shot.name)
        page.set_viewport_size({"width": WIDTHS["desktop"], "height": 800})


@pytest.fixture
def journey(chromium: Any, site: Site, request: pytest.FixtureRequest,
            tmp_path: Path) -> Iterator[Journey]:
    require_script_fonts()
    trip = Journey(chromium, site, request.param, tmp_path)
    yield trip
    trip.context.close()


@pytest.mark.parametrize("journey", list(SCRIPTS), indirect=True)
def test_the_source_journey_reads_in_its_own_script_at_desktop_and_phone_widths(
        journey: Journey, site: Site) -> None:
    page = journey.page
    page.goto(site.url + "/")
    journey.shoot("1-landing")
    page.goto(site.url + "/generate")
    journey.shoot("2-codename")
    with page.expect_navigation():
        page.click("form[action='/create'] button[type=submit]")
    journey.shoot("3-submit")
    page.fill("#message", "文件在第四页。 — الوثائق في الصفحة الرابعة.")
    with page.expect_navigation():
        page.click("#submit-form button[type=submit]")
    assert page.locator(".card.success").count() == 1
    journey.shoot("4-receipt")

    settings = Settings.from_env(site.env)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as db:
        source_id = db.query(Source).one().id
    engine.dispose()
    reply = SCRIPTS[journey.language.code][1]
    reply_service(settings).send(source_id, None, reply)
    page.goto(site.url + "/submit")
    assert page.inner_text(".reply-text") == reply
    journey.shoot("5-replies")
    assert len(journey.taken) == 10
