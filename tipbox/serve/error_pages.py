"""The pages gunicorn answers itself, before the app runs (a malformed request, a head too
long, an error the app let escape), with the same security headers as the app's pages."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from tipbox.web.security import SECURITY_HEADERS, content_security_policy


def error_page(status: int) -> bytes:
    """A whole HTTP/1.1 answer with ``status``, closing the connection."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    # One <main> holding everything: assistive technology finds the page's content there.
    body = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{status} {phrase}</title></head>\n<body><main><h1>{phrase}</h1>\n"
            "<p>The server could not read this request. Go back and try again.</p>"
            "</main></body></html>\n").encode()
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Content-Security-Policy": content_security_policy(),
        **SECURITY_HEADERS,
    }
    head = f"HTTP/1.1 {status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in
                                                      headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def use_tipbox_error_pages() -> None:
    """Make gunicorn write :func:`error_page` wherever it writes an error page itself.

    Its own page lacks the security headers and quotes gunicorn's message, which may
    repeat what the client sent; that message still reaches the (redacted) error log.
    """
    from gunicorn import util

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, error_page(status_int))

    util.write_error = write_error
