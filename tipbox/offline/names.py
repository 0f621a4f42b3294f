"""Names that come from a bundle, made safe to show and to use on disk.

Everything here treats its input as hostile: a source chooses the original file name, and
a compromised server could choose the designation. Names never carry a path, never start
with a dot, never hold control, format or bidi characters, fit in MAX_NAME_BYTES, and
never replace a file that is already there.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Collection
from pathlib import Path

MAX_NAME_BYTES = 200
MAX_FOLDER_BYTES = 100
MAX_EXTENSION_BYTES = 16
# Refused by Windows and by FAT/exFAT, where a journalist may well copy the results.
_PORTABILITY = set('<>:"|?*')
_SPACES = re.compile(r"\s+")


def display(text: str) -> str:
    """``text`` as it may be printed on a terminal or in the index.

    Control, format, bidi, surrogate and unassigned characters (and the backslash that
    introduces the escapes) are shown as escapes, so a name cannot move the cursor,
    recolour the terminal or reorder what the journalist reads.
    """
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif _is_invisible(ch):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _is_invisible(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def file_name(raw: str, fallback: str = "file") -> str:
    """A single, harmless file name from an original name chosen by the source.

    Only the last path component is kept (``../../x`` gives ``x``, ``/etc/passwd`` gives
    ``passwd``); invisible characters are dropped; leading dots go, so nothing becomes a
    hidden file; characters Windows refuses become ``_``.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if ch in _PORTABILITY else " " if ch.isspace() else ch
                   for ch in name if not _is_invisible(ch))
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip()
    # Windows drops trailing dots and spaces, which would merge two different names.
    name = name.rstrip(". ")
    return name or fallback


def folder_name(designation: str) -> str:
    """A folder name for a source designation: ASCII letters, digits, space, ``-``, ``_``."""
    name = unicodedata.normalize("NFKC", designation)
    name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in " -_") else "_"
                   for ch in name)
    name = _SPACES.sub(" ", name).strip(" -")
    return truncate_utf8(name, MAX_FOLDER_BYTES).rstrip() or "source"


def truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that encodes to at most ``limit`` UTF-8 bytes."""
    if limit <= 0:
        return ""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def split_extension(name: str) -> tuple[str, str]:
    """``("report", ".pdf")`` for ``report.pdf``; no extension if it is long or odd."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext.encode("utf-8")) <= MAX_EXTENSION_BYTES \
            and " " not in ext:
        return stem, "." + ext
    return name, ""


def numbered_name(prefix: str, name: str, copy: int = 1) -> str:
    """``prefix + name``, with `` (copy)`` before the extension when copy > 1, cut to fit."""
    stem, ext = split_extension(name)
    suffix = f" ({copy})" if copy > 1 else ""
    budget = MAX_NAME_BYTES - len((prefix + suffix + ext).encode("utf-8"))
    return prefix + truncate_utf8(stem, budget).rstrip() + suffix + ext


def reserve_file(folder: Path, prefix: str, name: str) -> Path:
    """Create an empty file named after ``prefix + name`` in ``folder`` and return it.

    The file is created with O_EXCL, so an existing file (or a symlink planted in its
    place) is never opened, let alone replaced: the next free `` (n)`` name is used.
    The caller then renames finished content over this placeholder, which it owns.
    """
    for copy in range(1, 10_000):
        candidate = folder / numbered_name(prefix, name, copy)
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"no free name for {display(name)} in {folder}")


def reserve_folder(parent: Path, name: str, *, reuse: bool,
                   avoid: Collection[Path] = ()) -> Path:
    """A directory for ``name`` in ``parent``: the existing one when ``reuse`` allows
    (never a symlink or a non-directory, nor one in ``avoid``), or a new one with the next
    free `` (n)``."""
    for copy in range(1, 10_000):
        candidate = parent / numbered_name("", name, copy)
        if candidate in avoid:
            continue
        try:
            os.mkdir(candidate, 0o700)
        except FileExistsError:
            if reuse and candidate.is_dir() and not candidate.is_symlink():
                return candidate
            continue
        return candidate
    raise FileExistsError(f"no free folder name for {display(name)} in {parent}")
