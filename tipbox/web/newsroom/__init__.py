"""The newsroom interface: journalists only, on its own port, never reachable from the
source app (and the reverse)."""

from __future__ import annotations

from flask import Flask

from tipbox.accounts import AccountService, TotpSealer
from tipbox.audit import AuditLog
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, KeyringSource
from tipbox.inbox import InboxService
from tipbox.key_registry import KeyringProvider, KeyService, StaticKeyring
from tipbox.replies import ReplyService
from tipbox.storage import CiphertextStore
from tipbox.web.app_factory import build_app
from tipbox.web.newsroom.admin import AdminDeps, make_admin_blueprint
from tipbox.web.newsroom.views import NewsroomDeps, make_blueprint


def create_newsroom_app(settings: Settings | None = None, *, keyring: Keyring | None = None,
                        accounts: AccountService | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app, plumbing = build_app("tipbox.web.newsroom", settings, "newsroom")
    keys: KeyringSource = StaticKeyring(keyring) if keyring is not None else \
        KeyringProvider.from_settings(plumbing.sessions, settings)
    store = CiphertextStore(settings.store_dir)
    audit = AuditLog(plumbing.sessions)
    deps = NewsroomDeps(
        settings=settings,
        accounts=accounts or AccountService(plumbing.sessions,
                                            TotpSealer(plumbing.secrets.totp_key), audit,
                                            slots=plumbing.hashing),
        inbox=InboxService(plumbing.sessions, store),
        replies=ReplyService(plumbing.sessions, store, keys),
        keys=keys,
    )
    app.register_blueprint(make_blueprint(deps))
    app.register_blueprint(make_admin_blueprint(AdminDeps(
        accounts=deps.accounts, audit=audit,
        keys=KeyService(plumbing.sessions, settings.gnupg_dir, audit, settings.gpg_binary))))
    return app
