"""What a file item is given before it is encrypted: the name that travels inside its
ciphertext, whether compressing it is worth the CPU, and its first bytes put back in front
of the stream they were read from."""

from __future__ import annotations

import unicodedata
import zlib

from tipbox.crypto.gpg import Readable

# OpenPGP literal data packets hold at most 255 bytes of file name.
MAX_FILENAME_BYTES = 255


class Prefixed:
    """A stream that first yields bytes already read from another stream."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head: bytes | None = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return self._rest.read(size)


def worth_compressing(sample: bytes) -> bool:
    """True when a fast zlib pass shrinks the first bytes by more than 10%.

    Most leaked documents (PDF, JPEG, DOCX, ZIP, video) are compressed already;
    compressing them again costs several times the CPU of encryption for nothing.
    """
    if len(sample) < 512:
        return False
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


def safe_filename(raw: str, index: int) -> str:
    """The name that travels inside the ciphertext.

    Directory parts are dropped (old browsers sent full paths, which can name the
    source's account), so are control, format and bidi-override characters; the result
    fits OpenPGP's 255-byte limit with its extension kept.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name
                   if unicodedata.category(ch)[0] != "C" and ch not in "\u2028\u2029")
    name = name.strip().strip(".").strip()
    if not name:
        return f"file-{index}"
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = (dot + ext) if dot and 0 < len(ext.encode()) <= 16 else ""
        stem = stem if ext else name
        budget = MAX_FILENAME_BYTES - len(ext.encode())
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
        name = stem + ext
    return name
