"""The newsroom's public keys, read from the keys folder, and the start-up gate.

The gate answers one question for the source interface: may a submission be accepted
right now, and to which fingerprints is it encrypted? When the answer is no, the reason
says exactly what is wrong and how to fix it, for the admin reading the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tipbox.crypto.gpg import GnuPG, KeyInfo
from tipbox.crypto.gpg_watchdog import DEFAULT_STALL_SECONDS
from tipbox.crypto.packets import has_secret_material
from tipbox.errors import KeyringUnusable

log = logging.getLogger(__name__)

KEY_SUFFIXES = (".asc", ".gpg", ".pgp", ".key")


@dataclass(frozen=True)
class Keyring:
    """The usable newsroom keys and a GnuPG home holding exactly them."""

    gpg: GnuPG | None
    keys: tuple[KeyInfo, ...]
    problem: str | None

    def valid_keys(self, now: float | None = None) -> tuple[KeyInfo, ...]:
        """The keys not expired at ``now``: a key can expire while the server runs."""
        moment = time.time() if now is None else now
        return tuple(k for k in self.keys if k.usable_at(moment))

    @property
    def accepting(self) -> bool:
        return self.problem is None and self.gpg is not None and bool(self.valid_keys())

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Every current key: each item is encrypted to all of them."""
        return tuple(k.fingerprint for k in self.valid_keys())

    @property
    def encryption_key_ids(self) -> dict[str, tuple[str, ...]]:
        """Each current key's fingerprint -> the key ids of its valid encryption subkeys:
        what a browser-encrypted item must be addressed to (see crypto.message_check)."""
        return {k.fingerprint: k.encryption_subkeys for k in self.valid_keys()}

    @property
    def is_demo(self) -> bool:
        return any(k.is_demo for k in self.keys)

    def require(self) -> GnuPG:
        """The GnuPG home to encrypt with, or :class:`KeyringUnusable` if submissions are off."""
        if self.problem is not None or self.gpg is None:
            raise KeyringUnusable(self.problem or "No newsroom key is configured.")
        if not self.valid_keys():
            raise KeyringUnusable("Every active newsroom key has expired. Rotate to a new key "
                             "(docs/admin-guide.md) or run `tipbox doctor`.")
        return self.gpg


class KeyringSource(Protocol):
    """Where an app gets the keyring to use for the request at hand."""

    def current(self) -> Keyring: ...


def load_keyring(keys_dir: Path, gnupg_root: Path, gpg_binary: str = "gpg") -> Keyring:
    """A keyring straight from the key files in ``keys_dir``, through the same checks as
    the registry's active keys (for tests and tools; the apps use tipbox.key_registry)."""
    files = sorted(p for p in keys_dir.glob("*") if p.suffix.lower() in KEY_SUFFIXES
                   and p.is_file()) if keys_dir.is_dir() else []
    if not files:
        return Keyring(None, (), f"No newsroom public key found in {keys_dir}.")
    return keyring_for([p.read_bytes() for p in files], gnupg_root, gpg_binary,
                       problem=secret_material_problem(keys_dir, gnupg_root, gpg_binary))


def unusable_reason(key: KeyInfo, now: float) -> str | None:
    """Why nothing can be encrypted to ``key`` at ``now``, or None if something can."""
    if key.revoked:
        return "is revoked"
    if key.expired_at(now):
        return "has expired"
    if not key.usable_at(now):
        return "has no encryption subkey that is still valid (they expired)"
    if not key.can_encrypt:
        return "has no valid encryption-capable key or subkey"
    return None


def secret_material_problem(keys_dir: Path, gnupg_root: Path | None = None,
                            gpg_binary: str = "gpg") -> str | None:
    """Why submissions must stop if the keys folder holds secret key material, else None.

    Two independent looks: our packet check, and gpg's own scan (which would see a secret
    key the packet check could not parse, for instance behind damaged armor)."""
    if not keys_dir.is_dir():
        return None
    scanner = GnuPG(gnupg_root / "scan", gpg_binary, agent=False) if gnupg_root else None
    for path in sorted(keys_dir.iterdir()):
        if path.suffix.lower() not in KEY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()[:4 * 1024 * 1024]
        secret = has_secret_material(data)
        if not secret and scanner is not None:
            secret = any(k.secret for k in scanner.scan_key_data(data))
        if secret:
            return (f"{path} holds SECRET key material. The private key must never be on the "
                    "server: delete that file here, keep the secret key on the air-gapped "
                    "machine only, and restart.")
    return None


def keyring_for(public_keys: Sequence[bytes], gnupg_root: Path, gpg_binary: str = "gpg",
                *, problem: str | None = None, now: float | None = None,
                stall_seconds: float = DEFAULT_STALL_SECONDS) -> Keyring:
    """A keyring holding exactly these public keys (the registry's active ones), less any
    that cannot be encrypted to at ``now`` (default: the current time)."""
    now = time.time() if now is None else now
    if problem:
        return Keyring(None, (), problem)
    if not public_keys:
        return Keyring(None, (), (
            "No active newsroom key. An admin must add the newsroom's public key, prove "
            "possession and activate it: see the key ceremony in docs/admin-guide.md."))
    gnupg_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scanner = GnuPG(gnupg_root / "scan", gpg_binary, agent=False)
    usable: list[KeyInfo] = []
    usable_blobs: list[bytes] = []
    rejected: list[str] = []
    for blob in public_keys:
        infos = scanner.scan_key_data(blob)
        if not infos:
            rejected.append("a file with no OpenPGP key in it")
        for key in infos:
            reason = unusable_reason(key, now)
            if reason:
                rejected.append(f"key {key.fingerprint} {reason}")
            else:
                usable.append(key)
                usable_blobs.append(blob)
    for line in rejected:
        log.warning("newsroom key not used: %s", line)
    if not usable:
        return Keyring(None, (), (
            "No usable newsroom key (" + "; ".join(rejected) + "). Rotate to a new key: see "
            "docs/admin-guide.md, or run `tipbox doctor`."))
    return Keyring(build_home(list(dict.fromkeys(usable_blobs)), usable, gnupg_root,
                              gpg_binary, stall_seconds), tuple(usable), None)


def build_home(blobs: list[bytes], usable: list[KeyInfo], root: Path, binary: str,
               stall_seconds: float = DEFAULT_STALL_SECONDS) -> GnuPG:
    """A home per distinct key set, built aside and renamed in, so workers can share it."""
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(hashlib.sha256(blob).digest())
    home = root / f"home-{digest.hexdigest()[:20]}"
    if not (home / "ready").exists():
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            gpg = GnuPG(staging, binary, agent=False)
            wanted = {k.fingerprint for k in usable}
            for blob in blobs:
                gpg.import_keys(blob)
            present = {k.fingerprint for k in gpg.list_keys()}
            if not wanted <= present:
                raise KeyringUnusable(f"gpg did not import {sorted(wanted - present)}")
            (staging / "ready").write_text("ok\n")
            # If another worker won the race, its home is identical: keep that one.
            with contextlib.suppress(OSError):
                os.rename(staging, home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return GnuPG(home, binary, agent=False, stall_seconds=stall_seconds)
