"""axe-core finds nothing on any page of either interface, in English, Arabic (right to
left) and Simplified Chinese, with JavaScript on and off; every page has one `<h1>` and
never scrolls sideways. JavaScript-off pages are scanned 320 CSS px wide (Tor Browser at
"Safest" on a small phone), JavaScript-on pages 1000 px wide.

Both servers are real (`tipbox serve`), of a demo instance, so every page carries the
demo banner too. A source walks the whole journey in the browser: the landing page, the
guide, a codename, a submission and its receipt, replies, the two confirmation pages and
the notice after deleting, a file over the limit (413), a form sent too late, a page
that does not exist, logging out and in again, a wrong codename, an ended session. A
journalist who is an admin logs in (after a refused log-in) and opens the inbox, a
source, a reply sent, the keys, the accounts (with new credentials shown), the audit log,
the "confirm it is you" page and a page that does not exist. Each page is scanned with
every rule axe-core ships but the experimental ones; any violation of any impact fails.
The page gunicorn answers itself (a request line too long) is scanned too.

axe-core does not judge focus rings; the last test here does, pixel by pixel, against
WCAG 2.2's Focus Appearance.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select

from tests.browser.axe import ScanTab, require_axe
from tests.browser.kit import require_chromium
from tests.browser.pixels import contrast, decode_png
from tests.e2e.server import TIPBOX, HttpSource, tipbox_server
from tests.helpers import reply_service, require_browser_encryption
from tipbox.config import MIB, Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.models import Source
from tipbox.web.locales import BY_CODE, LANGUAGE_COOKIE

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LOCALES = ["en", "ar", "zh_Hans"]
MODES = [pytest.param(True, id="js-on"), pytest.param(False, id="js-off")]
UPLOAD_LIMIT = 1 * MIB
# Tor Browser at "Safest" on a small phone; the JavaScript-on tabs stand for a desktop.
NARROW, WIDE = 320, 1000


@dataclass(frozen=True)
class Instance:
    source_url: str
    newsroom_url: str
    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def add_admin(self, name: str) -> tuple[str, str]:
        """`tipbox users add --admin`: the passphrase and TOTP secret it prints."""
        return credentials(run_tipbox(self.env, "users", "add", "--admin", name))

    def newest_source(self) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            with make_session_factory(engine)() as db:
                return int(db.scalar(select(func.max(Source.id))) or 0)
        finally:
            engine.dispose()


def run_tipbox(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([TIPBOX, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def credentials(printed: str) -> tuple[str, str]:
    passphrase = re.search(r"Passphrase:\s+(.+)", printed)
    secret = re.search(r"TOTP secret:\s+(\S+)", printed)
    assert passphrase and secret, printed
    return passphrase.group(1).strip(), secret.group(1)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """A demo instance (`tipbox demo --no-serve`) served by both interfaces, with a 1 MiB
    upload limit (so the 413 page is cheap to reach) and a retention rule (so the inbox
    shows its extra column), and one source that has sent a message."""
    require_chromium()
    require_axe()
    root = tmp_path_factory.mktemp("a11y")
    (root / "tmp").mkdir()
    env = {"TIPBOX_DATA_DIR": str(root / "data"), "TIPBOX_KEYS_DIR": str(root / "keys"),
           "TIPBOX_SCRYPT_N": "16", "TMPDIR": str(root / "tmp"),
           "TIPBOX_MAX_SUBMISSION_BYTES": str(UPLOAD_LIMIT), "TIPBOX_RETENTION_DAYS": "30"}
    run_tipbox(env, "demo", "--no-serve", "--offline-dir", str(root / "offline"))
    with tipbox_server("source", env, root / "source.log") as source, \
            tipbox_server("newsroom", env, root / "newsroom.log") as newsroom:
        first = HttpSource(source.url)
        first.new_codename()
        assert first.submit("The first tip.", [(b"a file", "notes.txt")])[0] == 303
        yield Instance(source.url, newsroom.url, env)


@pytest.fixture
def open_tab(chromium: Any, instance: Instance) -> Iterator[Any]:
    """Opens an ScanTab with the reader's language already chosen in the picker's cookie;
    closes it at the end."""
    tabs: list[ScanTab] = []

    def open_tab(code: str, javascript: bool) -> ScanTab:
        tab = ScanTab.open(chromium, javascript, WIDE if javascript else NARROW)
        tab.page.context.add_cookies([{"name": LANGUAGE_COOKIE, "value": code, "url": url}
                                      for url in (instance.source_url, instance.newsroom_url)])
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.close()


def check(tab: ScanTab, code: str) -> None:
    language = BY_CODE[code]
    assert tab.html_lang_dir() == (language.tag, language.dir), tab.page.url
    assert tab.problems == {}, "\n".join(
        f"{page}: {problem}" for page, found in tab.problems.items() for problem in found)


# --- the source interface --------------------------------------------------------------


@pytest.mark.parametrize("javascript", MODES)
@pytest.mark.parametrize("code", LOCALES)
def test_every_source_page_passes_axe(open_tab: Any, instance: Instance, code: str,
                                      javascript: bool, tmp_path: Path) -> None:
    if javascript:
        require_browser_encryption()
    tab: ScanTab = open_tab(code, javascript)
    page, url = tab.page, instance.source_url
    page.goto(url + "/")
    tab.scan("landing")
    page.goto(url + "/guide")
    tab.scan("guide")
    page.goto(url + "/generate")
    tab.scan("codename")
    codename = page.inner_text("#codename-shown").strip()
    with page.expect_navigation():
        page.click("form[action='/create'] button[type=submit]")
    assert page.url == url + "/submit"
    # The site's own scripts ran only with JavaScript on.
    assert page.is_visible("#encrypt-note") is javascript
    tab.scan("submit, first time")

    page.fill("#message", "The minutes are on page 4.")
    page.click("#submit-form button[type=submit]")
    page.wait_for_selector(".card.success", timeout=60_000)
    tab.scan("receipt")

    replies = reply_service(instance.settings)
    for text in ("Thanks. Which office was it?", "شكرا. أي مكتب؟ 谢谢。"):
        replies.send(instance.newest_source(), None, text)
    page.goto(url + "/submit")
    assert page.locator(".reply-text").count() == 2
    tab.scan("replies")
    page.click("a[href$='/delete']")
    tab.scan("confirm: delete this reply")
    with page.expect_navigation():
        page.click("form[action$='/delete'] button[type=submit]")
    assert page.locator(".reply-text").count() == 1
    tab.scan("a reply deleted")
    page.goto(url + "/replies/delete-all")
    tab.scan("confirm: delete all replies")

    too_big = tmp_path / "recording.bin"
    too_big.write_bytes(b"\0" * (UPLOAD_LIMIT + MIB))
    page.goto(url + "/submit")
    page.set_input_files("#files", str(too_big))
    with page.expect_navigation(timeout=60_000):
        if javascript:  # the form as a browser sends it, past encrypt.js
            page.evaluate("() => document.getElementById('submit-form').submit()")
        else:
            page.click("#submit-form button[type=submit]")
    tab.scan("too large (413)")

    page.goto(url + "/submit")
    page.evaluate("() => { document.querySelector('#submit-form [name=csrf_token]')"
                  ".value = 'from-a-page-left-open-too-long'; }")
    with page.expect_navigation():
        if javascript:
            page.evaluate("() => document.getElementById('submit-form').submit()")
        else:
            page.click("#submit-form button[type=submit]")
    tab.scan("form sent too late")
    page.goto(url + "/no-such-page")
    tab.scan("not found (404)")
    page.goto(url + "/?" + "q" * 9000)
    tab.scan("request line too long (gunicorn)")
    page.goto(url + "/submit")

    with page.expect_navigation():
        page.click("form[action='/logout'] button[type=submit]")
    tab.scan("logged out")
    page.goto(url + "/login")
    tab.scan("log in")
    page.fill("#codename", "wrong words in a row")
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    tab.scan("wrong codename")
    page.fill("#codename", codename)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    assert page.url == url + "/submit"
    tab.scan("returning")
    page.context.clear_cookies(name=re.compile(r"^(?!" + LANGUAGE_COOKIE + "$)"))
    page.goto(url + "/submit")
    assert "expired=1" in page.url
    tab.scan("session ended")
    check(tab, code)
    assert len(tab.scanned) == 18


# --- the newsroom interface ------------------------------------------------------------


@pytest.mark.parametrize("javascript", MODES)
@pytest.mark.parametrize("code", LOCALES)
def test_every_newsroom_page_passes_axe(open_tab: Any, instance: Instance, code: str,
                                        javascript: bool) -> None:
    name = f"admin-{code.lower().replace('_', '-')}-{'js' if javascript else 'nojs'}"
    passphrase, secret = instance.add_admin(name)
    spare = f"spare-{name}"
    instance.add_admin(spare)
    tab: ScanTab = open_tab(code, javascript)
    page, url = tab.page, instance.newsroom_url
    page.goto(url + "/login")
    tab.scan("log in")
    page.fill("#username", "nobody")
    page.fill("#passphrase", "not the passphrase")
    page.fill("#code", "000000")
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    tab.scan("log-in refused")
    page.fill("#username", name)
    page.fill("#passphrase", passphrase)
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    assert page.url == url + "/"
    tab.scan("inbox")
    page.goto(url + "/?starred_first=1")
    tab.scan("inbox, starred first")

    with page.expect_navigation():
        page.click("table.inbox a[href^='/sources/']")
    tab.scan("source")
    page.fill("#text", "Thank you. Can you tell us more?")
    with page.expect_navigation():
        page.click("form[action$='/reply'] button[type=submit]")
    tab.scan("reply sent")

    for path, title in (("/admin/keys", "keys"), ("/admin/accounts", "accounts"),
                        ("/admin/audit", "audit log"),
                        ("/admin/confirm?next=/admin/keys", "confirm it is you"),
                        ("/no-such-page", "not found (404)")):
        page.goto(url + path)
        tab.scan(title)
    page.goto(url + "/admin/accounts")
    with page.expect_navigation():
        page.click(f"form[action='/admin/accounts/{spare}/reset'] button[type=submit]")
    tab.scan("accounts, new credentials shown")
    with page.expect_navigation():
        page.click("form[action='/logout'] button[type=submit]")
    tab.scan("logged out")
    check(tab, code)
    assert len(tab.scanned) == 13


# --- the focus ring --------------------------------------------------------------------

FOCUSABLE = "a[href], button, input:not([type=hidden]), textarea, select, [tabindex='0']"
MARGIN = 8  # CSS px around a control: where its ring is drawn


def ring_strips(box: dict[str, float], view: dict[str, int]) -> list[dict[str, float]]:
    """The four strips, MARGIN px wide, just outside a control's box (inside the window):
    where its focus ring is drawn. Only these are compared, so a control that changes
    colour inside its box is not credited with it, and a large one is quick to check."""
    left, top = max(box["x"] - MARGIN, 0), max(box["y"] - MARGIN, 0)
    right = min(box["x"] + box["width"] + MARGIN, view["width"])
    bottom = min(box["y"] + box["height"] + MARGIN, view["height"])
    inner_top, inner_bottom = max(box["y"], top), min(box["y"] + box["height"], bottom)
    strips = [{"x": left, "y": top, "width": right - left, "height": inner_top - top},
              {"x": left, "y": inner_bottom, "width": right - left,
               "height": bottom - inner_bottom},
              {"x": left, "y": inner_top, "width": max(box["x"], left) - left,
               "height": inner_bottom - inner_top},
              {"x": min(box["x"] + box["width"], right), "y": inner_top,
               "width": right - min(box["x"] + box["width"], right),
               "height": inner_bottom - inner_top}]
    return [s for s in strips if s["width"] >= 1 and s["height"] >= 1]


def focus_ring_problems(page: Any) -> list[str]:
    """Each control that can take the focus, photographed without and with it: the pixels
    that change with a contrast of at least 3:1 must cover at least the area of a 2 CSS px
    thick line around the control (WCAG 2.2, 2.4.13 Focus Appearance)."""
    problems = []
    controls = page.locator(FOCUSABLE)
    for index in range(controls.count()):
        control = controls.nth(index)
        if not control.is_visible():
            continue
        page.evaluate("() => document.activeElement?.blur()")
        # In the middle of the window, so that no side of its ring is cut off.
        control.evaluate("e => e.scrollIntoView({block: 'center', inline: 'center'})")
        box, view = control.bounding_box(), page.viewport_size
        strips = ring_strips(box, view)
        before = [decode_png(page.screenshot(clip=strip)) for strip in strips]
        control.evaluate("e => e.focus({focusVisible: true, preventScroll: true})")
        after = [decode_png(page.screenshot(clip=strip)) for strip in strips]
        changed = sum(1 for old, new in zip(before, after, strict=True)
                      for a, b in zip(old.pixels, new.pixels, strict=True)
                      if a != b and contrast(a, b) >= 3)
        needed = 4 * (min(box["width"], view["width"]) + min(box["height"], view["height"]))
        if changed < needed:
            label = control.evaluate("e => e.outerHTML.slice(0, 80)")
            problems.append(f"{label}: {changed} px change with 3:1, {needed:.0f} needed")
    return problems


def test_every_control_shows_a_focus_ring_that_meets_wcag_focus_appearance(
        chromium: Any, instance: Instance) -> None:
    """In Arabic: the ring is the same in every language, and right to left is the layout
    where a side of it is likelier to be cut off."""
    code = "ar"
    context = chromium.new_context(viewport={"width": WIDE, "height": 900})
    context.add_cookies([{"name": LANGUAGE_COOKIE, "value": code, "url": url}
                         for url in (instance.source_url, instance.newsroom_url)])
    page = context.new_page()
    found: dict[str, list[str]] = {}
    checked = 0

    def check_page(name: str) -> None:
        nonlocal checked
        page.wait_for_load_state("load")
        checked += page.locator(FOCUSABLE).count()
        if problems := focus_ring_problems(page):
            found[name] = problems

    try:
        page.goto(instance.source_url + "/")
        check_page("source: landing (with the demo banner)")
        page.goto(instance.source_url + "/generate")
        with page.expect_navigation():
            page.click("form[action='/create'] button[type=submit]")
        check_page("source: submit")
        name = f"focus-{code}"
        passphrase, secret = instance.add_admin(name)
        page.goto(instance.newsroom_url + "/login")
        page.fill("#username", name)
        page.fill("#passphrase", passphrase)
        page.fill("#code", pyotp.TOTP(secret).now())
        with page.expect_navigation():
            page.click("form[action='/login'] button[type=submit]")
        check_page("newsroom: inbox")
        with page.expect_navigation():
            page.click("table.inbox a[href^='/sources/']")
        check_page("newsroom: source")
    finally:
        context.close()
    assert checked > 60
    assert found == {}, "\n".join(f"{page}: {p}" for page, ps in found.items() for p in ps)
