"""A strict walk over a tar file's headers, before :mod:`tarfile` reads any of it.

tarfile accepts far more than a bundle may hold, and some versions of it can be made to
loop, backtrack for minutes or read a gigabyte-sized pax header into memory. This walk
reads only the 512-byte headers (and pax headers of at most MAX_PAX_BYTES), accepts only
POSIX ustar regular files with optional pax headers, and checks that every member's data
lies inside the file. :mod:`tipbox.offline.bundle` then checks that tarfile sees exactly
the same members, so the two parsers can never disagree about what the bundle holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from tipbox.offline.errors import BundleRefused
from tipbox.offline.names import display

BLOCK = 512
MAX_PAX_BYTES = 16 * 1024
_ZERO = bytes(BLOCK)
_MAGIC = b"ustar\x0000"
_REGULAR = (b"0", b"\x00")
_TYPES = {
    b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
    b"4": "a block device", b"5": "a directory", b"6": "a FIFO", b"7": "a contiguous file",
    b"g": "a global pax header", b"L": "a GNU long name", b"K": "a GNU long link name",
    b"S": "a GNU sparse file", b"D": "a GNU directory dump", b"M": "a GNU multi-volume part",
    b"V": "a GNU volume label",
}
# pax keys a tar writer may add to a regular file; anything else (linkpath, sparse maps,
# a binary header charset, extended attributes) has no place in a bundle.
_PAX_KEYS = {"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname",
             "comment", "charset"}


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    offset: int  # where the member's data starts in the file


def scan(fh: BinaryIO, file_size: int, max_members: int) -> list[Member]:
    """Every member of the tar in ``fh``; :class:`BundleRefused` for anything odd."""
    members: list[Member] = []
    pos = 0
    pax: dict[str, str] | None = None
    while True:
        header = _read_at(fh, pos, BLOCK)
        if header == _ZERO:
            if pax is not None:
                raise BundleRefused("The bundle ends right after a pax header: it is damaged.")
            return members
        name, kind, size = _parse_header(header, pos)
        data = pos + BLOCK
        if kind == b"x":
            if pax is not None or size > MAX_PAX_BYTES:
                raise BundleRefused(f"The tar header at byte {pos} is not one a tipbox "
                                    "bundle can contain (oversized or repeated pax header).")
            pax = _parse_pax(_read_at(fh, data, size), pos)
            pos = data + _blocks(size)
            continue
        if kind not in _REGULAR:
            raise BundleRefused(
                f"The bundle contains {_TYPES.get(kind, 'an unknown member type')} "
                f"({display(name)!r}); a tipbox bundle holds regular files only.")
        if pax is not None:
            name = pax.get("path", name)
            size = _pax_size(pax.get("size"), size, pos)
            pax = None
        if size > file_size - data:
            raise BundleRefused(
                f"The member {display(name)!r} claims {size} bytes but the bundle file ends "
                f"before that ({file_size} bytes in all): it is truncated or forged.")
        members.append(Member(name, size, data))
        if len(members) > max_members:
            raise BundleRefused(f"The bundle has more than {max_members} members, more than "
                                "tipbox-open accepts: export fewer items per bundle.")
        pos = data + _blocks(size)


def _read_at(fh: BinaryIO, pos: int, size: int) -> bytes:
    fh.seek(pos)
    data = fh.read(size)
    if len(data) != size:
        raise BundleRefused("The bundle ends in the middle of a tar header: it is truncated "
                            "(the download or the copy may have been cut off).")
    return data


def _blocks(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _parse_header(header: bytes, pos: int) -> tuple[str, bytes, int]:
    if header[257:265] != _MAGIC:
        raise BundleRefused(f"The data at byte {pos} is not a POSIX tar header: this is not "
                            "a tipbox bundle, or it is damaged.")
    stored = _number(header[148:156], pos)
    if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
        raise BundleRefused(f"The tar header at byte {pos} has a wrong checksum: the bundle "
                            "is damaged.")
    raw = _cstring(header[345:500]) + b"/" if header[345] else b""
    raw += _cstring(header[0:100])
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleRefused(f"A member name at byte {pos} is not UTF-8.") from exc
    return name, header[156:157], _number(header[124:136], pos)


def _cstring(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _number(field: bytes, pos: int) -> int:
    if field[0] & 0x80:  # base-256, for sizes of 8 GiB and more
        if field[0] != 0x80:
            raise BundleRefused(f"The tar header at byte {pos} holds a negative number.")
        return int.from_bytes(field[1:], "big")
    digits = field.replace(b"\0", b" ").strip()
    if not digits:
        return 0
    if not all(48 <= c <= 55 for c in digits):
        raise BundleRefused(f"The tar header at byte {pos} holds a malformed number.")
    return int(digits, 8)


def _parse_pax(data: bytes, pos: int) -> dict[str, str]:
    """Records ``"<len> <key>=<value>\\n"``; refused unless each is well formed."""
    records: dict[str, str] = {}
    rest = data
    while rest:
        length_digits, space, _ = rest[:21].partition(b" ")
        if not space or not length_digits.isdigit():
            raise BundleRefused(f"The pax header at byte {pos} is malformed.")
        length = int(length_digits)
        record, rest = rest[:length], rest[length:]
        if length <= len(length_digits) + 1 or len(record) != length or record[-1:] != b"\n":
            raise BundleRefused(f"The pax header at byte {pos} is malformed.")
        key, equals, value = record[len(length_digits) + 1:-1].partition(b"=")
        try:
            text_key, text_value = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleRefused(f"The pax header at byte {pos} is not UTF-8.") from exc
        if not equals or text_key not in _PAX_KEYS or text_key in records:
            raise BundleRefused(f"The pax header at byte {pos} holds {display(text_key)!r}, "
                                "which a tipbox bundle never needs.")
        records[text_key] = text_value
    return records


def _pax_size(value: str | None, size: int, pos: int) -> int:
    if value is None:
        return size
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise BundleRefused(f"The pax header at byte {pos} gives a malformed size.")
    return int(value)
