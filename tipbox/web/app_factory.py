"""The app factory both interfaces build on: config, i18n, CSRF, sessions, headers, errors."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tipbox.config import REPO_ROOT, Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.hashing_slots import HashingSlots
from tipbox.instance import InstanceSecrets
from tipbox.web import locales
from tipbox.web.error_pages import register_error_pages
from tipbox.web.request import NoSpoolRequest, view_streams_body
from tipbox.web.security import add_security_headers
from tipbox.web.sessions import DatabaseSessionInterface

log = logging.getLogger(__name__)


class TipboxFlask(Flask):
    def log_exception(self, exc_info: Any) -> None:
        """Class and stack only, never the message: an exception's text (a
        UnicodeDecodeError, say) can quote submitted bytes."""
        exc_type, _exc, tb = exc_info
        log.error("unhandled %s\n%s", getattr(exc_type, "__name__", "exception"),
                  "".join(traceback.format_tb(tb)))


@dataclass(frozen=True)
class Plumbing:
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: InstanceSecrets
    # One bound on scrypt and Argon2id for the whole process (tipbox.hashing_slots).
    hashing: HashingSlots


def build_app(import_name: str, settings: Settings, interface: str,
              hashing: HashingSlots | None = None) -> tuple[Flask, Plumbing]:
    """A Flask app with everything both interfaces share wired in."""
    app = TipboxFlask(import_name, template_folder=str(REPO_ROOT / "templates"),
                static_folder=str(REPO_ROOT / "static"), static_url_path="/static")
    app.request_class = NoSpoolRequest
    secrets = InstanceSecrets.load(settings.secrets_file)
    app.config.update(
        SECRET_KEY=secrets.flask_secret_key,
        SESSION_COOKIE_NAME=f"tipbox_{interface}",
        MAX_CONTENT_LENGTH=settings.max_submission_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_form_field_bytes,
        # A slow upload over Tor can take hours; the form must still be accepted then.
        WTF_CSRF_TIME_LIMIT=settings.csrf_time_limit_seconds,
        WTF_CSRF_SSL_STRICT=False,
        # The check runs from _check_csrf, which knows the views that stream their body.
        WTF_CSRF_CHECK_DEFAULT=False,
        TIPBOX_SETTINGS=settings,
        TEMPLATES_AUTO_RELOAD=False,
    )
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    app.session_interface = DatabaseSessionInterface(
        sessions, interface, dt.timedelta(minutes=settings.session_idle_minutes))
    locales.init_app(app)
    # Registered before the CSRF check, which reads the form: the limit must already be
    # in force when the body is parsed.
    app.before_request(_limit_body(app))
    csrf = CSRFProtect(app)
    app.before_request(_check_csrf(app, csrf))
    app.after_request(add_security_headers)
    register_error_pages(app)
    return app, Plumbing(engine, sessions, secrets,
                         hashing or HashingSlots.for_this_machine())


def run_first(app: Flask, check: Callable[[], Any]) -> None:
    """Register ``check`` to run before every other before-request function, the size
    limit and the CSRF check included."""
    app.before_request_funcs.setdefault(None, []).insert(0, check)


# Bodies that views read whole (forms) are small; only views marked streams_body stream.
SMALL_FORM_BYTES = 64 * 1024
FORM_LIMITS = {
    "newsroom.reply": 256 * 1024,
    "admin.add_key": 1024 * 1024 + 64 * 1024,
}


def _limit_body(app: Flask) -> Callable[[], None]:
    """Per-route request size limits. Werkzeug reads a url-encoded body whole, so without
    this any form route would buffer up to the 2 GiB upload limit in memory."""

    def limit() -> None:
        if view_streams_body(app.view_functions.get(request.endpoint or "")):
            return  # read by tipbox.intake.multipart, bounded by max_submission_bytes
        request.max_content_length = FORM_LIMITS.get(request.endpoint or "", SMALL_FORM_BYTES)
        request.max_form_memory_size = request.max_content_length
        request.max_form_parts = 64

    return limit


def _check_csrf(app: Flask, csrf: CSRFProtect) -> Callable[[], None]:
    """Flask-WTF's check on every state-changing request, except in views that stream
    their body: it would parse the whole upload first. Those check the token themselves,
    from the first field, before storing anything. Keyed on the view function's own mark,
    not on a dotted name that could point at another function."""

    def check() -> None:
        if not app.config["WTF_CSRF_ENABLED"] or not request.endpoint:
            return
        if view_streams_body(app.view_functions.get(request.endpoint)):
            return
        csrf.protect()

    return check
