"""Reading an export bundle: everything is checked before anything is written.

Opening a bundle walks every tar header (:mod:`tipbox.offline.tarscan`), has
:mod:`tarfile` confirm the same members, checks each name against the layout of
docs/bundle-format.md, bounds the sizes by the free space of the output folder, and parses
the manifest. Only then may the caller copy items out, one at a time, hashing each on the
way so it can be compared with the manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tipbox.offline import tarscan
from tipbox.offline.errors import BundleRefused
from tipbox.offline.manifest import MAX_ITEMS, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from tipbox.offline.names import display

CHUNK = 1024 * 1024
_ITEM_RE = re.compile(r"tipbox-([a-z2-7]{26})/items/([a-z2-7]{26})\.gpg")
_MANIFEST_RE = re.compile(r"tipbox-([a-z2-7]{26})/manifest\.json")
_COMPRESSED = {
    b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "ZIP", b"7z\xbc\xaf\x27\x1c": "7-Zip",
}


@dataclass(frozen=True)
class Copied:
    size: int
    sha256: str
    head: bytes  # the first bytes, for the OpenPGP packet check


@dataclass
class Bundle:
    """An open, fully checked bundle. Use as a context manager."""

    path: Path
    manifest: Manifest
    members: dict[str, tarfile.TarInfo]  # item id -> member, in tar order
    total_size: int
    _fh: BinaryIO
    _tar: tarfile.TarFile

    @property
    def missing(self) -> tuple[str, ...]:
        """Items the manifest lists but the tar lacks."""
        return tuple(item.id for item in self.manifest.items if item.id not in self.members)

    @property
    def extra(self) -> tuple[str, ...]:
        """Ciphertexts in the tar that the manifest does not list."""
        listed = {item.id for item in self.manifest.items}
        return tuple(item_id for item_id in self.members if item_id not in listed)

    def copy_item(self, item_id: str, dest: Path, head_bytes: int,
                  on_progress: Callable[[int], None] | None = None) -> Copied:
        """Copy one ciphertext to ``dest`` (a new file), hashing it on the way.

        OSError when the bundle cannot be read to the end (a storage medium pulled out,
        a file changed since it was checked) or ``dest`` cannot be written.
        """
        member = self.members[item_id]
        source = self._tar.extractfile(member)
        if source is None:  # pragma: no cover - tarscan admits regular files only
            raise BundleRefused(f"Item {item_id} is not a regular file.")
        digest = hashlib.sha256()
        head = b""
        size = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                if len(head) < head_bytes:
                    head += chunk[:head_bytes - len(head)]
                out.write(chunk)
                size += len(chunk)
                if on_progress is not None:
                    on_progress(size)
        if size != member.size:
            raise OSError(f"the bundle changed or became unreadable while item {item_id} "
                          "was being read")
        return Copied(size, digest.hexdigest(), head)

    def close(self) -> None:
        self._tar.close()
        self._fh.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bundle(path: Path, out_dir: Path) -> Bundle:
    """Open and check ``path``; raise :class:`BundleRefused` with the reason if it is unfit."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BundleRefused(f"Cannot read the bundle {path}: {exc.strerror}.") from exc
    if not stat.S_ISREG(info.st_mode):
        raise BundleRefused(f"{path} is not a regular file: give the path of the .tar bundle "
                            "you downloaded.")
    try:
        fh: BinaryIO = path.open("rb")
    except OSError as exc:
        raise BundleRefused(f"Cannot read the bundle {path}: {exc.strerror}.") from exc
    try:
        return _checked(path, fh, info.st_size, out_dir)
    except BaseException:
        fh.close()
        raise


def _checked(path: Path, fh: BinaryIO, file_size: int, out_dir: Path) -> Bundle:
    _refuse_compressed(fh)
    try:
        scanned = tarscan.scan(fh, file_size, max_members=MAX_ITEMS + 1)
        tar = _tarfile_agrees(fh, scanned)
    except OSError as exc:
        raise BundleRefused(f"Cannot read the bundle {path}: {exc}.") from exc
    try:
        bundle_id, members, manifest_member = _layout(tar.getmembers())
        total = sum(m.size for m in tar.getmembers())
        _check_space(total, out_dir)
        manifest = _read_manifest(tar, manifest_member)
    except BaseException:
        tar.close()
        raise
    if manifest.bundle_id != bundle_id:
        tar.close()
        raise BundleRefused("manifest.json names a different bundle than the folder inside the "
                            "tar: the bundle was put together from parts of two exports.")
    return Bundle(path, manifest, members, total, fh, tar)


