"""Is this upload exactly an OpenPGP message to the newsroom keys? Checked while it streams.

When the source's browser encrypts (static/encrypt.js), the server cannot look inside, but
it can check the shape of what arrives, so that plaintext, a message to someone else or a
damaged file is never stored as if it were a submission. The only shape accepted
(RFC 9580 sections 4, 5.1 and 5.13):

    PKESK v3 (tag 1)  one per newsroom key, to one of its encryption subkeys; no other
    ...
    SEIPD v1 (tag 18) integrity protected (MDC); the only form GnuPG 2.2 reads
    <end of input>

The check holds at most one packet header and one PKESK body (a few KiB) in memory, never
recurses, and can be fed the input in chunks of any size.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import TypedDict

from tipbox.crypto.packets import TAG_PKESK, TAG_SEIPD, PacketError, new_length

MAX_PKESK_BODY = 4096  # RSA-8192 needs about 1 KiB; anything larger is not a real PKESK
# RFC 9580 4.2.1.4 asks at least 512 octets of the first partial-length chunk. Asking it of
# every partial chunk caps the check's work: each chunk header costs a few Python steps,
# so a stream of 1-octet chunks cost 130 times a normal one (1.33 s of CPU per MiB). GnuPG
# and OpenPGP.js both write chunks of 512 octets or more; only the last, which has a
# definite length, may be shorter. bench/packet_check.py measures the cost at 512.
MIN_PARTIAL_CHUNK = 512
# Version octet, the shortest random prefix (8-byte block + 2), a literal data packet
# (2 + 6 octets) and the 22-octet MDC packet.
MIN_SEIPD_BODY = 1 + 10 + 8 + 22
SEIPD_V1 = 1
PKESK_V3 = 3
_WILDCARD_KEY_ID = "0" * 16


class Refusal(enum.Enum):
    """Why an upload is not an acceptable message. Never carries any of its bytes."""

    NOT_ENCRYPTED = "not an encrypted OpenPGP message"
    UNKNOWN_RECIPIENT = "encrypted to a key that is not an active newsroom key"
    MISSING_RECIPIENT = "not encrypted to every active newsroom key"
    UNSUPPORTED = "an OpenPGP form that is not accepted (needs PKESK v3 + SEIPD v1)"
    MALFORMED = "damaged OpenPGP framing"
    TRUNCATED = "cut off before the end of the message"
    TRAILING_DATA = "more data after the end of the message"


class MessageRefused(PacketError):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class CheckSnapshot(TypedDict):
    """Where a check stands between requests (:meth:`EncryptedMessageCheck.snapshot`),
    saved as JSON with an upload sent in pieces. Hex strings hold the framing octets."""

    uncovered: list[str]  # fingerprints no PKESK has named yet
    seen_ids: list[str]  # key ids the PKESKs so far were to
    done: bool
    header: str
    in_packet: bool
    tag: int
    remaining: int
    partial: bool
    pkesk: str
    seipd_bytes: int
    packets: int
    bytes_seen: int


class EncryptedMessageCheck:
    """Feed the upload with :meth:`feed`, then call :meth:`finish`; either raises
    :class:`MessageRefused` as soon as the input cannot be an acceptable message."""

    def __init__(self, recipients: Mapping[str, Collection[str]]) -> None:
        """``recipients``: each active key's fingerprint -> its encryption key ids."""
        self._owner = {kid.upper(): fpr for fpr, kids in recipients.items() for kid in kids}
        self._uncovered = set(recipients)
        self._seen_ids: set[str] = set()
        self._done = False  # the SEIPD packet ended: nothing may follow
        self._header = bytearray()  # header octets of the packet or chunk being read
        self._in_packet = False  # a partial-length packet continues with another chunk
        self._tag = 0
        self._remaining = 0  # body octets left in the current chunk
        self._partial = False  # more chunks follow the current one
        self._pkesk = bytearray()
        self._seipd_bytes = 0
        self._packets = 0  # packets started so far
        self.bytes_seen = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        self.bytes_seen += len(data)
        while pos < len(view):
            if self._done:
                raise MessageRefused(Refusal.TRAILING_DATA)
            if self._remaining:
                take = min(self._remaining, len(view) - pos)
                self._body(view[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._end_of_chunk()
            else:
                self._header.append(view[pos])
                pos += 1
                self._parse_header()

    def finish(self) -> None:
        """The upload ended: it must have ended exactly at the end of the SEIPD packet."""
        if not self._done:
            raise MessageRefused(Refusal.NOT_ENCRYPTED if not self.bytes_seen
                                 else Refusal.TRUNCATED)

    # --- carried across requests (an upload sent in pieces, tipbox.intake.pieces) ---------

    def snapshot(self) -> CheckSnapshot:
        """Where the check stands, as plain JSON-able data: a few hundred octets of framing
        (a header in progress, at most one PKESK body, which are public), never any of the
        encrypted data."""
        return {"uncovered": sorted(self._uncovered), "seen_ids": sorted(self._seen_ids),
                "done": self._done, "header": self._header.hex(),
                "in_packet": self._in_packet, "tag": self._tag, "remaining": self._remaining,
                "partial": self._partial, "pkesk": self._pkesk.hex(),
                "seipd_bytes": self._seipd_bytes, "packets": self._packets,
                "bytes_seen": self.bytes_seen}

    @classmethod
    def resume(cls, recipients: Mapping[str, Collection[str]],
               snapshot: CheckSnapshot) -> EncryptedMessageCheck:
        """A check that carries on where :meth:`snapshot` left it, for the same keys.

        Raises ValueError for a snapshot that does not fit them. Every field is checked and
        converted again, whatever its type says: it comes back from the database."""
        check = cls(recipients)
        uncovered = {str(f) for f in snapshot["uncovered"]}
        seen = {str(k) for k in snapshot["seen_ids"]}
        if not uncovered <= set(recipients) or not seen <= set(check._owner):
            raise ValueError("a check snapshot for other keys")
        header, pkesk = bytes.fromhex(snapshot["header"]), bytes.fromhex(snapshot["pkesk"])
        if len(header) > 8 or len(pkesk) > MAX_PKESK_BODY:
            raise ValueError("a check snapshot out of bounds")
        check._uncovered, check._seen_ids = uncovered, seen
        check._done = bool(snapshot["done"])
        check._header = bytearray(header)
        check._in_packet = bool(snapshot["in_packet"])
        check._tag = int(snapshot["tag"])
        check._remaining = int(snapshot["remaining"])
        check._partial = bool(snapshot["partial"])
        check._pkesk = bytearray(pkesk)
        check._seipd_bytes = int(snapshot["seipd_bytes"])
        check._packets = int(snapshot["packets"])
        check.bytes_seen = int(snapshot["bytes_seen"])
        return check

    # --- framing ----------------------------------------------------------------------

    def _parse_header(self) -> None:
        head = self._header
        if self._in_packet:  # the next chunk of a partial-length packet
            parsed = _new_length(head)
            if parsed is None:
                return
            length, partial = parsed
        else:
            ctb = head[0]
            if not ctb & 0x80:
                # Plain text, armor ("-----BEGIN"), or anything else that is not binary.
                raise MessageRefused(Refusal.MALFORMED if self._packets
                                     else Refusal.NOT_ENCRYPTED)
            if ctb & 0x40:  # new format: tag in six bits, RFC 9580 4.2.1 lengths
                parsed = _new_length(head[1:])
                if parsed is None:
                    return
                tag = ctb & 0x3F
                length, partial = parsed
            else:  # legacy format: tag in four bits, 1, 2 or 4 length octets
                kind = ctb & 0x03
                if kind == 3:
                    raise MessageRefused(Refusal.MALFORMED)  # indeterminate length
                size = 1 << kind
                if len(head) < 1 + size:
                    return
                tag = (ctb >> 2) & 0x0F
                length, partial = int.from_bytes(head[1:1 + size], "big"), False
            self._start_packet(tag, partial)
        if partial and length < MIN_PARTIAL_CHUNK:
            raise MessageRefused(Refusal.MALFORMED)
        self._header.clear()
        self._remaining = length
        self._partial = partial
        if not length:
            self._end_of_chunk()

    def _start_packet(self, tag: int, partial: bool) -> None:
        self._tag = tag
        self._in_packet = True
        self._packets += 1
        if tag == TAG_PKESK:
            if partial:  # only data packets may have partial lengths (RFC 9580 4.2.1.4)
                raise MessageRefused(Refusal.MALFORMED)
            self._pkesk.clear()
        elif tag == TAG_SEIPD:
            if self._uncovered or not self._seen_ids:
                raise MessageRefused(Refusal.MISSING_RECIPIENT)
            self._seipd_bytes = 0
        elif tag in (3, 9, 20):  # password-encrypted, unprotected, or LibrePGP OCB
            raise MessageRefused(Refusal.UNSUPPORTED)
        elif tag == 0:
            raise MessageRefused(Refusal.MALFORMED)  # reserved: never valid
        else:
            raise MessageRefused(Refusal.NOT_ENCRYPTED)

    def _body(self, chunk: memoryview) -> None:
        if self._tag == TAG_PKESK:
            if len(self._pkesk) + len(chunk) > MAX_PKESK_BODY:
                raise MessageRefused(Refusal.MALFORMED)
            self._pkesk += chunk
            return
        if not self._seipd_bytes and chunk[0] != SEIPD_V1:
            raise MessageRefused(Refusal.UNSUPPORTED)  # v2 (AEAD): GnuPG 2.2 cannot read it
        self._seipd_bytes += len(chunk)

    def _end_of_chunk(self) -> None:
        if self._partial:
            return  # another length header follows; _in_packet stays set
        self._in_packet = False
        if self._tag == TAG_PKESK:
            key_id = pkesk_key_id(bytes(self._pkesk))
            if key_id in self._seen_ids:
                raise MessageRefused(Refusal.MALFORMED)  # the same recipient twice
            owner = self._owner.get(key_id)
            if owner is None:
                raise MessageRefused(Refusal.UNKNOWN_RECIPIENT)
            self._seen_ids.add(key_id)
            self._uncovered.discard(owner)
        else:
            if self._seipd_bytes < MIN_SEIPD_BODY:
                raise MessageRefused(Refusal.TRUNCATED)
            self._done = True


def _new_length(octets: bytes | bytearray) -> tuple[int, bool] | None:
    """(length, partial) of a new-format length, or None while more octets are needed."""
    try:
        length, partial, _ = new_length(bytes(octets), 0)
    except PacketError:  # truncated: the next chunk brings the rest
        return None
    return length, partial


def pkesk_key_id(body: bytes) -> str:
    """The recipient key id of a v3 PKESK body whose fields fill it exactly.

    Raises :class:`MessageRefused` for any other version, algorithm or layout.
    """
    if len(body) < 10:
        raise MessageRefused(Refusal.MALFORMED)
    if body[0] != PKESK_V3:
        raise MessageRefused(Refusal.UNSUPPORTED)
    key_id = body[1:9].hex().upper()
    if key_id == _WILDCARD_KEY_ID:
        raise MessageRefused(Refusal.UNKNOWN_RECIPIENT)  # an anonymous recipient
    algorithm, pos = body[9], 10
    if algorithm in (1, 2):  # RSA: one MPI
        pos = _skip_mpi(body, pos)
    elif algorithm == 18:  # ECDH: ephemeral point as an MPI, then the wrapped key
        pos = _skip_counted(body, _skip_mpi(body, pos))
    elif algorithm in (25, 26):  # X25519, X448: fixed ephemeral key, then the wrapped key
        pos = _skip_counted(body, pos + (32 if algorithm == 25 else 56))
    else:
        raise MessageRefused(Refusal.UNSUPPORTED)
    if pos != len(body):
        raise MessageRefused(Refusal.MALFORMED)
    return key_id


def _skip_mpi(body: bytes, pos: int) -> int:
    if pos + 2 > len(body):
        raise MessageRefused(Refusal.MALFORMED)
    bits = int.from_bytes(body[pos:pos + 2], "big")
    end = pos + 2 + (bits + 7) // 8
    if not bits or end > len(body):
        raise MessageRefused(Refusal.MALFORMED)
    return end


def _skip_counted(body: bytes, pos: int) -> int:
    """Past a one-octet count and that many octets."""
    if pos >= len(body) or not body[pos]:
        raise MessageRefused(Refusal.MALFORMED)
    end = pos + 1 + body[pos]
    if end > len(body):
        raise MessageRefused(Refusal.MALFORMED)
    return end
