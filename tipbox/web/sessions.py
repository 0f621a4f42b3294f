"""Server-side sessions: the cookie holds a random id and nothing else.

Flask's own session cookie is signed, not encrypted, so whatever it holds is readable
by anyone who sees the browser's cookies. Here the data stays in the database, keyed by
the SHA-256 of the id, and expires after an idle period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from tipbox.db import forget_deleted
from tipbox.models import WebSession


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(_self: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.modified = False
        self.rotate = False
        self.stored_expiry: dt.datetime | None = None  # as read from the database

    def regenerate(self) -> None:
        """Issue a new id at the next save (at login), so a planted id is worthless."""
        self.rotate = True
        self.modified = True


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


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

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app))
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
            if purged.rowcount:  # type: ignore[attr-defined]
                forget_deleted(db)
        if sid != session.sid:
            session.sid = sid
        response.set_cookie(
            name, sid, httponly=True, samesite="Strict", path=path, domain=domain,
            secure=self.get_cookie_secure(app),
        )
        response.vary.add("Cookie")

    def _delete(self, sid: str) -> None:
        with self._sessions.begin() as db:
            db.execute(delete(WebSession).where(WebSession.id_hash == _hash(sid)))
            # A session row names its source: it must not outlive log-out in the WAL.
            forget_deleted(db)
