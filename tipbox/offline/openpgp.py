"""A look at the outer packets of a ciphertext before gpg sees it.

tipbox items are OpenPGP messages encrypted to public keys: one or more public-key
encrypted session key packets (PKESK), then integrity-protected data (SEIPD or AEAD).
Anything else is refused here, before gpg runs: a password-protected message would make
gpg-agent pop up a passphrase dialog, a message without integrity protection could be
altered unnoticed, and plain literal data was never encrypted at all. The key ids read
from the PKESK packets name the keys an item needs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

HEAD_BYTES = 64 * 1024  # how much of a ciphertext the check reads
_PKESK, _SKESK, _MARKER = 1, 3, 10
_SED, _SEIPD, _AEAD = 9, 18, 20
_COMPRESSED, _LITERAL = 8, 11
_ARMOR_START = b"-----BEGIN PGP MESSAGE-----"
ANONYMOUS = "0000000000000000"


class NotAnItem(ValueError):
    """The data is not an OpenPGP message encrypted to public keys."""


@dataclass(frozen=True)
class Envelope:
    """Who an item is encrypted to: key ids (16 hex) or, for v6 packets, fingerprints."""

    recipients: tuple[str, ...]


def read_envelope(head: bytes) -> Envelope:
    """Check the packets before the encrypted data; ``head`` is the ciphertext's start."""
    data = _dearmor(head) if head.lstrip().startswith(_ARMOR_START) else head
    recipients: list[str] = []
    pos = 0
    while True:
        tag, body, pos = _next_packet(data, pos)
        if tag == _PKESK:
            recipients.append(_recipient(body))
        elif tag == _MARKER:
            continue
        elif tag in (_SEIPD, _AEAD):
            if not recipients:
                raise NotAnItem("it is not encrypted to any key")
            return Envelope(tuple(recipients))
        elif tag == _SKESK:
            raise NotAnItem("it is protected with a password, not with a newsroom key")
        elif tag == _SED:
            raise NotAnItem("it has no integrity protection")
        elif tag in (_COMPRESSED, _LITERAL):
            raise NotAnItem("it is not encrypted")
        else:
            raise NotAnItem(f"it starts with an unexpected OpenPGP packet (tag {tag})")


def _next_packet(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, body, next position); the body of a data packet is left empty."""
    first = _byte(data, pos)
    if not first & 0x80:
        raise NotAnItem("it is not OpenPGP data")
    pos += 1
    length: int | None
    if first & 0x40:  # new packet format
        tag = first & 0x3F
        octet = _byte(data, pos)
        if octet < 192:
            length, pos = octet, pos + 1
        elif octet < 224:
            length, pos = ((octet - 192) << 8) + _byte(data, pos + 1) + 192, pos + 2
        elif octet == 255:
            length, pos = int.from_bytes(_slice(data, pos + 1, 4), "big"), pos + 5
        else:
            length = None  # partial body length: only data packets stream like this
    else:
        tag = (first >> 2) & 0x0F
        kind = first & 0x03
        if kind == 3:
            length = None
        else:
            size = 1 << kind
            length, pos = int.from_bytes(_slice(data, pos, size), "big"), pos + size
    if tag in (_SEIPD, _AEAD, _SED, _COMPRESSED, _LITERAL):
        return tag, b"", pos
    if length is None:
        raise NotAnItem("its key packets are malformed")
    return tag, _slice(data, pos, length), pos + length


def _recipient(body: bytes) -> str:
    version = _byte(body, 0)
    if version == 3:
        return _slice(body, 1, 8).hex().upper()
    if version == 6:
        size = _byte(body, 1)
        # A zero size is an anonymous recipient; otherwise key version, then fingerprint.
        return _slice(body, 3, size - 1).hex().upper() if size else ANONYMOUS
    raise NotAnItem(f"it has a key packet of unknown version {version}")


def _byte(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise NotAnItem("it ends before its encrypted data (truncated, or too many keys)")
    return data[pos]


def _slice(data: bytes, pos: int, size: int) -> bytes:
    if size < 0 or pos + size > len(data):
        raise NotAnItem("it ends before its encrypted data (truncated, or too many keys)")
    return data[pos:pos + size]


def _dearmor(head: bytes) -> bytes:
    """The binary start of an ASCII-armored message (enough lines for the key packets)."""
    lines = head.lstrip().splitlines()[1:]
    while lines and lines[0].strip():  # armor headers such as "Version:"
        lines.pop(0)
    body = []
    for line in lines[1:-1]:  # the last line may be cut short
        line = line.strip()
        if not line or line.startswith((b"=", b"-----")):
            break
        body.append(line)
    joined = b"".join(body)
    try:
        return base64.b64decode(joined[:len(joined) - len(joined) % 4], validate=True)
    except binascii.Error as exc:
        raise NotAnItem("its ASCII armor is malformed") from exc
