"""Newsroom keys in every state the start-up gate must judge, made with the gpg CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
