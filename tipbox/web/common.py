"""Plumbing shared by both app factories: config, i18n, CSRF, sessions, headers, errors."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, render_template, request
from flask_babel import Babel, get_locale, gettext
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from tipbox.config import REPO_ROOT, Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.instance import InstanceSecrets
from tipbox.web.request import NoSpoolRequest
from tipbox.web.security import add_security_headers
from tipbox.web.sessions import DatabaseSessionInterface

log = logging.getLogger(__name__)

ERROR_TEXT = {
    400: ("Something in that request was wrong",
          "Go back, check what you entered and try again."),
    403: ("Not allowed", "You may need to log in again."),
    404: ("Page not found", "Check the address, or start again from the home page."),
    405: ("That action is not possible here",
          "Use the buttons and links on the pages rather than typing addresses."),
    413: ("That upload is too large",
          "Nothing from it was kept. Send fewer or smaller files at a time."),
    500: ("Something went wrong on our side",
          "Nothing from that request was kept. Please try again in a few minutes."),
    503: ("Not accepting submissions right now",
          "Nothing was stored. Please come back later."),
}


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
    csrf: CSRFProtect


def build_app(import_name: str, settings: Settings, interface: str) -> tuple[Flask, Plumbing]:
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
        TIPBOX_SETTINGS=settings,
        TEMPLATES_AUTO_RELOAD=False,
    )
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    app.session_interface = DatabaseSessionInterface(
        sessions, interface, dt.timedelta(minutes=settings.session_idle_minutes))
    Babel(app)
    app.context_processor(lambda: {"current_locale": str(get_locale() or "en")})
    # Registered before CSRFProtect, whose check reads the form: the limit must already
    # be in force when the body is parsed.
    app.before_request(_limit_body())
    csrf = CSRFProtect(app)
    app.after_request(add_security_headers)
    _register_error_pages(app)
    return app, Plumbing(engine, sessions, secrets, csrf)


# Bodies that views read whole (forms) are small; only the submission view streams.
SMALL_FORM_BYTES = 64 * 1024
FORM_LIMITS = {
    "newsroom.reply": 256 * 1024,
    "admin.add_key": 1024 * 1024 + 64 * 1024,
}


def _limit_body() -> Callable[[], None]:
    """Per-route request size limits. Werkzeug reads a url-encoded body whole, so without
    this any form route would buffer up to the 2 GiB upload limit in memory."""

    def limit() -> None:
        if request.endpoint == "source.submit":
            return  # streamed by tipbox.web.multipart, bounded by max_submission_bytes
        request.max_content_length = FORM_LIMITS.get(request.endpoint or "", SMALL_FORM_BYTES)
        request.max_form_memory_size = request.max_content_length
        request.max_form_parts = 64

    return limit


def error_page(status: int, detail: str | None = None, **context: Any) -> tuple[str, int]:
    title, next_step = ERROR_TEXT.get(status, ERROR_TEXT[500])
    return render_template("errors/error.html", status=status, title=gettext(title),
                           next_step=gettext(next_step), detail=detail, **context), status


def _register_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> tuple[str, int]:
        return error_page(400, gettext(
            "This form had expired or was sent from somewhere else, so nothing was kept. "
            "Reload the page and send it again."))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
        # Keep the headers a status requires, such as Allow on a 405 (RFC 9110).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return (*error_page(exc.code or 500), headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[str, int]:
        # Class and stack only: an exception's message (a UnicodeDecodeError, say) can
        # quote submitted bytes, so it never reaches the log.
        log.error("unhandled %s in a request\n%s", exc.__class__.__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return error_page(500)
