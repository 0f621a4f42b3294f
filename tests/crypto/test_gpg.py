"""The python-gnupg wrapper: binary OpenPGP, names inside, failures raise and leave nothing."""

from __future__ import annotations

import fcntl
import io
import logging
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Newsroom, gpg_decrypt
from tipbox.crypto.gpg import PIPE_BYTES, GnuPG
from tipbox.crypto.keyring import load_keyring
from tipbox.errors import EncryptionError, KeyringUnusable


@pytest.fixture
def gpg(newsroom: Newsroom, tmp_path: Path) -> GnuPG:
    ring = load_keyring(newsroom.keys_dir, tmp_path / "gnupg")
    return ring.require()


def test_stream_encrypts_to_binary_openpgp_with_the_name_inside(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path) -> None:
    out = tmp_path / "item.gpg"
    data = b"\x00\x01 binary \xff" * 10_000
    gpg.encrypt_stream(io.BytesIO(data), [newsroom.fingerprint], out, filename="résumé.pdf")
    raw = out.read_bytes()
    assert not raw.startswith(b"-----BEGIN")  # binary, not armored
    assert b"r\xc3\xa9sum" not in raw  # the name is not visible outside the ciphertext
    plain = gpg_decrypt(out, newsroom.secret_home)
    assert plain.data == data
    assert plain.filename == "résumé.pdf"


def test_packets_are_one_pkesk_then_integrity_protected_data(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path) -> None:
    out = tmp_path / "item.gpg"
    gpg.encrypt_bytes(b"hello", [newsroom.fingerprint], out)
    dump = subprocess.run(["gpg", "--list-packets", str(out)], capture_output=True,
                          text=True, check=False).stdout
    tags = [line.split("tag=")[1].split()[0] for line in dump.splitlines()
            if line.startswith("# off=")]
    assert tags == ["1", "18"]  # PKESK, then SEIPD (integrity protected)


def test_compressible_input_can_be_compressed(gpg: GnuPG, newsroom: Newsroom,
                                              tmp_path: Path) -> None:
    data = b"the same line again\n" * 50_000
    plain, packed = tmp_path / "plain.gpg", tmp_path / "packed.gpg"
    gpg.encrypt_stream(io.BytesIO(data), [newsroom.fingerprint], plain)
    gpg.encrypt_stream(io.BytesIO(data), [newsroom.fingerprint], packed, compress=True)
    assert packed.stat().st_size < plain.stat().st_size / 10
    assert gpg_decrypt(packed, newsroom.secret_home).data == data


class _Exploding:
    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1, /) -> bytes:
        self.calls += 1
        if self.calls > 3:
            raise OSError("connection reset")
        return b"x" * 65536


def test_a_failing_input_stream_raises_and_leaves_no_output(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path) -> None:
    out = tmp_path / "item.gpg"
    with pytest.raises(OSError, match="connection reset"):
        gpg.encrypt_stream(_Exploding(), [newsroom.fingerprint], out)
    assert not out.exists()


def test_an_unknown_recipient_raises_and_leaves_no_output(gpg: GnuPG, tmp_path: Path) -> None:
    out = tmp_path / "item.gpg"
    with pytest.raises(EncryptionError, match="could not encrypt"):
        gpg.encrypt_bytes(b"x", ["A" * 40], out)
    assert not out.exists()


def test_a_recipient_that_is_not_a_fingerprint_is_refused(gpg: GnuPG, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        gpg.encrypt_bytes(b"x", ["--armor"], tmp_path / "x.gpg")


def test_a_missing_gpg_binary_is_a_clear_key_problem(tmp_path: Path) -> None:
    with pytest.raises(KeyringUnusable, match="Install GnuPG"):
        GnuPG(tmp_path / "home", binary="/nonexistent/gpg")


def test_python_gnupg_debug_logging_is_pinned_off() -> None:
    # python-gnupg logs command lines (with file names) and data at DEBUG.
    assert logging.getLogger("gnupg").getEffectiveLevel() >= logging.WARNING


def test_the_home_is_private(gpg: GnuPG) -> None:
    assert gpg.home.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are Linux only")
def test_the_pipe_into_gpg_holds_a_whole_upload_chunk(gpg: GnuPG) -> None:
    # With a smaller pipe, reading an upload and encrypting it take turns (bench/upload.py).
    process = gpg._gpg._open_subprocess(["--version"])
    try:
        assert fcntl.fcntl(process.stdin.fileno(), fcntl.F_GETPIPE_SZ) >= PIPE_BYTES
    finally:
        process.communicate()
