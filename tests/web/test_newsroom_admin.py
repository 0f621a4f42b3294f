"""Admin pages: keys through the whole ceremony in the browser, accounts, audit log."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from tests.crypto.keyfactory import export, gpg, new_key
from tests.helpers import ACTOR, Clock, Newsroom, SourceBrowser, csrf_from, log_in
from tipbox.accounts import AccountService, NewCredentials
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.models import NewsroomKey, WebSession


@pytest.fixture
def admin(newsroom_app: Flask, accounts: AccountService, clock: Clock) -> FlaskClient:
    client = newsroom_app.test_client()
    assert log_in(client, accounts.create("boss", ACTOR, admin=True), clock)[0] == 302
    return client


def test_journalists_who_are_not_admins_get_403(journalist: FlaskClient) -> None:
    for path in ("/admin/keys", "/admin/accounts", "/admin/audit"):
        assert journalist.get(path).status_code == 403


def test_rotation_in_the_browser_add_challenge_prove_activate_retire(
        admin: FlaskClient, app: Flask, newsroom: Newsroom, tmp_path: Path) -> None:
    page = admin.get("/admin/keys").get_data(as_text=True)
    assert newsroom.fingerprint in page and "ACTIVE" in page
    home = tmp_path / "next-key"
    fpr = new_key(home)
    armored = export(home, fpr, tmp_path / "next.asc").read_text()
    admin.post("/admin/keys/add", data={"csrf_token": csrf_from(page), "key": armored})
    page = admin.get("/admin/keys").get_data(as_text=True)
    assert "added as pending" in page and "PENDING" in page

    resp = admin.post(f"/admin/keys/{fpr}/challenge", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 200 and resp.mimetype == "application/pgp-encrypted"
    (tmp_path / "c.gpg").write_bytes(resp.data)
    code = gpg(home, "--decrypt", str(tmp_path / "c.gpg")).decode().split()[-1]
    admin.post(f"/admin/keys/{fpr}/activate", data={"csrf_token": csrf_from(page),
                                                    "code": code})
    page = admin.get("/admin/keys").get_data(as_text=True)
    assert f"Key {fpr} is active" in page

    # The source app encrypts to both keys now, without a restart.
    source = SourceBrowser(app.test_client())
    home_page = source.client.get("/").get_data(as_text=True)
    assert fpr in home_page and newsroom.fingerprint in home_page

    admin.post(f"/admin/keys/{newsroom.fingerprint}/retire",
               data={"csrf_token": csrf_from(page)})
    page = admin.get("/admin/keys").get_data(as_text=True)
    assert "is retired" in page
    admin.post(f"/admin/keys/{fpr}/retire", data={"csrf_token": csrf_from(page)})
    assert "only usable active key" in admin.get("/admin/keys").get_data(as_text=True)

    audit = admin.get("/admin/audit").get_data(as_text=True)
    for action in ("key added", "key challenge issued", "key activated", "key retired"):
        assert action in audit
    assert "web:boss" in audit


def test_a_secret_key_pasted_in_is_refused(admin: FlaskClient, tmp_path: Path) -> None:
    home = tmp_path / "h"
    fpr = new_key(home)
    secret = export(home, fpr, tmp_path / "s.asc", secret=True).read_text()
    page = admin.get("/admin/keys").get_data(as_text=True)
    admin.post("/admin/keys/add", data={"csrf_token": csrf_from(page), "key": secret})
    assert "SECRET key material" in admin.get("/admin/keys").get_data(as_text=True)


def test_a_key_refusal_is_shown_in_the_admins_language(admin: FlaskClient) -> None:
    admin.get("/language/fr?next=/admin/keys")
    page = admin.get("/admin/keys").get_data(as_text=True)
    admin.post("/admin/keys/0000000000000000000000000000000000000000/retire",
               data={"csrf_token": csrf_from(page)})
    page = admin.get("/admin/keys").get_data(as_text=True)
    assert "Aucune clé 0000000000000000000000000000000000000000 n’est connue ; voir " \
        "`tipbox keys list`." in page


def test_an_account_refusal_is_shown_in_the_admins_language(admin: FlaskClient) -> None:
    admin.get("/language/fr?next=/admin/accounts")
    page = admin.get("/admin/accounts").get_data(as_text=True)
    admin.post("/admin/accounts/nobody/reset", data={"csrf_token": csrf_from(page)})
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert "Aucun compte ne porte ce nom d’utilisateur." in page


def test_an_admin_resets_and_deactivates_accounts(
        admin: FlaskClient, accounts: AccountService) -> None:
    accounts.create("carol", ACTOR)
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert 'action="/admin/accounts/carol/deactivate"' in page
    assert 'action="/admin/accounts/boss/deactivate"' not in page  # not offered for oneself
    resp = admin.post("/admin/accounts/carol/reset", data={"csrf_token": csrf_from(page)})
    assert "New credentials for carol" in resp.get_data(as_text=True)
    admin.post("/admin/accounts/carol/deactivate", data={"csrf_token": csrf_from(page)})
    assert [a.is_active for a in accounts.list() if a.username == "carol"] == [False]
    admin.post("/admin/accounts/boss/deactivate", data={"csrf_token": csrf_from(page)})
    assert "cannot deactivate your own" in admin.get("/admin/accounts").get_data(as_text=True)
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "account credentials reset" in audit and "account deactivated" in audit


def test_sources_can_download_the_active_public_key(app: Flask, newsroom: Newsroom) -> None:
    resp = app.test_client().get("/public-key")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    found = gpg(Path(newsroom.secret_home), "--show-keys", "--with-colons",
                input_=resp.data).decode()
    assert newsroom.fingerprint in found


def age_admin_sessions(settings: Settings, minutes: int) -> None:
    """Move every newsroom session's last confirmation back in time, as if the admin had
    logged in that long ago and walked away."""
    db = make_session_factory(make_engine(settings.database_url))
    with db.begin() as s:
        for row in s.scalars(select(WebSession).where(WebSession.interface == "newsroom")):
            data = json.loads(row.data)
            data["confirmed_at"] -= minutes * 60
            row.data = json.dumps(data)


def confirm(client: FlaskClient, creds: NewCredentials, clock: Clock, target: str,
            code: str | None = None) -> TestResponse:
    clock.tick()
    page = client.get(f"/admin/confirm?next={target}").get_data(as_text=True)
    return client.post(f"/admin/confirm?next={target}", data={
        "csrf_token": csrf_from(page), "passphrase": creds.passphrase,
        "code": code or pyotp.TOTP(creds.totp_secret).at(clock.now)})


@pytest.fixture
def boss(accounts: AccountService) -> NewCredentials:
    return accounts.create("boss2", ACTOR, admin=True)


@pytest.fixture
def stale_admin(newsroom_app: Flask, boss: NewCredentials, clock: Clock,
                settings: Settings) -> FlaskClient:
    client = newsroom_app.test_client()
    assert log_in(client, boss, clock)[0] == 302
    assert client.get("/admin/keys").status_code == 200  # fresh from log-in
    age_admin_sessions(settings, 16)
    return client


def test_admin_pages_ask_again_for_passphrase_and_code_after_15_minutes(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock) -> None:
    resp = stale_admin.get("/admin/accounts")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/admin/confirm?next=/admin/accounts"
    assert "Confirm it is you" in stale_admin.get(resp.headers["Location"]).get_data(
        as_text=True)
    # The rest of the newsroom does not ask.
    assert stale_admin.get("/").status_code == 200

    resp = confirm(stale_admin, boss, clock, "/admin/accounts")
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/accounts"
    assert stale_admin.get("/admin/accounts").status_code == 200


def test_a_stale_admin_session_changes_nothing(
        stale_admin: FlaskClient, newsroom: Newsroom, accounts: AccountService,
        second_newsroom_key: Newsroom, settings: Settings) -> None:
    accounts.create("carol", ACTOR)
    token = csrf_from(stale_admin.get("/").get_data(as_text=True))
    resp = stale_admin.post("/admin/accounts/carol/deactivate", data={"csrf_token": token})
    assert resp.headers["Location"] == "/admin/confirm?next=/admin/accounts"
    assert [a.is_active for a in accounts.list() if a.username == "carol"] == [True]
    armored = (second_newsroom_key.keys_dir / "newsroom.asc").read_text()
    resp = stale_admin.post("/admin/keys/add", data={"csrf_token": token, "key": armored})
    assert resp.headers["Location"] == "/admin/confirm?next=/admin/keys"
    page = stale_admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Nothing was changed" in page
    # Not even pending: the registry never heard of the key.
    with make_session_factory(make_engine(settings.database_url))() as db:
        registered = set(db.scalars(select(NewsroomKey.fingerprint)))
    assert newsroom.fingerprint in registered
    assert second_newsroom_key.fingerprint not in registered


def test_confirming_needs_the_right_passphrase_and_a_new_code(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock) -> None:
    wrong = NewCredentials(boss.username, "not the passphrase", boss.totp_secret)
    resp = confirm(stale_admin, wrong, clock, "/admin/keys")
    assert resp.status_code == 403 and "do not match" in resp.get_data(as_text=True)
    # The code the log-in used (same 30 s step) is refused: replay.
    used = pyotp.TOTP(boss.totp_secret).at(clock.now - dt.timedelta(seconds=30))
    resp = confirm(stale_admin, boss, clock, "/admin/keys", code=used)
    assert resp.status_code == 403
    assert stale_admin.get("/admin/keys").status_code == 302
    assert confirm(stale_admin, boss, clock, "/admin/keys").status_code == 302
    assert stale_admin.get("/admin/keys").status_code == 200


def test_confirming_counts_towards_throttling(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock) -> None:
    wrong = NewCredentials(boss.username, "guess", boss.totp_secret)
    statuses = [confirm(stale_admin, wrong, clock, "/admin/keys").status_code
                for _ in range(8)]
    assert statuses[0] == 403 and statuses[-1] == 429
    resp = confirm(stale_admin, boss, clock, "/admin/keys")
    assert resp.status_code == 429 and "Wait" in resp.get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin/",
                                    "/admin/\\evil.example", "/inbox", ""])
def test_confirming_only_ever_returns_to_an_admin_page(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock, target: str) -> None:
    resp = confirm(stale_admin, boss, clock, target)
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/keys"


@pytest.mark.parametrize("target", ["/admin/../items/x.gpg", "/admin/%2e%2e/download/unread",
                                    "/admin/confirm", "/admin/keys\r\nX-Evil: 1",
                                    "/admin/keys/add", "/admin/nowhere"])
def test_confirming_returns_only_to_admin_pages_that_exist(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock, target: str) -> None:
    resp = confirm(stale_admin, boss, clock, urllib.parse.quote(target, safe="/"))
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/keys"


def test_confirming_returns_to_the_page_asked_for(
        stale_admin: FlaskClient, boss: NewCredentials, clock: Clock) -> None:
    resp = confirm(stale_admin, boss, clock, "/admin/audit")
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/audit"


def test_confirming_renews_the_session_id(
        stale_admin: FlaskClient, newsroom_app: Flask, boss: NewCredentials,
        clock: Clock) -> None:
    # Someone who copied the cookie before must not share the admin's new 15 minutes.
    thief = newsroom_app.test_client()
    cookie = stale_admin.get_cookie("tipbox_newsroom")
    assert cookie is not None
    thief.set_cookie("tipbox_newsroom", cookie.value)
    assert thief.get("/").status_code == 200  # the copy works, for now
    assert confirm(stale_admin, boss, clock, "/admin/keys").status_code == 302
    assert stale_admin.get("/admin/keys").status_code == 200
    assert thief.get("/admin/keys").status_code == 302
    assert thief.get("/").status_code == 302  # the old id is gone altogether


def test_journalists_cannot_use_the_confirm_page(journalist: FlaskClient) -> None:
    assert journalist.get("/admin/confirm").status_code == 403
