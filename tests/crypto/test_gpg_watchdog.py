"""A gpg that stops making progress is killed: the caller gets an answer, nothing is kept,
and the next encryption works. The gpg here is the real one behind a wrapper script that
hangs on request."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Newsroom, gpg_decrypt
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import load_keyring
from tipbox.errors import EncryptionError, GpgStalled

STALL = 1.0


@pytest.fixture
def hang_flag(tmp_path: Path) -> Path:
    return tmp_path / "hang"


@pytest.fixture
def gpg(newsroom: Newsroom, tmp_path: Path, hang_flag: Path) -> Iterator[GnuPG]:
    """The newsroom keyring's home, run through a gpg that misbehaves while ``hang_flag``
    names a mode: 'no-read' never reads its input, 'no-exit' reads it all and never exits,
    'die' exits at once with an error."""
    real = shutil.which("gpg")
    assert real
    wrapper = tmp_path / "gpg-wrapper"
    wrapper.write_text(f"""#!/bin/sh
case " $* " in *" --encrypt "*)
  mode=$(cat {hang_flag} 2>/dev/null)
  case "$mode" in
    no-read) exec sleep 600 ;;
    no-exit) cat >/dev/null; exec sleep 600 ;;
    die) echo "gpg: simulated crash" >&2; exit 2 ;;
  esac ;;
esac
exec {real} "$@"
""")
    wrapper.chmod(0o755)
    home = load_keyring(newsroom.keys_dir, tmp_path / "gnupg").require().home
    yield GnuPG(home, str(wrapper), agent=False, stall_seconds=STALL)



def big_input() -> io.BytesIO:
    # Over the 1 MiB pipe, so that a gpg that reads nothing blocks the writer.
    return io.BytesIO(os.urandom(3 * 1024 * 1024))


@pytest.mark.parametrize(("mode", "data"), [
    ("no-read", big_input),
    ("no-exit", lambda: io.BytesIO(b"a short message")),
])
def test_a_stalled_gpg_is_killed_and_leaves_nothing(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path, hang_flag: Path, mode: str,
        data: object) -> None:
    hang_flag.write_text(mode)
    out = tmp_path / "item.gpg"
    threads_before = threading.active_count()
    start = time.monotonic()
    with pytest.raises(GpgStalled, match="no progress"):
        gpg.encrypt_stream(data(), [newsroom.fingerprint], out)  # type: ignore[operator]
    assert time.monotonic() - start < STALL + 10  # not for ever
    assert not out.exists()
    assert threading.active_count() <= threads_before  # the watchdog is gone too

    hang_flag.unlink()  # gpg behaves again: the same object encrypts as before
    gpg.encrypt_stream(io.BytesIO(b"next one"), [newsroom.fingerprint], out)
    assert gpg_decrypt(out, newsroom.secret_home).data == b"next one"


def test_a_slow_source_is_not_gpgs_fault(gpg: GnuPG, newsroom: Newsroom,
                                         tmp_path: Path) -> None:
    class Trickle:
        """An upload that pauses longer than the stall limit between chunks."""

        def __init__(self) -> None:
            self.chunks = [b"first ", b"second"]

        def read(self, size: int = -1, /) -> bytes:
            time.sleep(STALL * 2)
            return self.chunks.pop(0) if self.chunks else b""

    out = tmp_path / "item.gpg"
    gpg.encrypt_stream(Trickle(), [newsroom.fingerprint], out)
    assert gpg_decrypt(out, newsroom.secret_home).data == b"first second"


def test_a_gpg_that_dies_reading_a_large_input_says_so(
        gpg: GnuPG, newsroom: Newsroom, tmp_path: Path, hang_flag: Path) -> None:
    hang_flag.write_text("die")
    out = tmp_path / "item.gpg"
    with pytest.raises(EncryptionError) as caught:
        gpg.encrypt_stream(big_input(), [newsroom.fingerprint], out)
    assert not isinstance(caught.value, GpgStalled)
    assert "simulated crash" in str(caught.value)  # gpg's own words reach the log
    assert not out.exists()
