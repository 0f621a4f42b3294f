"""Who is logged in to the newsroom interface, checked on every request."""

from __future__ import annotations

import time

from flask import session
from flask_babel import gettext, ngettext

from tipbox.accounts import AccountService, AccountSummary, LoginFailed, LoginThrottled
from tipbox.web.sessions import ServerSession

# However active, a newsroom session ends this long after its log-in.
MAX_SESSION_SECONDS = 12 * 3600
# Admin pages need the passphrase and a TOTP code given this recently (at log-in or on
# the confirm page): a stolen or unattended session alone cannot change keys or accounts.
ADMIN_FRESH_SECONDS = 15 * 60


def start_session(journalist: AccountSummary) -> None:
    """A fresh session id, bound to the account's current session epoch."""
    session.clear()
    assert isinstance(session, ServerSession)  # noqa: S101 - set by the session interface
    session.regenerate()
    session["journalist_id"] = journalist.id
    session["epoch"] = journalist.session_epoch
    session["login_at"] = int(time.time()) // 60 * 60  # minutes are enough
    session["confirmed_at"] = session["login_at"]


def confirm_identity() -> None:
    """Record that the passphrase and a fresh TOTP code were just given again, under a new
    session id: an old copy of the cookie must not gain the new 15 minutes."""
    assert isinstance(session, ServerSession)  # noqa: S101 - set by the session interface
    session.regenerate()
    session["confirmed_at"] = int(time.time()) // 60 * 60


def recently_confirmed() -> bool:
    confirmed_at = session.get("confirmed_at")
    return (isinstance(confirmed_at, int)
            and time.time() - confirmed_at <= ADMIN_FRESH_SECONDS)


def current_journalist(accounts: AccountService) -> AccountSummary | None:
    """The logged-in account, or None (and the session cleared) when the session is over:
    account gone or deactivated, credentials reset since log-in, or 12 hours passed."""
    journalist_id = session.get("journalist_id")
    account = accounts.get(journalist_id) if isinstance(journalist_id, int) else None
    login_at = session.get("login_at")
    if (account is None or not account.is_active
            or session.get("epoch") != account.session_epoch
            or not isinstance(login_at, int) or time.time() - login_at > MAX_SESSION_SECONDS):
        session.clear()
        return None
    return account


def refusal(exc: LoginFailed | LoginThrottled) -> tuple[str, int]:
    """What to tell someone whose passphrase and code were refused, and the status."""
    if isinstance(exc, LoginThrottled):
        minutes = max(1, -(-int(exc.seconds) // 60))
        return ngettext("Too many failed attempts. Wait %(num)s minute, then try again.",
                        "Too many failed attempts. Wait %(num)s minutes, then try again.",
                        minutes), 429
    return gettext("That username, passphrase and code do not match. Check all three; "
                   "the code changes every 30 seconds."), 403
