"""Export bundles: one tar of ciphertexts plus manifest.json, streamed as it is built.

See docs/bundle-format.md. Nothing is assembled in a temporary folder: each ciphertext is
read from the store in chunks, hashed on the way through, and the manifest, which needs
those hashes, goes last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tipbox.storage import new_item_id

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BundleEntry:
    """One ciphertext to put in a bundle, with what the manifest says about it."""

    id: str
    path: Path
    source: str
    kind: str
    seq: int
    day: dt.date
    key_fingerprints: tuple[str, ...]


@dataclass(frozen=True)
class Bundle:
    id: str
    created_on: dt.date

    @property
    def filename(self) -> str:
        return f"tipbox-{self.id}.tar"

    @property
    def top(self) -> str:
        return f"tipbox-{self.id}"


def new_bundle(day: dt.date) -> Bundle:
    return Bundle(new_item_id(), day)


def _members(bundle: Bundle, entries: Iterable[BundleEntry]) -> Iterator[bytes]:
    manifest_items = []
    for entry in entries:
        size = entry.path.stat().st_size
        yield _header(f"{bundle.top}/items/{entry.id}.gpg", size)
        digest = hashlib.sha256()
        sent = 0
        with entry.path.open("rb") as fh:
            while sent < size:
                chunk = fh.read(min(CHUNK, size - sent))
                if not chunk:
                    raise OSError(f"item {entry.id} shrank while being exported")
                digest.update(chunk)
                sent += len(chunk)
                yield chunk
        yield _padding(size)
        manifest_items.append({
            "id": entry.id, "source": entry.source, "kind": entry.kind, "seq": entry.seq,
            "day": entry.day.isoformat(), "size": size, "sha256": digest.hexdigest(),
            "key_fingerprints": list(entry.key_fingerprints),
        })
    manifest = json.dumps({
        "format": "tipbox-bundle", "version": 1, "bundle_id": bundle.id,
        "created_on": bundle.created_on.isoformat(), "items": manifest_items,
    }, indent=1).encode()
    yield _header(f"{bundle.top}/manifest.json", len(manifest))
    yield manifest
    yield _padding(len(manifest))
    yield b"\0" * (2 * BLOCK)  # end of archive


def stream_bundle(bundle: Bundle, entries: Iterable[BundleEntry]) -> Iterator[bytes]:
    """Yield the bundle's bytes in chunks of at most 1 MiB; memory stays flat."""
    written = 0
    for chunk in _members(bundle, entries):
        written += len(chunk)
        yield chunk
    # Pad to a whole tar record, as tar(1) and Python's tarfile write it.
    yield b"\0" * (-written % tarfile.RECORDSIZE)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = 0  # times are left out: the manifest carries the day
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def read_manifest(data: bytes) -> dict[str, object]:
    """For tests and tools: the manifest of a whole bundle held in memory."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if member.name.endswith("/manifest.json"):
                extracted = tar.extractfile(member)
                assert extracted is not None  # noqa: S101 - a regular file member
                return json.loads(extracted.read())  # type: ignore[no-any-return]
    raise ValueError("no manifest in bundle")
