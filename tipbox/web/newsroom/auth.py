"""Who is logged in to the newsroom interface, checked on every request."""

from __future__ import annotations

import time

from flask import session

from tipbox.accounts import AccountService, AccountSummary
from tipbox.web.sessions import ServerSession

# However active, a newsroom session ends this long after its log-in.
MAX_SESSION_SECONDS = 12 * 3600


def start_session(journalist: AccountSummary) -> None:
    """A fresh session id, bound to the account's current session epoch."""
    session.clear()
    assert isinstance(session, ServerSession)  # noqa: S101 - set by the session interface
    session.regenerate()
    session["journalist_id"] = journalist.id
    session["epoch"] = journalist.session_epoch
    session["login_at"] = int(time.time()) // 60 * 60  # minutes are enough


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
