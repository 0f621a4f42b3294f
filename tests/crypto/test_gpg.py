"""The python-gnupg wrapper: binary OpenPGP, names inside, failures raise and leave nothing."""

from __future__ import annotations

import fcntl
import io
import logging
import subprocess
import threading
import tracemalloc
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


def test_an_encryption_waiting_for_its_upload_holds_no_large_buffer(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path) -> None:
    """python-gnupg reads gpg's stdout (empty: gpg writes the file) in a thread that
    allocated a whole input chunk (1 MiB) before it waited, for as long as the upload
    lasted."""

    class SlowUpload:
        def __init__(self) -> None:
            self.waiting = threading.Event()
            self.resume = threading.Event()
            self.sent = False

        def read(self, size: int = -1, /) -> bytes:
            if not self.sent:
                self.sent = True
                return b"the first packet"
            self.waiting.set()
            self.resume.wait(30)
            return b""

    upload = SlowUpload()
    out = tmp_path / "item.gpg"
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        encryption = threading.Thread(target=gpg.encrypt_stream,
                                      args=(upload, [newsroom.fingerprint], out))
        encryption.start()
        assert upload.waiting.wait(30)
        assert stdout_reader_is_waiting()
        waiting, _ = tracemalloc.get_traced_memory()
    finally:
        upload.resume.set()
        encryption.join(60)
        tracemalloc.stop()
    assert gpg_decrypt(out, newsroom.secret_home).data == b"the first packet"
    assert waiting - before < 512 * 1024


def stdout_reader_is_waiting() -> bool:
    """Bounded wait for python-gnupg's stdout thread to sleep in its read."""
    for _ in range(1000):
        readers = [t for t in threading.enumerate() if t.name.endswith("(_read_data)")]
        if readers and all(_asleep(t) for t in readers):
            return True
        threading.Event().wait(0.01)
    return False


def _asleep(thread: threading.Thread) -> bool:
    stat = Path(f"/proc/self/task/{thread.native_id}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "S"
