"""How request bodies are read: never spooled to disk, streamed where a view says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, TypeVar

from flask import Request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, ClientDisconnected

from tipbox.crypto.gpg import Readable
from tipbox.errors import MalformedUpload
from tipbox.intake.multipart import CUT_OFF


class NoSpoolRequest(Request):
    """Werkzeug writes file parts larger than 500 KiB to a temporary file. tipbox reads
    uploads itself (:mod:`tipbox.intake.multipart`); if any code path ever asks Werkzeug to
    parse a file part, this refuses instead of writing plaintext to /tmp."""

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None,
        filename: str | None = None, content_length: int | None = None,
    ) -> IO[bytes]:
        # Only the submission view takes files, and it reads them itself.
        raise BadRequest("Files can only be sent with the submission form.")


class ServerBody:
    """``request.stream`` for a view that reads its own body (tipbox.intake): the server's
    complaints about the body's framing (gunicorn's ParseException: a chunk size that is
    not hexadecimal, a chunk without its terminator) are the client's fault, answered as a
    malformed upload (400), not as an unexpected error (500, with a traceback logged at
    any client's wish)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._stream.read(size)
        except ParseException:
            raise MalformedUpload(CUT_OFF) from None


F = TypeVar("F", bound=Callable[..., object])  # any view: the mark keeps its type
_STREAMS_BODY = "tipbox_streams_body"


def streams_body(view: F) -> F:
    """Mark a view that reads its request body itself, as a stream (tipbox.intake).

    The app factory reads the mark: such a route has no small form-size limit (the
    upload limit bounds it), and it is left out of the automatic CSRF check, which would
    parse the whole body first; the view must check the token itself, from the first
    multipart field, before it stores any byte (tipbox.intake.upload.check_csrf_first).
    Put it above ``login_required`` and the like: functools.wraps copies the mark.
    """
    setattr(view, _STREAMS_BODY, True)
    return view


def view_streams_body(view: Callable[..., object] | None) -> bool:
    return bool(getattr(view, _STREAMS_BODY, False))


class ArrivingBody:
    """The request body as it arrives, for views that stream it (tipbox.intake).

    Werkzeug's ``request.stream`` reads through ``io.RawIOBase.read``, which allocates the
    whole size asked for (1 MiB per upload read) before it waits for the first byte: 200
    uploads trickling in over Tor each held such a buffer for as long as they waited.
    This reads ``wsgi.input`` directly with ``read1`` where the server offers it
    (tipbox.serve.request_body; the test client's BytesIO too): what has arrived, up to
    the size asked, never past Content-Length.
    """

    def __init__(self, wsgi_input: Any, content_length: int) -> None:
        self._input = wsgi_input
        self._left = content_length
        self._read = getattr(wsgi_input, "read1", None) or wsgi_input.read

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._read(self._left if size < 0 else min(size, self._left))
        if not data:  # the client went away before sending what it announced
            raise ClientDisconnected()
        self._left -= len(data)
        return data


def streamed_body(request: Request) -> Readable:
    """The body of ``request`` for a view marked :func:`streams_body`: as it arrives when
    its length is known and within the upload limit, else Werkzeug's stream, which
    refuses a length over the limit (413) and cuts a chunked body off at it."""
    length = request.content_length
    limit = request.max_content_length
    if length is None or (limit is not None and length > limit):
        return ServerBody(request.stream)
    return ArrivingBody(request.environ["wsgi.input"], length)
