"""Choosing a language: Accept-Language as the first guess, the picker's links (no
JavaScript) as the choice that sticks, kept in a cookie of its own and never in a
server-side session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from tests.helpers import SourceBrowser, csrf_from
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.key_registry import StaticKeyring
from tipbox.models import Source, WebSession
from tipbox.replies import ReplyService
from tipbox.storage import CiphertextStore
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.locales import LANGUAGE_COOKIE, LANGUAGES, match_tag, safe_next
from tipbox.web.source import create_source_app


def html_lang_dir(html: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]+)" dir="(ltr|rtl)">', html)
    assert match, "page has no <html lang dir>"
    return match.group(1), match.group(2)


def session_rows(app: Flask) -> int:
    engine = make_engine(app.config["TIPBOX_SETTINGS"].database_url)
    try:
        with make_session_factory(engine)() as db:
            return db.scalar(select(func.count()).select_from(WebSession)) or 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(("header", "expected"), [
    ("zh-CN,zh;q=0.9", ("zh-Hans", "ltr")),
    ("zh-TW", ("zh-Hant", "ltr")),
    ("zh-Hant-HK", ("zh-Hant", "ltr")),
    ("ug-CN", ("ug", "rtl")),
    ("ar-EG,ar;q=0.8", ("ar", "rtl")),
    ("fa-IR", ("fa", "rtl")),
    ("pt-PT", ("pt-BR", "ltr")),
    ("de-DE,fr;q=0.5", ("fr", "ltr")),
    ("de-DE", ("en", "ltr")),
    ("", ("en", "ltr")),
])
def test_accept_language_is_the_first_guess(client: FlaskClient, header: str,
                                            expected: tuple[str, str]) -> None:
    page = client.get("/", headers={"Accept-Language": header})
    assert html_lang_dir(page.get_data(as_text=True)) == expected


def test_every_page_offers_every_language_named_in_itself(client: FlaskClient) -> None:
    for path in ("/", "/login", "/generate", "/no-such-page"):
        html = client.get(path).get_data(as_text=True)
        for language in LANGUAGES:
            assert f'hreflang="{language.tag}"' in html, (path, language.code)
            assert f">{language.name}</a>" in html, (path, language.code)


def test_a_picker_link_returns_to_its_page_in_the_chosen_language(
        app: Flask, client: FlaskClient) -> None:
    html = client.get("/?from=home", headers={"Accept-Language": "en"}).get_data(as_text=True)
    link = re.search(r'href="(/language/ug\?next=[^"]+)"', html)
    assert link, "no link to Uyghur"
    choose = client.get(link.group(1).replace("&amp;", "&"))
    assert choose.status_code == 303
    assert choose.headers["Location"] == "/?from=home"
    assert session_rows(app) == 0, "choosing a language stored a session"
    cookie = choose.headers["Set-Cookie"]
    assert cookie.startswith(f"{LANGUAGE_COOKIE}=ug;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Expires" not in cookie and "Max-Age" not in cookie  # ends with the browser session
    # The choice beats the browser's own wish, on every later page.
    for path in ("/login", "/", "/generate", "/no-such-page"):
        page = client.get(path, headers={"Accept-Language": "en"})
        assert html_lang_dir(page.get_data(as_text=True)) == ("ug", "rtl"), path


def test_choosing_a_language_keeps_the_pages_free_of_scripts(client: FlaskClient) -> None:
    answer = client.get("/language/ar?next=/")
    assert "script-src" not in answer.headers["Content-Security-Policy"]
    page = client.get("/")
    assert "<script" not in page.get_data(as_text=True)
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]


def test_an_unknown_language_is_ignored(client: FlaskClient) -> None:
    answer = client.get("/language/xx?next=/login")
    assert answer.status_code == 303 and "Set-Cookie" not in answer.headers
    client.set_cookie(LANGUAGE_COOKIE, "../../etc")
    assert html_lang_dir(client.get("/").get_data(as_text=True)) == ("en", "ltr")


# Browsers drop tabs and line breaks from an address (the URL standard), so "/<tab>/x"
# is "//x", another site; a line break in a header was a 500 with a logged traceback.
@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/",
                                    "/\\evil.example", "javascript:alert(1)", "",
                                    "/\t/evil.example", "/\n/evil.example",
                                    "/\r/evil.example", "/\t\\evil.example", "/\x00/x"])
def test_the_picker_never_sends_anyone_to_another_site(client: FlaskClient,
                                                        target: str) -> None:
    assert safe_next(target) == "/"
    answer = client.get("/language/fr", query_string={"next": target})
    assert answer.headers["Location"] == "/"


def test_a_page_that_answered_a_post_links_the_picker_to_the_home_page(
        client: FlaskClient) -> None:
    html = client.post("/create", data={}).get_data(as_text=True)
    assert 'href="/language/fa?next=/"' in html


@pytest.mark.parametrize(("tag", "code"), [
    ("zh", "zh_Hans"), ("zh-SG", "zh_Hans"), ("zh-Hans-CN", "zh_Hans"),
    ("zh-MO", "zh_Hant"), ("zh-HK", "zh_Hant"), ("zh-Hant", "zh_Hant"),
])
def test_chinese_tags_choose_the_script(tag: str, code: str) -> None:
    found = match_tag(tag)
    assert found is not None and found.code == code


def test_the_choice_survives_the_whole_source_journey(browser: SourceBrowser,
                                                      settings: Settings) -> None:
    """Codename, submission, receipt, log-out, log-in, replies: every page, form answer and
    redirect stays in the chosen language, though the session id changes at log-in."""
    client = browser.client
    headers = {"Accept-Language": "en-US,en;q=0.9"}  # what Tor Browser sends

    def in_uyghur(response: TestResponse) -> str:
        html = response.get_data(as_text=True)
        assert html_lang_dir(html) == ("ug", "rtl"), response.request.path
        return html

    in_uyghur(client.get("/language/ug?next=/", headers=headers, follow_redirects=True))
    in_uyghur(client.get("/generate", headers=headers))
    codename = browser.new_codename()
    page = in_uyghur(client.get("/submit", headers=headers))
    assert "يوللاشتىن بۇرۇن" in page  # "Before you send"
    assert browser.submit("a tip").status_code == 303
    receipt = in_uyghur(client.get("/submit", headers=headers))
    assert "رەھمەت. تاپشۇرغىنىڭىز تاپشۇرۇۋېلىندى ۋە شىفىرلاندى." in receipt
    assert "سىز چىقتىڭىز" in in_uyghur(browser.logout())  # "You are logged out"
    in_uyghur(client.get("/login", headers=headers))
    assert browser.login(codename.upper()).status_code == 302
    source_id = _only_source(settings)
    reply_id = _reply_service(settings).send(source_id, None, "Got it. Can you send page 2?")
    replies = in_uyghur(client.get("/submit", headers=headers))
    assert "Got it. Can you send page 2?" in replies
    confirm = in_uyghur(client.get(f"/replies/{reply_id}/delete", headers=headers))
    done = in_uyghur(client.post(f"/replies/{reply_id}/delete",
                                 data={"csrf_token": csrf_from(confirm)},
                                 follow_redirects=True))
    assert "1 جاۋاب ئۆچۈرۈلدى." in done  # "1 reply was deleted."
    in_uyghur(client.get("/no-such-page", headers=headers))
    in_uyghur(browser.logout())


def _only_source(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            return db.scalars(select(Source.id)).one()
    finally:
        engine.dispose()


def _reply_service(settings: Settings) -> ReplyService:
    db = make_session_factory(make_engine(settings.database_url))
    return ReplyService(db, CiphertextStore(settings.store_dir),
                        StaticKeyring(load_keyring(settings.keys_dir, settings.gnupg_dir)))


def test_while_submissions_are_off_the_503_page_can_be_read_in_any_language(
        settings: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "no-keys"
    empty.mkdir()
    offline = create_source_app(settings, keyring=load_keyring(empty, settings.gnupg_dir),
                                browser=BrowserEncryption.off("not under test"))
    client = offline.test_client()
    choose = client.get("/language/zh_Hans?next=/")
    assert choose.status_code == 303  # the picker is not behind the 503 gate
    page = client.get("/")
    assert page.status_code == 503
    html = page.get_data(as_text=True)
    assert html_lang_dir(html) == ("zh-Hans", "ltr")
    assert "目前不接受提交" in html  # "Not accepting submissions right now"