def _refuse_compressed(fh: BinaryIO) -> None:
    start = fh.read(8)
    for magic, kind in _COMPRESSED.items():
        if start.startswith(magic):
            raise BundleRefused(
                f"The bundle is a {kind} file, but tipbox exports an uncompressed .tar. If you "
                "compressed it to carry it, uncompress it first; otherwise it is not a tipbox "
                "bundle. (tipbox-open never uncompresses: that is how decompression bombs work.)")


def _tarfile_agrees(fh: BinaryIO, scanned: list[tarscan.Member]) -> tarfile.TarFile:
    fh.seek(0)
    try:
        tar = tarfile.open(fileobj=fh, mode="r:")  # noqa: SIM115 - the Bundle closes it
        members = tar.getmembers()
    except tarfile.TarError as exc:
        raise BundleRefused(f"The bundle is not a readable tar file ({exc}).") from exc
    seen = [(m.name, m.size, m.offset_data, m.isreg()) for m in members]
    if seen != [(m.name, m.size, m.offset, True) for m in scanned]:
        tar.close()
        raise BundleRefused("The bundle's tar headers can be read in more than one way: it was "
                            "crafted or damaged, and tipbox-open will not guess.")
    return tar


def _layout(members: list[tarfile.TarInfo],
            ) -> tuple[str, dict[str, tarfile.TarInfo], tarfile.TarInfo]:
    """(bundle id, item members by id, the manifest member), or BundleRefused."""
    bundle_ids: set[str] = set()
    items: dict[str, tarfile.TarInfo] = {}
    manifest: tarfile.TarInfo | None = None
    for member in members:
        if manifest is not None:
            raise BundleRefused("manifest.json is not the last member of the bundle: the bundle "
                                "was altered after the server wrote it.")
        name = member.name
        if item := _ITEM_RE.fullmatch(name):
            bundle_ids.add(item.group(1))
            if item.group(2) in items:
                raise BundleRefused(f"The bundle holds item {item.group(2)} twice.")
            items[item.group(2)] = member
        elif top := _MANIFEST_RE.fullmatch(name):
            bundle_ids.add(top.group(1))
            manifest = member
        else:
            raise BundleRefused(_bad_name(name))
    if manifest is None:
        raise BundleRefused("The bundle has no manifest.json (it comes last): the download was "
                            "probably cut off. Download the bundle again.")
    if len(bundle_ids) != 1:
        raise BundleRefused("The bundle mixes members of several bundles.")
    return bundle_ids.pop(), items, manifest


def _bad_name(name: str) -> str:
    shown = display(name)[:300]
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        why = "is an absolute path"
    elif ".." in parts:
        why = "climbs out of the bundle folder with '..'"
    else:
        why = "is not tipbox-<id>/items/<id>.gpg or tipbox-<id>/manifest.json"
    return (f"The bundle holds a member named {shown!r}, which {why}. A bundle made by tipbox "
            "never does: do not open this file.")


def _check_space(total: int, out_dir: Path) -> None:
    free = shutil.disk_usage(_existing_ancestor(out_dir)).free
    if total > free:
        raise BundleRefused(
            f"The bundle holds {human_size(total)} but only {human_size(free)} is free where "
            f"{out_dir} is: free some space or choose another --out folder.")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Manifest:
    if member.size > MAX_MANIFEST_BYTES:
        raise BundleRefused("manifest.json is larger than 64 MiB: this is not a tipbox bundle.")
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - tarscan admits regular files only
        raise BundleRefused("manifest.json is not a regular file.")
    with source:
        return parse_manifest(source.read(member.size))


def human_size(size: int) -> str:
    """``4.2 MiB``: sizes as the progress lines and messages show them."""
    if size < 1024:
        return f"{size} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    value, unit = size / 1024, 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.1f} {units[unit]}"
