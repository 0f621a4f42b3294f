"""A request class that can never spool an upload to disk."""

from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import BadRequest


class NoSpoolRequest(Request):
    """Werkzeug writes file parts larger than 500 KiB to a temporary file. tipbox reads
    uploads itself (:mod:`tipbox.web.multipart`); if any code path ever asks Werkzeug to
    parse a file part, this refuses instead of writing plaintext to /tmp."""

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None,
        filename: str | None = None, content_length: int | None = None,
    ) -> IO[bytes]:
        # Only the submission view takes files, and it reads them itself.
        raise BadRequest("Files can only be sent with the submission form.")
