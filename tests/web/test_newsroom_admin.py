"""Admin pages: keys through the whole ceremony in the browser, accounts, audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.crypto.keyfactory import export, gpg, new_key
from tests.helpers import Clock, Newsroom, SourceBrowser, csrf_from, log_in
from tipbox.accounts import AccountService


@pytest.fixture
def admin(newsroom_app: Flask, accounts: AccountService, clock: Clock) -> FlaskClient:
    client = newsroom_app.test_client()
    assert log_in(client, accounts.create("boss", admin=True), clock)[0] == 302
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


def test_an_admin_resets_and_deactivates_accounts(
        admin: FlaskClient, accounts: AccountService) -> None:
    accounts.create("carol")
    page = admin.get("/admin/accounts").get_data(as_text=True)
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
