"""Every page of both interfaces, rendered with JavaScript off in every offered language:
the right `<html lang dir>`, and no English sentence left where the language has a
translation (each page is compared with the same page in English)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import ACTOR
from tests.helpers import Clock, SourceBrowser, csrf_from, log_in
from tests.test_catalogs import NEWSROOM_LOCALES
from tipbox.accounts import AccountService
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.key_registry import StaticKeyring
from tipbox.models import Source
from tipbox.replies import ReplyService
from tipbox.storage import CiphertextStore
from tipbox.web.locales import BY_CODE, LANGUAGE_COOKIE, LANGUAGES
from tipbox.web.newsroom import create_newsroom_app

# Pages are fetched by name so that a failure says which one.
Page = Callable[[FlaskClient], TestResponse]
TEXT_ATTRIBUTES = re.compile(r'(?:placeholder|aria-label|title)="([^"]*)"')


def visible_texts(page: str) -> set[str]:
    """Text nodes and the attributes a person reads or hears, whitespace folded. The
    language picker (each language named in itself) and the guide's article are left out:
    the picker is meant to be the same in every language, and the guide's translations
    are checked in test_source_guide.py (they keep commands and names such as Tor Browser)."""
    page = re.sub(r'<nav class="languages".*?</nav>', "", page, flags=re.S)
    page = re.sub(r'<article class="card guide".*?</article>', "", page, flags=re.S)
    page = re.sub(r"<script.*?</script>|<title>.*?</title>", "", page, flags=re.S)
    # The audit log's entries are records, kept as written (in English), not page texts.
    page = re.sub(r'<table class="inbox audit">.*?</table>', "", page, flags=re.S)
    texts = set(TEXT_ATTRIBUTES.findall(page))
    texts.update(re.split(r"<[^>]+>", page))
    return {" ".join(html.unescape(t).split()) for t in texts} - {""}


def english_sentences(page: str, english_page: str, data: set[str]) -> set[str]:
    """What this page shows exactly as the English page does, in two or more English
    words, apart from data (names, designations, key user ids) that no catalog translates."""
    same = visible_texts(page) & visible_texts(english_page)
    return {t for t in same - data
            if "@" not in t and len(re.findall(r"\b[A-Za-z][a-z]+\b", t)) >= 2}


def html_lang_dir(page: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]+)" dir="(ltr|rtl)">', page)
    assert match, "page has no <html lang dir>"
    return match.group(1), match.group(2)


def render_all(client: FlaskClient, pages: dict[str, Page], code: str) -> dict[str, str]:
    client.set_cookie(LANGUAGE_COOKIE, code)
    rendered = {}
    for name, fetch in pages.items():
        response = fetch(client)
        assert response.status_code < 500, (code, name)
        rendered[name] = response.get_data(as_text=True)
    return rendered


def check_every_language(client: FlaskClient, pages: dict[str, Page], data: set[str],
                         translated: Callable[[str], bool]) -> None:
    english = render_all(client, pages, "en")
    for name, page in english.items():
        assert page.count("<h1") == 1, f"{name}: a page has one <h1>"
        assert "<th></th>" not in page, f"{name}: a table header names its column"
    for language in LANGUAGES:
        rendered = render_all(client, pages, language.code)
        for name, page in rendered.items():
            assert html_lang_dir(page) == (language.tag, language.dir), (language.code, name)
            if language.code != "en" and translated(language.code):
                left = english_sentences(page, english[name], data)
                assert left == set(), (language.code, name)


# --- the source interface --------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    codename: str
    reply_id: str


@pytest.fixture
def journey(browser: SourceBrowser, settings: Settings) -> Iterator[Journey]:
    """A logged-in source who has sent a message and has one reply waiting."""
    codename = browser.new_codename()
    assert browser.submit("a tip").status_code == 303
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    with db() as s:
        source_id = s.query(Source).one().id
    replies = ReplyService(db, CiphertextStore(settings.store_dir),
                           StaticKeyring(load_keyring(settings.keys_dir, settings.gnupg_dir)))
    yield Journey(codename, replies.send(source_id, None, REPLY))
    engine.dispose()


REPLY = "Thanks. Which office was it?"


def source_pages(journey: Journey) -> dict[str, Page]:
    def logged_out(client: FlaskClient) -> TestResponse:
        browser = SourceBrowser(client)
        browser.login(journey.codename)
        return browser.logout()

    return {
        "home": lambda c: c.get("/"),
        "codename": lambda c: c.get("/generate"),
        "log-in": lambda c: c.get("/login"),
        "session ended": lambda c: c.get("/login?expired=1"),
        "wrong codename": lambda c: c.post("/login", data={
            "csrf_token": csrf_from(c.get("/login").get_data(as_text=True)),
            "codename": "wrong words here"}),
        "guide": lambda c: c.get("/guide"),
        "submit": lambda c: SourceBrowser(c).login(journey.codename) and c.get("/submit"),
        "delete a reply": lambda c: c.get(f"/replies/{journey.reply_id}/delete"),
        "delete all replies": lambda c: c.get("/replies/delete-all"),
        "not sent": lambda c: SourceBrowser(c).submit("x", token="not-a-token"),
        "not found": lambda c: c.get("/no-such-page"),
        "bad request": lambda c: c.post("/create", data={}),
        "logged out": logged_out,
    }


def test_every_source_page_is_in_the_readers_language(browser: SourceBrowser,
                                                       journey: Journey) -> None:
    check_every_language(browser.client, source_pages(journey), data={REPLY},
                         translated=lambda _code: True)


# --- the newsroom interface ------------------------------------------------------------


def newsroom_pages(source_id: int) -> dict[str, Page]:
    return {
        "inbox": lambda c: c.get("/"),
        "inbox, starred first": lambda c: c.get("/?starred_first=1"),
        "source": lambda c: c.get(f"/sources/{source_id}"),
        "confirm it is you": lambda c: c.get("/admin/confirm?next=/admin/keys"),
        "keys": lambda c: c.get("/admin/keys"),
        "accounts": lambda c: c.get("/admin/accounts"),
        "audit log": lambda c: c.get("/admin/audit"),
        "not found": lambda c: c.get("/no-such-page"),
    }


def test_every_newsroom_page_is_in_the_readers_language(
        settings: Settings, accounts: AccountService, clock: Clock,
        browser: SourceBrowser) -> None:
    browser.new_codename()
    assert browser.submit("a tip").status_code == 303
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as s:
        source = s.query(Source).one()
        source_id, designation = source.id, source.designation
    engine.dispose()
    app = create_newsroom_app(settings.with_overrides(retention_days=30), accounts=accounts)
    admin = app.test_client()
    assert log_in(admin, accounts.create("boss", ACTOR, admin=True), clock)[0] == 302
    check_every_language(admin, newsroom_pages(source_id), data={designation, "boss"},
                         translated=lambda code: code in NEWSROOM_LOCALES)

    anonymous = app.test_client()
    check_every_language(anonymous, {"log-in": lambda c: c.get("/login")}, data=set(),
                         translated=lambda code: code in NEWSROOM_LOCALES)


def test_every_language_offered_is_one_the_site_has() -> None:
    assert set(BY_CODE) == {language.code for language in LANGUAGES}
