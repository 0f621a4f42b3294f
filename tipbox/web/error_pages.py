"""Every error answer of both apps: HTTP errors, CSRF failures, and the one handler that
renders any domain failure (tipbox.errors) as a page or, for encrypt.js, as JSON."""

from __future__ import annotations

import errno
import logging
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, jsonify, render_template, request
from flask_babel import format_decimal, gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from tipbox.errors import ByteCount, DatabaseUnavailable, StoreError, TipboxError
from tipbox.i18n import N_
from tipbox.intake.upload import CSRF_REFUSED
from tipbox.web.locales import format_size
from tipbox.web.request import view_streams_body

log = logging.getLogger(__name__)

ERROR_TEXT = {
    400: (N_("Something in that request was wrong"),
          N_("Go back, check what you entered and try again.")),
    403: (N_("Not allowed"), N_("You may need to log in again.")),
    404: (N_("Page not found"), N_("Check the address, or start again from the home page.")),
    405: (N_("That action is not possible here"),
          N_("Use the buttons and links on the pages rather than typing addresses.")),
    413: (N_("That upload is too large"),
          N_("Nothing from it was kept. Send fewer or smaller files at a time.")),
    500: (N_("Something went wrong on our side"),
          N_("Nothing from that request was kept. Please try again in a few minutes.")),
    503: (N_("Not accepting submissions right now"),
          N_("Nothing was stored. Please come back later.")),
    507: (N_("The site's storage is full"),
          N_("Nothing was stored. Please come back later.")),
}

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def error_page(status: int, detail: str | None = None, *, title: str | None = None,
               **context: Any) -> tuple[str, int]:
    """The error page for ``status``; ``title`` (untranslated) replaces its usual heading."""
    usual_title, next_step = ERROR_TEXT.get(status, ERROR_TEXT[500])
    return render_template("errors/error.html", status=status,
                           title=gettext(title or usual_title), next_step=gettext(next_step),
                           detail=detail, **context), status


def wants_json() -> bool:
    """encrypt.js asks for JSON: it shows the outcome in the page itself."""
    return request.accept_mimetypes.best_match(
        ["text/html", "application/json"]) == "application/json"


def failure_for(exc: BaseException) -> TipboxError | None:
    """The domain failure an exception stands for, or None if it is unexpected.

    Code outside tipbox.intake can meet a full disk or a lost database too (a session
    read, a login); those get the same clear answers as the upload path's own."""
    if isinstance(exc, TipboxError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return StoreError.from_os_error(exc, "handling a request")
    if isinstance(exc, DBAPIError):
        return DatabaseUnavailable(type(exc.orig or exc).__name__)
    return None


def answer_failure(failure: TipboxError) -> tuple[str | Response, int, dict[str, str]]:
    """The one rendering of a domain failure: its status, message and flags decide."""
    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
    return (*_render_failure(failure), headers)


def _localised(params: Mapping[str, object]) -> dict[str, object]:
    """Numbers and sizes as the reader's locale writes them (100,000; 100 000; ١٠٠٬٠٠٠)."""
    def one(value: object) -> object:
        if isinstance(value, ByteCount):
            return format_size(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return format_decimal(value)
        return value
    return {name: one(value) for name, value in params.items()}


def _render_failure(failure: TipboxError) -> tuple[str | Response, int]:
    if failure.status >= 500:
        # Class and a short cause only: a message can quote submitted bytes. Without a
        # cause, the stack says where it came from.
        if failure.log_cause:
            log.error("request refused, %s: %s", type(failure).__name__, failure.log_cause)
        else:
            _log_unexpected(failure)
    if failure.drain_body:
        _drain_body()  # lets the browser read our page instead of a reset
    message = gettext(failure.public_message, **_localised(failure.params)) \
        if failure.public_message else None
    if wants_json():
        if message is None:
            title, next_step = ERROR_TEXT.get(failure.status, ERROR_TEXT[500])
            message = gettext("%(problem)s. %(next_step)s", problem=gettext(title),
                              next_step=gettext(next_step))
        extra = {"freshProof": True} if failure.fresh_proof_helps else {}
        return jsonify(error=message, reload=failure.reload_keys, **extra), failure.status
    if view_streams_body(_current_view()):
        return render_template("source/submit_failed.html", message=message,
                               status=failure.status), failure.status
    return error_page(failure.status, message, title=failure.public_title)


def register_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> tuple[str, int]:
        return error_page(400, gettext(CSRF_REFUSED))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
        # Keep the headers a status requires, such as Allow on a 405 (RFC 9110).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return (*error_page(exc.code or 500), headers)

    @app.errorhandler(Exception)
    def failed(exc: Exception) -> tuple[str | Response, int] | tuple[
            str | Response, int, dict[str, str]]:
        failure = failure_for(exc)
        if failure is not None:
            return answer_failure(failure)
        _log_unexpected(exc)
        return error_page(500)


def _log_unexpected(exc: BaseException) -> None:
    # Class and stack only: an exception's message (a UnicodeDecodeError, say) can quote
    # submitted bytes, so it never reaches the log.
    log.error("unhandled %s in a request\n%s", exc.__class__.__name__,
              "".join(traceback.format_tb(exc.__traceback__)))


def _current_view() -> Any:
    return current_app.view_functions.get(request.endpoint or "")


def _drain_body() -> None:
    try:
        while request.stream.read(1024 * 1024):
            pass
    except Exception:  # noqa: S110 - the page is sent either way
        pass
