"""Just enough of OpenPGP's packet framing (RFC 9580 section 4) to judge what a file is
before gpg is asked anything: secret key material, the hashes of a key's
self-signatures, the features a key asks for. Bounded: it reads only the input it is
given, never recurses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

TAG_PKESK = 1
TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_SEIPD = 18
TAG_PUBLIC_SUBKEY = 14
SECRET_TAGS = frozenset({TAG_SECRET_KEY, TAG_SECRET_SUBKEY})

# Signature types that bind a key's own parts together (self-signatures in practice).
BINDING_SIG_TYPES = frozenset({0x13, 0x18, 0x19, 0x1F})
WEAK_HASHES = {1: "MD5", 2: "SHA-1", 3: "RIPEMD-160"}
# Self-signatures on user ids (0x10-0x13) and on the key itself (0x1F) carry its features.
FEATURE_SIG_TYPES = frozenset({0x10, 0x11, 0x12, 0x13, 0x1F})
SUBPACKET_ISSUER = 16  # key id, 8 octets
SUBPACKET_FEATURES = 30
SUBPACKET_ISSUER_FPR = 33  # version octet, then the fingerprint
# GnuPG's (LibrePGP's) flag for its OCB "AEAD encrypted data" packets (tag 20): GnuPG 2.3
# and later encrypt that way to a key that sets it.
FEATURE_LIBREPGP_AEAD = 0x02

_ARMOR_BEGIN_RE = re.compile(rb"-----BEGIN PGP ([A-Z ]{1,40})-----\r?\n")


class PacketError(ValueError):
    """The bytes are not well-formed OpenPGP."""


@dataclass(frozen=True)
class Packet:
    tag: int
    body: bytes


def dearmor(data: bytes) -> bytes:
    """Binary OpenPGP from armored text (every block, concatenated), or ``data`` as is."""
    blocks = _armor_blocks(data)
    if not blocks:
        if data.lstrip().startswith(b"-----BEGIN"):
            raise PacketError("unterminated armor")
        return data
    out = bytearray()
    for _kind, text in blocks:
        lines = text.replace(b"\r", b"").split(b"\n")
        # Armor headers end at the first empty line, when there are any.
        if b"" in lines and any(b":" in ln for ln in lines[:lines.index(b"")]):
            lines = lines[lines.index(b"") + 1:]
        body = b"".join(ln for ln in lines if ln and not ln.startswith(b"="))
        try:
            out += base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise PacketError("bad armor") from exc
    return bytes(out)


def armor_kinds(data: bytes) -> list[str]:
    """The armor labels in ``data``, e.g. ["PUBLIC KEY BLOCK"]."""
    return [kind.decode() for kind, _ in _armor_blocks(data)]


def _armor_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, text) of each complete armor block. Linear in the input: each label's END
    line is looked for once, not from every BEGIN line again (a file of a million BEGIN
    lines must not take minutes)."""
    blocks: list[tuple[bytes, bytes]] = []
    unterminated: set[bytes] = set()
    pos = 0
    while (begin := _ARMOR_BEGIN_RE.search(data, pos)) is not None:
        label = begin.group(1)
        if label in unterminated:
            pos = begin.end()
            continue
        end_line = b"-----END PGP " + label + b"-----"
        end = data.find(end_line, begin.end())
        if end < 0:
            unterminated.add(label)
            pos = begin.end()
            continue
        blocks.append((label, data[begin.end():end]))
        pos = end + len(end_line)
    return blocks


def iter_packets(data: bytes) -> Iterator[Packet]:
    """Every packet of a binary OpenPGP blob held in memory (keys are small)."""
    pos = 0
    while pos < len(data):
        tag, body, pos = _read_packet(data, pos)
        yield Packet(tag, body)


def _read_packet(data: bytes, pos: int) -> tuple[int, bytes, int]:
    ctb = data[pos]
    if not ctb & 0x80:
        raise PacketError(f"not an OpenPGP packet at byte {pos}")
    pos += 1
    if ctb & 0x40:  # new format
        tag = ctb & 0x3F
        body = bytearray()
        while True:
            length, partial, pos = new_length(data, pos)
            if pos + length > len(data):
                raise PacketError("packet runs past the end")
            body += data[pos:pos + length]
            pos += length
            if not partial:
                return tag, bytes(body), pos
    tag = (ctb >> 2) & 0x0F
    kind = ctb & 0x03
    if kind == 3:
        raise PacketError("indeterminate-length packets are not accepted here")
    size = (1, 2, 4)[kind]
    if pos + size > len(data):
        raise PacketError("truncated packet header")
    length = int.from_bytes(data[pos:pos + size], "big")
    pos += size
    if pos + length > len(data):
        raise PacketError("packet runs past the end")
    return tag, data[pos:pos + length], pos + length


