"""Newsroom keys in every state the start-up gate must judge, made with the gpg CLI (and,
for what GnuPG 2.2 cannot make, signed here)."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tipbox.crypto.packets import iter_packets


def gpg(home: Path, *args: str, input_: bytes | None = None) -> bytes:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty",
                           "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          input=input_, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def fingerprint_of(home: Path) -> str:
    for line in gpg(home, "--with-colons", "--list-keys").decode().splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise AssertionError("no key in home")


def new_key(home: Path, *, algo: str = "ed25519", usage: str = "cert",
            expire: str = "1y", faked_time: str | None = None, subkey: str | None = "cv25519",
            ) -> str:
    extra = ["--faked-system-time", faked_time] if faked_time else []
    gpg(home, *extra, "--quick-gen-key", f"Key {home.name} <k@example.invalid>", algo, usage,
        expire)
    fpr = fingerprint_of(home)
    if subkey:
        gpg(home, *extra, "--quick-add-key", fpr, subkey, "encr", expire)
    return fpr


def export(home: Path, fpr: str, dest: Path, *, secret: bool = False) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    flag = "--export-secret-keys" if secret else "--export"
    dest.write_bytes(gpg(home, "--armor", flag, fpr))
    return dest


def revoke(home: Path, fpr: str) -> None:
    cert = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    # gpg guards the stored certificate with a leading colon so it is not imported by accident.
    gpg(home, "--import", input_=cert.replace(":-----BEGIN", "-----BEGIN").encode())


def key_asking_for_ocb(home: Path) -> bytes:
    """A correctly self-signed Ed25519 key with a Cv25519 encryption subkey whose user id
    self-signature prefers OCB and sets GnuPG's AEAD feature flag, as GnuPG 2.3 and later
    make keys. GnuPG 2.2 cannot, so the self-signature is made here (RFC 9580 5.2.4) with
    the key's own secret, exported unprotected from ``home``."""
    fpr = new_key(home)
    public = list(iter_packets(gpg(home, "--export", fpr)))
    key, uid = public[0].body, public[1].body
    secret = gpg(home, "--export-secret-keys", fpr)
    rest = next(iter_packets(secret)).body[len(key):]  # s2k usage, then the secret MPI
    assert rest[0] == 0, "new_key makes keys without a passphrase"
    bits = int.from_bytes(rest[1:3], "big")
    signer = Ed25519PrivateKey.from_private_bytes(rest[3:3 + (bits + 7) // 8].rjust(32, b"\0"))
    fingerprint = hashlib.sha1(b"\x99" + len(key).to_bytes(2, "big") + key).digest()  # noqa: S324 - v4 fingerprints are SHA-1

    def sub(kind: int, data: bytes) -> bytes:
        return bytes([len(data) + 1, kind]) + data

    hashed = b"".join([
        sub(33, b"\x04" + fingerprint),                 # issuer fingerprint
        sub(2, int(time.time()).to_bytes(4, "big")),    # created now, after the old one
        sub(27, b"\x01"),                               # key flags: certify
        sub(11, b"\x09\x08\x07"),                       # AES256, AES192, AES128
        sub(34, b"\x02"),                               # AEAD: OCB
        sub(21, b"\x0a\x09\x08"),                       # SHA512, SHA384, SHA256
        sub(30, b"\x03"),                               # features: MDC and AEAD
    ])
    head = bytes([4, 0x13, 22, 10]) + len(hashed).to_bytes(2, "big") + hashed
    digest = hashlib.sha512(
        b"\x99" + len(key).to_bytes(2, "big") + key
        + b"\xb4" + len(uid).to_bytes(4, "big") + uid
        + head + b"\x04\xff" + len(head).to_bytes(4, "big")).digest()
    signature = signer.sign(digest)
    unhashed = sub(16, fingerprint[-8:])                # issuer key id
    body = (head + len(unhashed).to_bytes(2, "big") + unhashed + digest[:2]
            + _mpi(signature[:32]) + _mpi(signature[32:]))
    # The old self-signature goes; the subkey and its binding signature stay as they were.
    kept = b"".join(packet(p.tag, p.body) for p in public[3:])
    return packet(6, key) + packet(13, uid) + packet(2, body) + kept


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet (RFC 9580 4.2.1) with a five-octet length."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def _mpi(value: bytes) -> bytes:
    value = value.lstrip(b"\0") or b"\0"
    return (value[0].bit_length() + 8 * (len(value) - 1)).to_bytes(2, "big") + value


def signature_packet(sig_type: int, *, hashed: bytes, unhashed: bytes = b"") -> bytes:
    """A v4 EdDSA signature packet with the given subpacket areas and a zero signature:
    for the packet reader, which judges subpackets and never checks signatures."""
    body = (bytes([4, sig_type, 22, 10]) + len(hashed).to_bytes(2, "big") + hashed
            + len(unhashed).to_bytes(2, "big") + unhashed + b"\0\0"
            + _mpi(b"\1" * 32) + _mpi(b"\1" * 32))
    return packet(2, body)
