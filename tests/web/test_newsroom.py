"""The newsroom interface: TOTP log-in, inbox, source page, downloads, replies, deletion,
and that neither app serves the other's routes."""

from __future__ import annotations

import datetime as dt
import io
import re
import tarfile

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FAST_SCRYPT
from tests.helpers import (
    ACTOR,
    Clock,
    Newsroom,
    SourceBrowser,
    csrf_from,
    gpg_decrypt,
    log_in,
)
from tests.newsroom_fixtures import submit
from tipbox.accounts import AccountService, NewCredentials
from tipbox.bundles import read_manifest
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.web.newsroom import create_newsroom_app


def _source_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'name="source" value="(\d+)"', html)]


def test_journalist_logs_in_with_passphrase_and_totp_and_sees_the_inbox(
        browser: SourceBrowser, journalist: FlaskClient) -> None:
    browser.new_codename()
    browser.submit("hello", [(b"doc", "a.txt")])
    inbox = journalist.get("/").get_data(as_text=True)
    assert len(_source_ids(inbox)) == 1
    assert ">2</td><td>2</td>" in inbox.replace("\n", "")  # two unread, two items


def test_a_wrong_code_a_replayed_code_and_throttling(
        newsroom_app: Flask, ada: NewCredentials, clock: Clock) -> None:
    client = newsroom_app.test_client()
    status, page = log_in(client, ada, clock, code="000000")
    assert status == 403 and "do not match" in page
    clock.tick()
    code = pyotp.TOTP(ada.totp_secret).at(clock.now)
    assert log_in(client, ada, clock, code=code)[0] == 302
    other = newsroom_app.test_client()
    status, page = log_in(other, ada, clock, code=code)  # same code, used already
    assert status == 403
    for _ in range(6):
        status, page = log_in(other, ada, clock, code="123456")
    assert status == 429 and "Wait" in page and "minute" in page


def test_pages_need_a_log_in_and_log_out_ends_the_session(
        newsroom_app: Flask, journalist: FlaskClient) -> None:
    assert newsroom_app.test_client().get("/").status_code == 302
    page = journalist.get("/").get_data(as_text=True)
    journalist.post("/logout", data={"csrf_token": csrf_from(page)})
    resp = journalist.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


def test_a_single_item_downloads_as_ciphertext_and_is_then_read(
        browser: SourceBrowser, journalist: FlaskClient, newsroom: Newsroom,
        tmp_path) -> None:
    browser.new_codename()
    browser.submit("", [(b"%PDF secret", "leak.pdf")])
    inbox = journalist.get("/").get_data(as_text=True)
    source_page = journalist.get(f"/sources/{_source_ids(inbox)[0]}").get_data(as_text=True)
    link = re.search(r'href="(/items/[a-z2-7]{26}\.gpg)"', source_page)
    assert link
    resp = journalist.get(link.group(1))
    assert resp.status_code == 200 and resp.mimetype == "application/pgp-encrypted"
    out = tmp_path / "item.gpg"
    out.write_bytes(resp.data)
    plain = gpg_decrypt(out, newsroom.secret_home)
    assert (plain.data, plain.filename) == (b"%PDF secret", "leak.pdf")
    assert "new</strong>" not in journalist.get(f"/sources/{_source_ids(inbox)[0]}").get_data(
        as_text=True)


def test_unread_of_selected_sources_download_as_one_bundle(
        app: Flask, journalist: FlaskClient) -> None:
    for text in ("first source", "second source"):
        b = SourceBrowser(app.test_client())
        b.new_codename()
        b.submit(text)
    inbox = journalist.get("/").get_data(as_text=True)
    ids = _source_ids(inbox)
    resp = journalist.post("/bulk", data={"csrf_token": csrf_from(inbox), "source": ids,
                                          "action": "download_unread"})
    assert resp.status_code == 200 and resp.mimetype == "application/x-tar"
    data = resp.get_data()
    manifest = read_manifest(data)
    assert len(manifest["items"]) == 2  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert all(m.isfile() for m in tar.getmembers())
    # Everything is read now: the same request has nothing left to give.
    again = journalist.post("/bulk", data={"csrf_token": csrf_from(inbox), "source": ids,
                                           "action": "download_unread"})
    assert again.status_code == 302


def test_a_reply_is_encrypted_and_shown_to_the_source(
        browser: SourceBrowser, journalist: FlaskClient) -> None:
    browser.new_codename()
    browser.submit("hi")
    inbox = journalist.get("/").get_data(as_text=True)
    sid = _source_ids(inbox)[0]
    page = journalist.get(f"/sources/{sid}").get_data(as_text=True)
    resp = journalist.post(f"/sources/{sid}/reply", data={
        "csrf_token": csrf_from(page), "text": "Thank you, we are looking into it."})
    assert resp.status_code == 302
    page = journalist.get(f"/sources/{sid}").get_data(as_text=True)
    assert "Reply encrypted and sent" in page and "not read yet" in page
    assert "Thank you, we are looking into it." not in page  # never shown back in plaintext
    assert "Thank you, we are looking into it." in browser.client.get("/submit").get_data(
        as_text=True)
    assert "read" in journalist.get(f"/sources/{sid}").get_data(as_text=True)