def new_length(data: bytes, pos: int) -> tuple[int, bool, int]:
    """(length, is_partial, new position) of a new-format length (RFC 9580 4.2.1)."""
    if pos >= len(data):
        raise PacketError("truncated packet length")
    first = data[pos]
    if first < 192:
        return first, False, pos + 1
    if first < 224:
        if pos + 1 >= len(data):
            raise PacketError("truncated packet length")
        return ((first - 192) << 8) + data[pos + 1] + 192, False, pos + 2
    if first == 255:
        if pos + 5 > len(data):
            raise PacketError("truncated packet length")
        return int.from_bytes(data[pos + 1:pos + 5], "big"), False, pos + 5
    return 1 << (first & 0x1F), True, pos + 1


def signature_hash(body: bytes) -> tuple[int, int] | None:
    """(signature type, hash algorithm) of a signature packet body, or None if unknown."""
    if not body:
        return None
    version = body[0]
    if version in (4, 5, 6) and len(body) >= 4:
        return body[1], body[3]
    if version == 3 and len(body) >= 17:
        return body[2], body[16]
    return None


def has_secret_material(data: bytes) -> bool:
    """True for armored PRIVATE KEY blocks and for any secret-key packet."""
    if any("PRIVATE KEY" in kind for kind in armor_kinds(data)):
        return True
    try:
        return any(p.tag in SECRET_TAGS for p in iter_packets(dearmor(data)))
    except PacketError:
        return False


def weak_binding_hashes(data: bytes) -> list[str]:
    """Names of weak hashes (SHA-1, MD5, RIPEMD-160) used by a key's binding signatures."""
    found = []
    for packet in iter_packets(dearmor(data)):
        if packet.tag != TAG_SIGNATURE:
            continue
        parsed = signature_hash(packet.body)
        if parsed and parsed[0] in BINDING_SIG_TYPES and parsed[1] in WEAK_HASHES:
            found.append(WEAK_HASHES[parsed[1]])
    return sorted(set(found))


def asks_for_ocb(data: bytes) -> bool:
    """True if a self-signature of the key (one its primary key made, or one that does not
    say who made it) sets GnuPG's AEAD (OCB) feature flag. Certifications by other keys do
    not count: gpg takes a key's features from its own self-signatures."""
    primary: bytes | None = None
    for packet in iter_packets(dearmor(data)):
        if packet.tag == TAG_PUBLIC_KEY and primary is None:
            primary = _v4_fingerprint(packet.body)
            continue
        if packet.tag != TAG_SIGNATURE:
            continue
        parsed = signature_hash(packet.body)
        if not parsed or parsed[0] not in FEATURE_SIG_TYPES:
            continue
        hashed, unhashed = _subpackets(packet.body)
        issuers = {value[1:] for kind, value in hashed if kind == SUBPACKET_ISSUER_FPR}
        issuers |= {value for kind, value in hashed + unhashed if kind == SUBPACKET_ISSUER}
        if primary and issuers and not any(primary.endswith(i) for i in issuers if i):
            continue  # made by someone else
        for kind, value in hashed:
            if kind == SUBPACKET_FEATURES and value and value[0] & FEATURE_LIBREPGP_AEAD:
                return True
    return False


def _v4_fingerprint(body: bytes) -> bytes | None:
    """A v4 key's fingerprint (RFC 9580 5.5.4.2); None for other versions."""
    if not body or body[0] != 4:
        return None
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).digest()  # noqa: S324


def _subpackets(body: bytes) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """The hashed and unhashed subpackets of a v4, v5 or v6 signature, as (type without
    the critical bit, data). v4 counts each area's length in two octets, v5 and v6 in
    four (RFC 9580 5.2.3)."""
    if not body or body[0] not in (4, 5, 6):
        return [], []
    width = 2 if body[0] == 4 else 4
    hashed_start = 4 + width
    if len(body) < hashed_start:
        raise PacketError("truncated signature")
    hashed_end = hashed_start + int.from_bytes(body[4:hashed_start], "big")
    unhashed_start = hashed_end + width
    if unhashed_start > len(body):
        raise PacketError("signature subpackets run past the packet")
    unhashed_end = unhashed_start + int.from_bytes(body[hashed_end:unhashed_start], "big")
    if unhashed_end > len(body):
        raise PacketError("signature subpackets run past the packet")
    return (list(_subpacket_area(body, hashed_start, hashed_end)),
            list(_subpacket_area(body, unhashed_start, unhashed_end)))


def _subpacket_area(body: bytes, pos: int, end: int) -> Iterator[tuple[int, bytes]]:
    while pos < end:
        first = body[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 1 >= end:
                raise PacketError("truncated subpacket length")
            length, pos = ((first - 192) << 8) + body[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > end:
                raise PacketError("truncated subpacket length")
            length, pos = int.from_bytes(body[pos + 1:pos + 5], "big"), pos + 5
        if length == 0 or pos + length > end:
            raise PacketError("subpacket runs past its signature's subpacket area")
        yield body[pos] & 0x7F, body[pos + 1:pos + length]
        pos += length
