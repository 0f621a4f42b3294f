"""A request class that can never spool an upload to disk."""

from __future__ import annotations

from typing import IO

from flask import Request


class NoSpoolRequest(Request):
    """Werkzeug writes file parts larger than 500 KiB to a temporary file. tipbox reads
    uploads itself (:mod:`tipbox.web.multipart`); if any code path ever asks Werkzeug to
    parse a file part, this refuses instead of writing plaintext to /tmp."""

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None,
        filename: str | None = None, content_length: int | None = None,
    ) -> IO[bytes]:
        raise RuntimeError("file uploads must go through tipbox.web.multipart")
