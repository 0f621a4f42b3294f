"""tipbox-open keys: generate a newsroom key pair offline, then prove we hold it."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.offline.kit import Sender, passphrase_fd, run_tool

PASSPHRASE = "correct horse battery staple"


def _generate(home: Path, *args: str, passphrase: str = PASSPHRASE,
              ) -> subprocess.CompletedProcess[str]:
    fd = passphrase_fd(passphrase)
    try:
        return run_tool("keys", "generate", "--gnupghome", str(home), "--passphrase-fd",
                        str(fd), *args, pass_fds=[fd])
    finally:
        os.close(fd)


def _colons(home: Path) -> list[list[str]]:
    out = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(":") for line in out.splitlines()]


def _fingerprint(stdout: str) -> str:
    match = re.search(r"Fingerprint: ([0-9A-F ]+)", stdout)
    assert match, stdout
    return match.group(1).replace(" ", "")


@dataclass(frozen=True)
class OfflineKey:
    home: Path
    fingerprint: str
    public: Path
    stdout: str


@pytest.fixture(scope="module")
def offline_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineKey]:
    """One key pair made with `tipbox-open keys generate`, shared by this module."""
    root = tmp_path_factory.mktemp("offline-key")
    home, public = root / "gnupg", root / "newsroom.asc"
    proc = _generate(home, "--out", str(public), "--name", "Example Desk",
                     "--email", "desk@example.org")
    assert proc.returncode == 0, proc.stderr
    yield OfflineKey(home, _fingerprint(proc.stdout), public, proc.stdout)
    _stop_agent(home)


def _stop_agent(home: Path) -> None:
    # Also forgets the passphrase the agent cached after a loopback decryption.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   capture_output=True, check=False)


def _prove(key: OfflineKey, challenge: Path, passphrase: str | None = PASSPHRASE,
           ) -> subprocess.CompletedProcess[str]:
    if passphrase is None:
        return run_tool("keys", "prove", str(challenge), "--gnupghome", str(key.home))
    fd = passphrase_fd(passphrase)
    try:
        return run_tool("keys", "prove", str(challenge), "--gnupghome", str(key.home),
                        "--passphrase-fd", str(fd), pass_fds=[fd])
    finally:
        os.close(fd)


def _challenge(sender: Sender, key: OfflineKey, code: bytes, path: Path) -> Path:
    sender.gpg.import_keys(key.public.read_text())
    sender.gpg.encrypt_bytes(code, [key.fingerprint], path)
    return path


def test_generate_makes_an_ed25519_cv25519_pair_and_prints_backup_advice(
        offline_key: OfflineKey) -> None:
    fpr, home = offline_key.fingerprint, offline_key.home
    text = offline_key.public.read_text()
    assert "BEGIN PGP PUBLIC KEY BLOCK" in text and "PRIVATE" not in text
    assert f"--export-secret-keys {fpr}" in offline_key.stdout
    revocation = home / "openpgp-revocs.d" / f"{fpr}.rev"
    assert revocation.exists() and str(revocation) in offline_key.stdout
    rows = _colons(home)
    primary = next(r for r in rows if r[0] == "pub")
    sub = next(r for r in rows if r[0] == "sub")
    assert (primary[3], primary[16]) == ("22", "ed25519")  # EdDSA
    assert (sub[3], sub[16], sub[11]) == ("18", "cv25519", "e")  # ECDH, encryption
    two_years = 2 * 365 * 86400
    assert abs(int(primary[6]) - time.time() - two_years) < 3 * 86400
    assert "Example Desk <desk@example.org>" in next(r for r in rows if r[0] == "uid")[9]


def test_prove_prints_the_code_of_a_challenge_only_with_the_passphrase(
        offline_key: OfflineKey, sender: Sender, tmp_path: Path) -> None:
    challenge = _challenge(
        sender, offline_key,
        f"tipbox-challenge v1 {offline_key.fingerprint} 7K3F-QQXD-2M4P-AB2C\n".encode(),
        tmp_path / "c.gpg")
    _stop_agent(offline_key.home)

    unproved = _prove(offline_key, challenge, passphrase=None)
    assert unproved.returncode == 2 and "passphrase" in unproved.stderr
    assert unproved.stdout == ""

    proved = _prove(offline_key, challenge)
    assert proved.returncode == 0, proved.stderr
    assert proved.stdout == "7K3F-QQXD-2M4P-AB2C\n"
    assert f"tipbox keys activate {offline_key.fingerprint} --proof 7K3F-QQXD-2M4P-AB2C" \
        in proved.stderr


def test_generate_rsa_makes_4096_bit_keys(own_home: Path, tmp_path: Path) -> None:
    proc = _generate(own_home, "--rsa", "--out", str(tmp_path / "rsa.asc"), "--expire", "1y")
    assert proc.returncode == 0, proc.stderr
    rows = _colons(own_home)
    assert [(r[0], r[2], r[3]) for r in rows if r[0] in ("pub", "sub")] == \
        [("pub", "4096", "1"), ("sub", "4096", "1")]


@pytest.mark.parametrize(("args", "passphrase", "message"), [
    (["--name", "Desk\n%no-protection"], PASSPHRASE, "--name must be printable"),
    (["--email", "not an address"], PASSPHRASE, "--email must look like"),
    (["--expire", "forever"], PASSPHRASE, "--expire takes"),
    ([], " padded ", "start or end with a space"),
])
def test_generate_refuses_bad_input_and_creates_nothing(
        own_home: Path, tmp_path: Path, args: list[str], passphrase: str,
        message: str) -> None:
    proc = _generate(own_home, "--out", str(tmp_path / "k.asc"), *args,
                     passphrase=passphrase)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "k.asc").exists() and not own_home.exists()


def test_generate_never_overwrites_the_public_key_file(own_home: Path, tmp_path: Path) -> None:
    existing = tmp_path / "k.asc"
    existing.write_text("keep me")
    proc = _generate(own_home, "--out", str(existing))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert existing.read_text() == "keep me"


def test_generate_without_a_terminal_or_fd_asks_for_a_passphrase_source(
        own_home: Path) -> None:
    proc = run_tool("keys", "generate", "--gnupghome", str(own_home))
    assert proc.returncode == 2 and "--passphrase-fd" in proc.stderr


@pytest.mark.parametrize("plaintext", [
    b"\x1b]0;owned\x07CODE", b"x" * 300, b"\xff\xfe", b"",
    # What a compromised server might pass off as a challenge: a source's stored message.
    b"Meet me at the north gate on Friday, I have the contracts",
    b"7K3F-QQXD-2M4P-AB2C",  # a bare code without the tipbox-challenge frame
])
def test_prove_shows_nothing_from_a_file_that_is_not_exactly_a_challenge(
        plaintext: bytes, offline_key: OfflineKey, sender: Sender, tmp_path: Path) -> None:
    challenge = _challenge(sender, offline_key, plaintext, tmp_path / "c.gpg")
    proved = _prove(offline_key, challenge)
    assert proved.returncode == 2
    assert "is not a tipbox challenge" in proved.stderr and "nothing from it" in proved.stderr
    assert proved.stdout == ""
    if plaintext:
        assert plaintext.decode(errors="replace")[:20] not in proved.stderr
    assert "\x1b" not in proved.stderr + proved.stdout


def test_prove_refuses_a_challenge_naming_another_key(
        offline_key: OfflineKey, sender: Sender, tmp_path: Path) -> None:
    challenge = _challenge(sender, offline_key,
                           b"tipbox-challenge v1 " + b"A" * 40 + b" 7K3F-QQXD-2M4P-AB2C\n",
                           tmp_path / "c.gpg")
    proved = _prove(offline_key, challenge)
    assert proved.returncode == 2 and "names key" in proved.stderr
    assert "7K3F" not in proved.stdout


def test_prove_refuses_a_file_that_is_not_a_challenge(
        offline_key: OfflineKey, tmp_path: Path) -> None:
    not_one = tmp_path / "notes.txt"
    not_one.write_text("hello")
    proved = _prove(offline_key, not_one)
    assert proved.returncode == 2 and "is not a challenge from tipbox" in proved.stderr
