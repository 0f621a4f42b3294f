"""Every page of the source interface: renders, carries the security headers, loads
nothing from elsewhere, runs no script; sessions hold nothing but an opaque id; and the
site answers 503 everywhere while the newsroom key is unusable."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from tests.helpers import Newsroom, SourceBrowser, csrf_from, hidden, store_files, temp_files
from tipbox.codenames import eff_words
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import Keyring, load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.models import WebSession
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.sessions import DatabaseSessionInterface
from tipbox.web.source import create_source_app

COOKIE = "tipbox_source"

# --- what every response must carry ----------------------------------------------------


def csp_directives(resp: TestResponse) -> dict[str, list[str]]:
    policy = resp.headers["Content-Security-Policy"]
    parts = [d.split() for d in policy.split(";") if d.strip()]
    return {p[0]: p[1:] for p in parts}


def assert_security_headers(resp: TestResponse) -> None:
    csp = csp_directives(resp)
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["base-uri"] == ["'none'"]
    # No script source at all, so default-src 'none' forbids every script.
    assert "script-src" not in csp and "script-src-elem" not in csp
    assert not any("unsafe" in v for values in csp.values() for v in values)
    h = resp.headers
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Cross-Origin-Opener-Policy"] == "same-origin"
    assert h["Cross-Origin-Resource-Policy"] == "same-origin"
    permissions = h["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in permissions
    assert "no-store" in h["Cache-Control"]
    assert "Server" not in h
    software = re.compile(r"werkzeug|flask|python|gunicorn|gnupg", re.IGNORECASE)
    assert not any(software.search(v) for _, v in h.items()), "a header names our software"


_URL_ATTR = re.compile(
    r"""\b(?:src|href|action|srcset|poster|data|formaction)\s*=\s*["']?([^"'\s>]*)""",
    re.IGNORECASE)


