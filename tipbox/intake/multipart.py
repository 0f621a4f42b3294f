"""A pull-based multipart/form-data reader over the raw request body.

Werkzeug's own form parser spools large file parts into temporary files on disk: exactly
what tipbox must never do with plaintext. This reader drives Werkzeug's sans-IO
:class:`MultipartDecoder` itself and hands out each part as a readable stream, so file
data flows straight from the socket into ``gpg``'s stdin and nowhere else. Only plain
form fields are held in memory, each up to a fixed limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
    State,
)

from tipbox.crypto.gpg import Readable
from tipbox.errors import MalformedUpload, UploadTooLarge
from tipbox.i18n import N_

_LINE_BREAK = re.compile(rb"[\r\n]")

NOT_A_FORM = N_("The upload was not a well-formed form submission.")
CUT_OFF = N_("The upload was cut off or malformed.")


class Part:
    """One part of the body. Read it to the end before asking for the next part."""

    def __init__(self, reader: MultipartReader, name: str, filename: str | None,
                 headers: Headers) -> None:
        self._reader = reader
        self.name = name
        self.filename = filename
        self.headers = headers
        self.at_end = False  # the decoder has seen this part's closing boundary
        self.finished = False  # ...and every byte of it has been handed out
        self.bytes_read = 0

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of this part (any amount if negative); b"" at its end."""
        if self.finished:
            return b""
        data = self._reader._read_part_data(self, size)
        self.bytes_read += len(data)
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole part, refusing more than ``limit`` bytes (for plain form fields)."""
        chunks = []
        total = 0
        while chunk := self.read():
            total += len(chunk)
            if total > limit:
                raise UploadTooLarge(N_("A form field is larger than allowed."))
            chunks.append(chunk)
        return b"".join(chunks)

    def drain(self) -> None:
        while self.read():
            pass


_BACKSLASH_NOT_BEFORE_QUOTE = re.compile(r'\\(?!")')


def _filename_as_sent(event: File) -> str:
    """The part's file name with every backslash kept as a path separator.

    Werkzeug reads a backslash in a quoted value as an escape, so the full path an old
    browser sends ("C:\\Users\\jdoe\\a.pdf") would lose its separators and keep the
    account name. Browsers never escape a backslash (they percent-encode quotes), so
    here each one, bar an escaped quote, is read as "/" for ``file_items.safe_filename`` to cut at.
    """
    disposition = event.headers.get("content-disposition", "")
    if "\\" not in disposition:
        return event.filename
    _, options = parse_options_header(_BACKSLASH_NOT_BEFORE_QUOTE.sub("/", disposition))
    return options.get("filename", event.filename)


class MultipartReader:
    """Iterate over the parts of a multipart body read from ``stream`` in chunks."""

    def __init__(self, stream: Readable, boundary: bytes, *, chunk_size: int,
                 max_parts: int, max_header_bytes: int = 64 * 1024) -> None:
        if not boundary or len(boundary) > 200:
            raise MalformedUpload(NOT_A_FORM)
        self._stream = stream
        self._chunk_size = chunk_size
        # max_form_memory_size bounds what the decoder buffers while looking for headers.
        self._decoder = MultipartDecoder(boundary, max_form_memory_size=None,
                                         max_parts=max_parts)
        self._max_header_bytes = max_header_bytes
        self._pending = bytearray()  # data of the current part not yet handed out
        self._current: Part | None = None
        self._held = b""  # end of the last chunk, kept back (see _feed)
        # CRLF, "--", the boundary, then "--" or CRLF.
        self._delimiter_len = len(boundary) + 6
        self._done = False

    def __iter__(self) -> Iterator[Part]:
        while True:
            part = self.next_part()
            if part is None:
                return
            yield part

    def next_part(self) -> Part | None:
        if self._current is not None and not self._current.finished:
            self._current.drain()
        while not self._done:
            event = self._next_event()
            if isinstance(event, Field | File):
                filename = _filename_as_sent(event) if isinstance(event, File) else None
                self._current = Part(self, event.name or "", filename, event.headers)
                self._pending.clear()
                return self._current
            if isinstance(event, Epilogue):
                self._done = True
            elif isinstance(event, Data | Preamble):
                continue  # stray data between parts is ignored, as browsers never send it
        return None

    # --- internals --------------------------------------------------------------------

    def _read_part_data(self, part: Part, size: int) -> bytes:
        if part is not self._current:
            raise RuntimeError("read from a part after moving past it")
        if not self._pending:
            data = self._next_part_data(part)
            if size < 0 or size >= len(data):
                # The common case for file parts: hand the decoder's bytes on as they
                # are; copying them through ``_pending`` cost two copies of every byte.
                part.finished = part.at_end
                return data
            self._pending += data
        if size < 0 or size >= len(self._pending):
            data = bytes(self._pending)
            self._pending.clear()
        else:
            data = bytes(self._pending[:size])
            del self._pending[:size]
        if not self._pending and part.at_end:
            part.finished = True
        return data

    def _next_part_data(self, part: Part) -> bytes:
        """The next non-empty piece of this part, or b"" once it has ended."""
        while not part.at_end:
            event = self._next_event()
            if not isinstance(event, Data):
                raise MalformedUpload(CUT_OFF)
            part.at_end = not event.more_data
            if event.data:
                return event.data
        return b""

    def _next_event(self) -> Data | Field | File | Epilogue | Preamble:
        decoder = self._decoder
        while True:
            try:
                event = decoder.next_event()
            except RequestEntityTooLarge:
                raise UploadTooLarge(N_("There are more parts in this upload than allowed.")) \
                    from None
            except (ValueError, UnicodeDecodeError, KeyError) as exc:
                raise MalformedUpload(CUT_OFF) from exc
            if not isinstance(event, NeedData):
                return event  # type: ignore[return-value]
            if decoder.complete:
                raise MalformedUpload(CUT_OFF)
            self._feed()

    def _feed(self) -> None:
        """Hand the decoder the next chunk of the body.

        Werkzeug's decoder (3.1) can misplace a line break when a chunk ends inside a
        delimiter (CRLF, dashes, boundary, and the two bytes after it): the part gains a
        stray b"\r". So the tail of each chunk from its first CR or LF within one
        delimiter's length of the end is held back and sent with the next chunk.
        """
        decoder = self._decoder
        if decoder.state in (State.PREAMBLE, State.PART) and \
                len(decoder.buffer) > self._max_header_bytes:
            raise MalformedUpload(CUT_OFF)
        data = self._read_body()
        if not data:
            if self._held:
                decoder.receive_data(self._held)
                self._held = b""
            decoder.receive_data(None)
            return
        chunk = self._held + data if self._held else data
        tail = max(0, len(chunk) - self._delimiter_len)
        match = _LINE_BREAK.search(chunk, tail)
        if match is None:
            self._held = b""
        else:
            chunk, self._held = chunk[:match.start()], chunk[match.start():]
        if chunk:
            decoder.receive_data(chunk)

    def _read_body(self) -> bytes:
        try:
            return self._stream.read(self._chunk_size)
        except RequestEntityTooLarge:
            raise UploadTooLarge(N_("The upload is larger than allowed.")) from None
        except (OSError, ClientDisconnected) as exc:
            # The client went away or the connection broke mid-upload.
            raise MalformedUpload(N_("The upload was interrupted before it finished.")) from exc
