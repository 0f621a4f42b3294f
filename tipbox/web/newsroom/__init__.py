"""The newsroom interface: journalists only, on its own port, never reachable from the
source app (and the reverse)."""

from __future__ import annotations

from flask import Flask

from tipbox.accounts import AccountService
from tipbox.config import Settings
from tipbox.crypto.keys import Keyring, load_keyring
from tipbox.newsroom import NewsroomService
from tipbox.replies import ReplyService
from tipbox.storage import CiphertextStore
from tipbox.web.common import build_app
from tipbox.web.newsroom.views import NewsroomDeps, make_blueprint


def create_newsroom_app(settings: Settings | None = None, *, keyring: Keyring | None = None,
                        accounts: AccountService | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app, plumbing = build_app("tipbox.web.newsroom", settings, "newsroom")
    if keyring is None:
        keyring = load_keyring(settings.keys_dir, settings.gnupg_dir, settings.gpg_binary)
    store = CiphertextStore(settings.store_dir)
    deps = NewsroomDeps(
        settings=settings,
        accounts=accounts or AccountService(plumbing.sessions),
        newsroom=NewsroomService(plumbing.sessions, store),
        replies=ReplyService(plumbing.sessions, store, keyring),
        keyring=keyring,
    )
    app.register_blueprint(make_blueprint(deps))
    return app
