"""Bundles for the offline tool's tests, written exactly as docs/bundle-format.md says,
plus the hostile variants a compromised server or a tampered copy could produce."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tipbox.crypto.gpg import GnuPG


def new_id() -> str:
    """An id as the server makes them: 26 characters of lower-case base32."""
    return base64.b32encode(secrets.token_bytes(17)).decode().lower()[:26]


@dataclass
class Item:
    source: str
    kind: str
    seq: int
    ciphertext: bytes
    key_fingerprints: list[str]
    plaintext: bytes = b""
    filename: str = ""
    day: str = "2026-11-29"
    id: str = field(default_factory=new_id)

    def manifest_entry(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "kind": self.kind, "seq": self.seq,
                "day": self.day, "size": len(self.ciphertext),
                "sha256": hashlib.sha256(self.ciphertext).hexdigest(),
                "key_fingerprints": self.key_fingerprints}


class Sender:
    """The server's side: encrypts items to public keys with tipbox's own wrapper."""

    def __init__(self, gpg: GnuPG, work: Path) -> None:
        self.gpg = gpg
        self.work = work
        work.mkdir(parents=True, exist_ok=True)

    def item(self, source: str, kind: str, seq: int, data: bytes, *, filename: str = "",
             to: Sequence[str]) -> Item:
        out = self.work / f"{new_id()}.gpg"
        self.gpg.encrypt_stream(io.BytesIO(data), list(to), out,
                                filename=filename or None)
        return Item(source, kind, seq, out.read_bytes(), list(to), data, filename)

    def item_with_raw_name(self, source: str, seq: int, data: bytes, raw_name: bytes,
                           to: str) -> Item:
        """A file item whose literal packet holds ``raw_name`` byte for byte (NUL, '/',
        control characters): gpg's --set-filename would keep only a basename, so the
        literal packet is built here and gpg wraps it with --no-literal."""
        body = b"b" + bytes([len(raw_name)]) + raw_name + struct.pack(">I", 0) + data
        packet = bytes([0xC0 | 11, 0xFF]) + struct.pack(">I", len(body)) + body
        proc = subprocess.run(
            ["gpg", "--homedir", str(self.gpg.home), "--batch", "--no-tty", "--quiet",
             "--trust-model", "always", "--no-literal", "--compress-algo", "none",
             "--recipient", to, "--encrypt"],
            input=packet, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        return Item(source, "file", seq, proc.stdout, [to], data,
                    raw_name.decode("utf-8", "replace"))


    def compressed_item(self, source: str, seq: int, chunk: bytes, count: int, *,
                        filename: str, to: str) -> Item:
        """A file item of ``chunk`` repeated ``count`` times, compressed by gpg (zlib, level
        9) as a compression bomb is: the plaintext is streamed, never held whole."""
        out = self.work / f"{new_id()}.gpg"
        with out.open("wb") as fh:
            proc = subprocess.Popen(
                ["gpg", "--homedir", str(self.gpg.home), "--batch", "--no-tty", "--quiet",
                 "--trust-model", "always", "--compress-algo", "zlib", "--compress-level",
                 "9", "--set-filename", filename, "--recipient", to, "--encrypt"],
                stdin=subprocess.PIPE, stdout=fh)
            assert proc.stdin is not None
            for _ in range(count):
                proc.stdin.write(chunk)
            proc.stdin.close()
            assert proc.wait() == 0
        return Item(source, "file", seq, out.read_bytes(), [to], b"", filename)


def tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_bundle(path: Path, items: Iterable[Item], *, bundle_id: str | None = None,
                 manifest: dict[str, Any] | None = None, manifest_bytes: bytes | None = None,
                 skip: Iterable[Item] = (), extra: Iterable[Item] = (),
                 ) -> Path:
    """tipbox-<id>/items/<id>.gpg for each item, then tipbox-<id>/manifest.json LAST.

    ``skip``: items listed in the manifest but left out of the tar; ``extra``: items in
    the tar but not in the manifest; ``manifest``/``manifest_bytes`` replace the manifest.
    """
    items = list(items)
    bundle_id = bundle_id or new_id()
    top = f"tipbox-{bundle_id}"
    skipped = {item.id for item in skip}
    doc = manifest if manifest is not None else {
        "format": "tipbox-bundle", "version": 1, "bundle_id": bundle_id,
        "created_on": "2026-11-30", "items": [item.manifest_entry() for item in items]}
    data = manifest_bytes if manifest_bytes is not None else json.dumps(doc, indent=1).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for item in [*items, *extra]:
            if item.id not in skipped:
                tar_member(tar, f"{top}/items/{item.id}.gpg", item.ciphertext)
        tar_member(tar, f"{top}/manifest.json", data)
    return path


def run_open(bundle: Path, out: Path, home: Path, *args: str, cwd: Path | None = None,
             env: dict[str, str] | None = None, pass_fds: Sequence[int] = (),
             ) -> subprocess.CompletedProcess[str]:
    """``python -m tipbox.offline BUNDLE --out OUT --gnupghome HOME ...`` in a subprocess,
    with no terminal on stdin (as in CI)."""
    return run_tool(str(bundle), "--out", str(out), "--gnupghome", str(home), *args,
                    cwd=cwd, env=env, pass_fds=pass_fds)


def run_tool(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess[str]:
    # No display and no terminal: a gpg-agent started by the test can never pop up a
    # pinentry dialog on a developer's desktop and wait for it.
    env = {k: v for k, v in (os.environ if env is None else env).items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "GPG_TTY")}
    return subprocess.run([sys.executable, "-m", "tipbox.offline", *args],
                          capture_output=True, text=True, cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, pass_fds=pass_fds, timeout=300,
                          check=False)


def passphrase_fd(passphrase: str) -> int:
    """A pipe's read end holding ``passphrase`` and a newline, for --passphrase-fd."""
    read, write = os.pipe()
    os.write(write, passphrase.encode() + b"\n")
    os.close(write)
    return read


def tree(root: Path) -> set[str]:
    """Every path under ``root``, to prove that nothing was written anywhere else."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def png_with_author(author: bytes) -> bytes:
    """A 1x1 PNG whose tEXt chunk names ``author``: metadata for mat2 to remove."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"Author\x00" + author)
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