def assert_self_contained(html: str) -> None:
    """No script of any kind, and nothing loaded from or sent to another site."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert not re.search(r"\son[a-z]+\s*=", lowered), "inline event handler"
    assert "javascript:" not in lowered
    urls = _URL_ATTR.findall(html)
    assert "/static/tipbox.css" in urls  # the pattern does find this page's links
    for url in urls:
        assert not re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", url, re.IGNORECASE), url
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", lowered)
    assert "http://" not in lowered and "https://" not in lowered


# --- ways to reach each kind of response -------------------------------------------------


def submit_page_with_receipt(b: SourceBrowser) -> TestResponse:
    b.new_codename()
    assert b.submit("hello", [(b"data", "a.txt"), (b"", "empty.txt")]).status_code == 303
    return b.client.get("/submit")


def logged_out_page(b: SourceBrowser) -> TestResponse:
    b.new_codename()
    return b.logout()


def create_redirect(b: SourceBrowser) -> TestResponse:
    html = b.client.get("/generate").get_data(as_text=True)
    return b.client.post("/create", data={"csrf_token": csrf_from(html),
                                          "codename": hidden(html, "codename"),
                                          "mac": hidden(html, "mac")})


def failed_login(b: SourceBrowser) -> TestResponse:
    return b.login(" ".join(eff_words()[:7]))


def failed_submission(b: SourceBrowser) -> TestResponse:
    b.new_codename()
    return b.submit("")


def stylesheet(b: SourceBrowser) -> TestResponse:
    resp = b.client.get("/static/tipbox.css")
    resp.get_data()  # read it all, then close the file Flask sent it from
    resp.close()
    return resp


def logged_in_get(path: str) -> Callable[[SourceBrowser], TestResponse]:
    def visit(b: SourceBrowser) -> TestResponse:
        b.new_codename()
        return b.client.get(path)

    return visit


Visit = Callable[[SourceBrowser], TestResponse]

# (visit, expected status, a phrase of the page or None for a redirect / non-HTML)
VISITS: dict[str, tuple[Visit, int, str | None]] = {
    "index": (lambda b: b.client.get("/"), 200, "Share documents and information"),
    "generate": (lambda b: b.client.get("/generate"), 200, "This is the only time it is shown"),
    "create-redirect": (create_redirect, 302, None),
    "login": (lambda b: b.client.get("/login"), 200, "Log in with your codename"),
    "login-expired": (lambda b: b.client.get("/login?expired=1"), 200, "Your session ended"),
    "login-failed": (failed_login, 403, "That codename was not recognised"),
    "submit": (logged_in_get("/submit"), 200, "Send a message and files"),
    "submit-receipt": (submit_page_with_receipt, 200, "Your submission was received"),
    "submit-failed": (failed_submission, 400, "Your submission was not received"),
    "submit-logged-out": (lambda b: b.client.get("/submit"), 302, None),
    "index-logged-in": (logged_in_get("/"), 200, "Log out"),
    "logged-out": (logged_out_page, 200, "You are logged out"),
    "404": (lambda b: b.client.get("/no/such/page"), 404, "Page not found"),
    "405": (lambda b: b.client.put("/"), 405, "That action is not possible here"),
    "400-csrf": (lambda b: b.client.post("/login", data={"codename": "x"}), 400,
                 "This form had expired"),
    "stylesheet": (stylesheet, 200, None),
}


@pytest.mark.parametrize("name", list(VISITS))
def test_every_response_carries_the_security_headers(browser: SourceBrowser, name: str) -> None:
    visit, status, _ = VISITS[name]
    resp = visit(browser)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert_security_headers(resp)


@pytest.mark.parametrize("name", [n for n, (_, _, phrase) in VISITS.items() if phrase])
def test_every_page_renders_without_script_or_outside_resources(
        browser: SourceBrowser, name: str) -> None:
    visit, status, phrase = VISITS[name]
    resp = visit(browser)
    html = resp.get_data(as_text=True)
    assert resp.status_code == status, html
    assert resp.mimetype == "text/html"
    assert phrase is not None and phrase in html
    assert "Traceback" not in html
    assert_self_contained(html)


def test_stylesheet_loads_nothing_from_elsewhere(browser: SourceBrowser) -> None:
    css = stylesheet(browser).get_data(as_text=True)
    assert css.strip()
    assert "@import" not in css
    assert not re.search(r"url\(\s*['\"]?(?:[a-z]+:|//)", css, re.IGNORECASE)


def test_redirects_stay_on_this_site(browser: SourceBrowser) -> None:
    resp = browser.client.get("/submit")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login")


def test_codename_page_shows_seven_words_from_the_word_list(browser: SourceBrowser) -> None:
    html = browser.client.get("/generate").get_data(as_text=True)
    match = re.search(r'<p class="codename" id="codename-shown">([^<]*)</p>', html)
    assert match
    words = match.group(1).split()
    assert len(words) == 7
    assert set(words) <= set(eff_words())
    assert hidden(html, "codename") == match.group(1)


def test_the_codename_is_also_shown_a_word_a_numbered_box_left_to_right(
        browser: SourceBrowser) -> None:
    """For a source who does not read English: copy one word at a time, in order."""
    html = browser.client.get("/generate", headers={"Accept-Language": "ar"}).get_data(
        as_text=True)
    boxes = re.search(r'<ol class="codename-words" lang="en" dir="ltr">(.*?)</ol>', html)
    assert boxes
    assert re.findall(r"<li>([a-z-]+)</li>", boxes.group(1)) == hidden(html, "codename").split()


def test_each_visit_to_the_codename_page_gives_a_new_codename(browser: SourceBrowser) -> None:
    pages = [browser.client.get("/generate").get_data(as_text=True) for _ in range(3)]
    assert len({hidden(p, "codename") for p in pages}) == 3


# --- sessions ----------------------------------------------------------------------------


@pytest.fixture
def sessions_db(settings: Settings) -> Iterator[Callable[[], list[WebSession]]]:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)

    def rows() -> list[WebSession]:
        with factory() as db:
            return list(db.scalars(select(WebSession)))

    yield rows
    engine.dispose()


def test_session_cookie_holds_only_an_opaque_id(
        browser: SourceBrowser, sessions_db: Callable[[], list[WebSession]]) -> None:
    codename = browser.new_codename()
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None
    value = cookie.value
    assert len(value) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", value)
    assert codename not in value
    assert not any(word in value for word in codename.split())
    assert cookie.http_only
    assert cookie.same_site == "Strict"
    # The server keeps the data, under the id's hash; the codename is not part of it.
    [row] = [r for r in sessions_db() if r.id_hash == hashlib.sha256(value.encode()).hexdigest()]
    data = json.loads(row.data)
    assert isinstance(data["source_id"], int)
    assert not any(word in row.data for word in codename.split())


def test_looking_at_form_pages_without_logging_in_leaves_no_session_row(
        settings: Settings, browser: SourceBrowser,
        sessions_db: Callable[[], list[WebSession]]) -> None:
    # A flood of visitors who never take a codename must not grow the database: their
    # CSRF token lives in a signed cookie until they log in.
    for _ in range(3):
        for page in ("/generate", "/login", "/"):
            assert browser.client.get(page).status_code == 200
    assert sessions_db() == []
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    browser.new_codename()  # the token in that cookie is good for the form...
    assert len(sessions_db()) == 1  # ...and logging in makes the one row


def test_a_forged_or_expired_anonymous_session_is_worth_nothing(
        settings: Settings, browser: SourceBrowser) -> None:
    html = browser.client.get("/generate").get_data(as_text=True)
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None and cookie.value.startswith("a.")
    form = {"csrf_token": csrf_from(html), "codename": hidden(html, "codename"),
            "mac": hidden(html, "mac")}
    browser.client.set_cookie(COOKIE, cookie.value[:-4] + "AAAA")  # tampered signature
    assert browser.client.post("/create", data=form).status_code == 400
    short = create_source_app(settings.with_overrides(session_idle_minutes=1))
    stale = SourceBrowser(short.test_client())
    html = stale.client.get("/generate").get_data(as_text=True)
    interface = short.session_interface
    assert isinstance(interface, DatabaseSessionInterface)
    signed_at = time.time()
    form = {"csrf_token": csrf_from(html), "codename": hidden(html, "codename"),
            "mac": hidden(html, "mac")}
    interface.clock = lambda: signed_at + 61  # a minute and a second of idleness
    assert stale.client.post("/create", data=form).status_code == 400
    interface.clock = lambda: signed_at + 30  # within the minute: the same form is good
    assert stale.client.post("/create", data=form).status_code == 302


def test_set_cookie_header_is_http_only_and_same_site_strict(browser: SourceBrowser) -> None:
    html = browser.client.get("/generate").get_data(as_text=True)
    resp = browser.client.post("/create", data={"csrf_token": csrf_from(html),
                                                "codename": hidden(html, "codename"),
                                                "mac": hidden(html, "mac")})
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Strict" in header
    assert "Expires" not in header and "Max-Age" not in header  # gone with the browser


def test_logging_in_issues_a_new_session_id(browser: SourceBrowser) -> None:
    browser.client.get("/generate")  # a session (for the CSRF token) before login
    before = browser.client.get_cookie(COOKIE)
    assert before is not None
    browser.new_codename()
    after = browser.client.get_cookie(COOKIE)
    assert after is not None and after.value != before.value


def test_log_out_ends_the_session(
        browser: SourceBrowser, sessions_db: Callable[[], list[WebSession]]) -> None:
    browser.new_codename()
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None
    old_id = cookie.value
    resp = browser.logout()
    assert resp.status_code == 200
    assert browser.client.get_cookie(COOKIE) is None
    old_hash = hashlib.sha256(old_id.encode()).hexdigest()
    assert all(r.id_hash != old_hash for r in sessions_db())
    resp = browser.client.get("/submit")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login")
    # The old id, replayed, is worth nothing either.
    browser.client.set_cookie(COOKIE, old_id)
    assert browser.client.get("/submit").status_code == 302


def test_idle_session_times_out(settings: Settings) -> None:
    settings = settings.with_overrides(session_idle_minutes=1)
    app = create_source_app(settings)
    app.config["TESTING"] = True
    browser = SourceBrowser(app.test_client())
    browser.new_codename()
    assert browser.client.get("/submit").status_code == 200

    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        now = dt.datetime.now(dt.UTC)
        with factory() as db:
            expiries = [r.expires_at.replace(tzinfo=dt.UTC) for r in db.scalars(select(WebSession))]
        assert expiries
        # One minute of idleness, rounded up to the next 10 minutes (coarse times only).
        assert all(now < e <= now + dt.timedelta(seconds=60 + 600) for e in expiries)
        assert all(e.timestamp() % 600 == 0 for e in expiries)
        with factory.begin() as db:  # a minute and a second of idleness, without sleeping
            db.execute(update(WebSession).values(expires_at=now - dt.timedelta(seconds=1)))
    finally:
        engine.dispose()

    resp = browser.client.get("/submit")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/login?expired=1"
    page = browser.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Your session ended. Log in again to continue." in page


# --- the start-up key gate --------------------------------------------------------------


def expired_key_file(root: Path) -> Path:
    """A newsroom key made with a faked clock in 2020, valid for one day."""
    home = root / "gnupg-2020"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--passphrase", "",
           "--pinentry-mode", "loopback", "--faked-system-time", "20200101T000000"]
    try:
        subprocess.run([*gpg, "--quick-generate-key", "Old Newsroom <old@example.invalid>",
                        "ed25519", "sign,cert", "1d"], check=True, capture_output=True)
        listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True,
                                 capture_output=True, text=True).stdout
        fpr = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)
        assert fpr
        subprocess.run([*gpg, "--quick-add-key", fpr.group(1), "cv25519", "encr", "1d"],
                       check=True, capture_output=True)
        armored = subprocess.run([*gpg, "--armor", "--export", fpr.group(1)], check=True,
                                 capture_output=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       check=False, capture_output=True)
    assert b"BEGIN PGP PUBLIC KEY BLOCK" in armored
    path = root / "old-newsroom.asc"
    path.write_bytes(armored)
    return path


def keys_folder_empty(root: Path, _newsroom: Newsroom) -> Path:
    (root / "keys").mkdir()
    return root / "keys"


def keys_folder_with_only_an_expired_key(root: Path, _newsroom: Newsroom) -> Path:
    keys = root / "keys"
    keys.mkdir()
    expired_key_file(root).rename(keys / "newsroom.asc")
    return keys


def keys_folder_with_a_secret_key(root: Path, newsroom: Newsroom) -> Path:
    keys = root / "keys"
    keys.mkdir()
    (keys / "newsroom.asc").write_bytes(newsroom.public_key_file.read_bytes())
    secret = GnuPG(newsroom.secret_home).export_secret(newsroom.fingerprint)
    (keys / "newsroom-backup.asc").write_text(secret)
    return keys


KEY_FOLDERS = {
    "empty": (keys_folder_empty, "No newsroom public key found"),
    "expired-key-only": (keys_folder_with_only_an_expired_key, "has expired"),
    "secret-key": (keys_folder_with_a_secret_key, "SECRET key material"),
}


@pytest.fixture(params=list(KEY_FOLDERS))
def unusable_keyring(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings,
                     newsroom: Newsroom) -> Keyring:
    make_folder, reason = KEY_FOLDERS[request.param]
    root = tmp_path / "keys-case"
    root.mkdir()
    keyring = load_keyring(make_folder(root, newsroom), settings.gnupg_dir)
    assert not keyring.accepting
    assert keyring.problem is not None and reason in keyring.problem
    return keyring


OFFLINE_ROUTES = [("GET", "/"), ("GET", "/generate"), ("GET", "/login"), ("GET", "/submit"),
                  ("GET", "/no/such/page"), ("POST", "/login"), ("POST", "/create"),
                  ("POST", "/submit"), ("POST", "/logout"), ("PUT", "/")]


def test_every_route_answers_503_while_the_key_is_unusable(
        app: Flask, settings: Settings, unusable_keyring: Keyring) -> None:
    # A source who opened the site before the key was pulled still has a session and
    # valid form tokens: even their forms must meet the 503 page.
    browser = SourceBrowser(app.test_client())
    browser.new_codename()
    token = browser.submit_token()
    offline = create_source_app(settings, keyring=unusable_keyring)
    offline.config["TESTING"] = True
    client = offline.test_client()
    client.set_cookie(COOKIE, browser.client.get_cookie(COOKIE).value)  # type: ignore[union-attr]
    before = sorted(store_files(settings.data_dir))

    for method, path in OFFLINE_ROUTES:
        for data in ({"csrf_token": token, "message": "hi"}, {}):
            resp = client.open(path, method=method, data=data if method != "GET" else None)
            html = resp.get_data(as_text=True)
            assert resp.status_code == 503, (method, path, html)
            assert "Not accepting submissions right now" in html
            assert "Nothing was stored." in html
            assert_security_headers(resp)
            assert_self_contained(html)
    assert sorted(store_files(settings.data_dir)) == before
    assert temp_files(settings.data_dir) == []
    # The page can still be styled.
    with client.get("/static/tipbox.css") as css:
        assert css.status_code == 200


def test_the_landing_page_tells_sources_the_retention_period(
        browser: SourceBrowser, settings: Settings) -> None:
    assert "we delete it" not in browser.client.get("/").get_data(as_text=True)
    app = create_source_app(settings.with_overrides(retention_days=365),
                            browser=BrowserEncryption.off("not under test"))
    page = app.test_client().get("/").get_data(as_text=True)
    assert "we delete it, with our replies, 365 days after your last submission" in page
    assert "Once our journalists have read what you sent" in page  # unread is kept
    one = create_source_app(settings.with_overrides(retention_days=1),
                            browser=BrowserEncryption.off("not under test"))
    assert "1 day after your last" in one.test_client().get("/").get_data(as_text=True)


def test_the_source_guide_is_a_page_of_the_site_linked_from_every_source_page(
        browser: SourceBrowser) -> None:
    guide = browser.client.get("/guide")
    assert guide.status_code == 200
    html = guide.get_data(as_text=True)
    assert "<h1>Sending a tip safely: a guide for sources</h1>" in html
    assert "<strong>Set Tor Browser's security level to \"Safest\".</strong>" in html \
        or "<strong>Set Tor Browser&#39;s security level to &#34;Safest&#34;.</strong>" in html
    assert "<script" not in html
    browser.new_codename()
    for path in ("/", "/login", "/generate", "/submit", "/no-such-page"):
        page = browser.client.get(path).get_data(as_text=True)
        assert '<a href="/guide">Guide for sources: how to send safely</a>' in page, path
