"""Server-side sessions: the cookie holds a random id and nothing else.

Flask's own session cookie is signed, not encrypted, so whatever it holds is readable
by anyone who sees the browser's cookies. Here the data stays in the database, keyed by
the SHA-256 of the id, and expires after an idle period.

One exception: a visitor who has not logged in holds nothing but a CSRF token, which is
no secret from that visitor. Such a session lives in a signed, timed cookie instead of a
row, so that merely looking at a page with a form (the codename page, the newsroom log-in)
leaves nothing in the database, and a flood of such requests cannot grow it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from tipbox.db import forget_deleted, rows_matched
from tipbox.models import WebSession

# The only keys a session may hold to stay in a signed cookie rather than a row.
ANONYMOUS_KEYS = frozenset({"csrf_token"})
# Marks a signed anonymous session; a row's id (token_urlsafe) never contains a dot.
_ANONYMOUS = "a."
# A signed cookie older than this is signed again, as a row's expiry moves in 10 minutes.
_RESIGN_AFTER = 600


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(_self: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.modified = False
        self.rotate = False
        self.stored_expiry: dt.datetime | None = None  # as read from the database
        self.signed_at: float | None = None  # when its anonymous cookie was signed

    def regenerate(self) -> None:
        """Issue a new id at the next save (at login), so a planted id is worthless."""
        self.rotate = True
        self.modified = True


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def session_key(session: SessionMixin) -> str | None:
    """The key a logged-in session's row is kept under (what tipbox.intake.pieces ties an
    upload to), or None for a session without a row."""
    sid = getattr(session, "sid", None)
    return _hash(sid) if isinstance(sid, str) and not sid.startswith(_ANONYMOUS) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _coarse(moment: dt.datetime, step: int = 600) -> dt.datetime:
    """Round up to 10 minutes: the row then says little about when a request came."""
    seconds = moment.timestamp()
    return dt.datetime.fromtimestamp(seconds + (-seconds % step), tz=dt.UTC)


class DatabaseSessionInterface(SessionInterface):
    def __init__(self, sessions: sessionmaker[Session], interface: str,
                 idle: dt.timedelta) -> None:
        self._sessions = sessions
        self._interface = interface
        self._idle = idle
        # Seconds since the epoch, for signing anonymous sessions (tests move it on).
        self.clock: Callable[[], float] = time.time

    def _signer(self, app: Flask) -> URLSafeTimedSerializer:
        clock = self.clock

        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        return URLSafeTimedSerializer(app.secret_key or "", signer=Signer,
                                      salt=f"tipbox anonymous session {self._interface}")

    def _open_anonymous(self, app: Flask, value: str) -> ServerSession:
        try:
            data, signed = self._signer(app).loads(
                value, max_age=int(self._idle.total_seconds()), return_timestamp=True)
        except BadSignature:  # forged, damaged or expired: start afresh
            return ServerSession()
        if not isinstance(data, dict) or not set(data) <= ANONYMOUS_KEYS:
            return ServerSession()
        session = ServerSession(data)
        session.signed_at = signed.timestamp()
        return session

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid and sid.startswith(_ANONYMOUS) and len(sid) < 1000:
            return self._open_anonymous(app, sid[len(_ANONYMOUS):])
        if not sid or len(sid) > 100:
            return ServerSession()
        with self._sessions() as db:
            row = db.get(WebSession, _hash(sid))
            if row is None or row.interface != self._interface:
                return ServerSession()
            expires = row.expires_at if row.expires_at.tzinfo else \
                row.expires_at.replace(tzinfo=dt.UTC)
            if expires <= _now():
                return ServerSession()
            session = ServerSession(json.loads(row.data), sid)
            session.stored_expiry = expires
            return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)  # noqa: S101 - set by open_session
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if not session:
            if session.sid:
                self._delete(session.sid)
                response.delete_cookie(name, domain=domain, path=path)
            return
        if set(session) <= ANONYMOUS_KEYS and not session.sid:
            self._save_anonymous(app, session, response)
            return
        if session.rotate and session.sid:
            self._delete(session.sid)
            session.sid = None
        sid = session.sid or secrets.token_urlsafe(32)
        expires = _coarse(_now() + self._idle)
        if sid == session.sid and not session.modified and session.stored_expiry == expires:
            return  # nothing new to store: most requests write nothing at all
        with self._sessions.begin() as db:
            db.merge(WebSession(id_hash=_hash(sid), interface=self._interface,
                                data=json.dumps(dict(session)), expires_at=expires))
            # Opportunistic clean-up keeps expired rows from piling up.
            purged = db.execute(delete(WebSession).where(WebSession.expires_at < _now()))
            if rows_matched(purged):
                forget_deleted(db)
        if sid != session.sid:
            session.sid = sid
        response.set_cookie(
            name, sid, httponly=True, samesite="Strict", path=path, domain=domain,
            secure=self.get_cookie_secure(app),
        )
        response.vary.add("Cookie")

    def _save_anonymous(self, app: Flask, session: ServerSession, response: Response) -> None:
        fresh = session.signed_at is not None and \
            self.clock() - session.signed_at < _RESIGN_AFTER
        if not session.modified and fresh:
            return
        response.set_cookie(
            self.get_cookie_name(app), _ANONYMOUS + self._signer(app).dumps(dict(session)),
            httponly=True, samesite="Strict", path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app), secure=self.get_cookie_secure(app))
        response.vary.add("Cookie")

    def _delete(self, sid: str) -> None:
        with self._sessions.begin() as db:
            db.execute(delete(WebSession).where(WebSession.id_hash == _hash(sid)))
            # A session row names its source: it must not outlive log-out in the WAL.
            forget_deleted(db)