def test_deleting_a_source_needs_confirmation(
        browser: SourceBrowser, journalist: FlaskClient) -> None:
    browser.new_codename()
    browser.submit("to be deleted")
    sid = _source_ids(journalist.get("/").get_data(as_text=True))[0]
    page = journalist.get(f"/sources/{sid}").get_data(as_text=True)
    journalist.post(f"/sources/{sid}/delete", data={"csrf_token": csrf_from(page)})
    assert journalist.get(f"/sources/{sid}").status_code == 200  # not confirmed: kept
    journalist.post(f"/sources/{sid}/delete", data={"csrf_token": csrf_from(page),
                                                    "confirm": "y"})
    assert journalist.get(f"/sources/{sid}").status_code == 404


NEWSROOM_PATHS = ["/login", "/sources/1", "/items/aaaaaaaaaaaaaaaaaaaaaaaaaa.gpg",
                  "/download/unread", "/bulk", "/logout"]
SOURCE_PATHS = ["/generate", "/create", "/submit", "/replies/x/delete"]


def test_no_newsroom_route_is_reachable_through_the_source_app(app: Flask) -> None:
    # Static files and the language picker are the same in both apps, and shared.
    newsroom_rules = {r.rule for r in create_newsroom_app(
        app.config["TIPBOX_SETTINGS"]).url_map.iter_rules()
        if r.endpoint not in ("static", "language.choose")}
    source_rules = {r.rule for r in app.url_map.iter_rules()}
    assert not (newsroom_rules - {"/", "/login", "/logout"}) & source_rules
    assert all(not r.endpoint.startswith("newsroom.") for r in app.url_map.iter_rules())
    client = app.test_client()
    for path in NEWSROOM_PATHS:
        if path in ("/login", "/logout"):
            continue  # the source app has its own /login and /logout
        assert client.get(path).status_code == 404, path


def test_no_source_route_is_reachable_through_the_newsroom_app(newsroom_app: Flask) -> None:
    assert all(not r.endpoint.startswith("source.") for r in newsroom_app.url_map.iter_rules())
    client = newsroom_app.test_client()
    for path in SOURCE_PATHS:
        assert client.get(path).status_code == 404, path


def test_resetting_or_deactivating_an_account_ends_its_open_sessions(
        journalist: FlaskClient, accounts: AccountService) -> None:
    assert journalist.get("/").status_code == 200
    accounts.reset_credentials("ada", ACTOR)
    resp = journalist.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


def test_a_deactivated_journalist_is_logged_out_at_once(
        newsroom_app: Flask, ada: NewCredentials, accounts: AccountService,
        clock: Clock) -> None:
    client = newsroom_app.test_client()
    assert log_in(client, ada, clock)[0] == 302
    accounts.deactivate("ada", ACTOR)
    accounts.reactivate("ada", ACTOR)  # back again, but the old session stays over
    assert client.get("/").status_code == 302


def test_a_newsroom_session_ends_12_hours_after_log_in(
        journalist: FlaskClient, settings: Settings) -> None:
    import json

    from sqlalchemy import select

    from tipbox.models import WebSession

    assert journalist.get("/").status_code == 200
    db = make_session_factory(make_engine(settings.database_url))
    with db.begin() as s:
        for row in s.scalars(select(WebSession).where(WebSession.interface == "newsroom")):
            data = json.loads(row.data)
            data["login_at"] -= 12 * 3600 + 60
            row.data = json.dumps(data)
    assert journalist.get("/").status_code == 302


def test_odd_numbers_in_the_address_get_a_page_not_a_crash(journalist: FlaskClient) -> None:
    assert journalist.get("/?page=²").status_code == 200
    assert journalist.get("/?page=99999999999999").status_code == 200
    page = journalist.get("/").get_data(as_text=True)
    resp = journalist.post("/bulk", data={"csrf_token": csrf_from(page), "source": ["²", "x"],
                                          "action": "download_unread"})
    assert resp.status_code == 302  # "select at least one source first"
    for number in ("99999999999999999999", "2147483648"):  # more than a row id can be
        assert journalist.get(f"/sources/{number}").status_code == 404
        assert journalist.post(f"/sources/{number}/star",
                               data={"csrf_token": csrf_from(page)}).status_code == 404
    assert journalist.get("/sources/2147483647").status_code == 404  # no such source


def test_with_a_retention_period_each_source_shows_when_it_will_be_deleted(
        settings: Settings, accounts: AccountService, ada: NewCredentials,
        clock: Clock) -> None:
    db = make_session_factory(make_engine(settings.database_url))
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    submit(db, load_keyring(settings.keys_dir, settings.gnupg_dir),
           CiphertextStore(settings.store_dir), source_id, "a tip",
           day=dt.date(2026, 1, 10))
    app = create_newsroom_app(settings.with_overrides(retention_days=30), accounts=accounts)
    client = app.test_client()
    assert log_in(client, ada, clock)[0] == 302
    inbox = client.get("/").get_data(as_text=True)
    assert "Deleted on" in inbox and "Feb 10, 2026" in inbox
    assert "a source is deleted 30 days after its last submission" in inbox
    page = client.get(f"/sources/{source_id}").get_data(as_text=True)
    assert "Deleted on Feb 10, 2026 by the retention rule" in page

    without = create_newsroom_app(settings, accounts=accounts).test_client()
    assert log_in(without, ada, clock)[0] == 302
    assert "Deleted on" not in without.get("/").get_data(as_text=True)


def test_the_log_in_page_leaves_no_session_row_until_someone_logs_in(
        newsroom_app: Flask, settings: Settings) -> None:
    from sqlalchemy import func, select

    from tipbox.models import WebSession

    db = make_session_factory(make_engine(settings.database_url))
    client = newsroom_app.test_client()
    for _ in range(3):
        assert client.get("/login").status_code == 200
    with db() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0
