"""Faults the real server meets on its own machine: a full disk under the store, and a
gpg that dies in the middle of an upload. Each gets a clear page, leaves nothing behind,
and the next submission works. Loopback only; every wait is bounded."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HttpSource, RunningServer, encode_multipart, tipbox_server
from tests.e2e.test_demo import descendants
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, mounted_tmpfs, store_files

pytestmark = pytest.mark.e2e

SECRET = "the-source-typed-this-3f9a"


def base_env(tmp_path: Path, newsroom: Newsroom, **extra: str) -> dict[str, str]:
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
            "TIPBOX_SCRYPT_N": "16", **extra}


def temp_files(data_dir: Path) -> list[str]:
    tmp = data_dir / "store" / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    """The store on a real 1 MiB filesystem, mounted before `tipbox init` makes it."""
    with mounted_tmpfs(tmp_path / "data" / "store", "1m") as store:
        yield store


def test_a_full_disk_under_the_store_gets_a_clear_page_and_keeps_nothing(
        small_store: Path, tmp_path: Path, newsroom: Newsroom) -> None:
    # The reserve at 0, so that the upload really meets ENOSPC rather than the reserve.
    env = base_env(tmp_path, newsroom, TIPBOX_MIN_FREE_BYTES="0")
    with tipbox_server("source", env, tmp_path / "server.log") as server:
        source = HttpSource(server.url)
        source.new_codename()
        status, page = source.submit(SECRET, [(os.urandom(3 * 1024 * 1024), "big.bin")])
        assert status == 507, page
        assert "storage is full" in page and "Nothing from this attempt was kept" in page
        assert store_files(tmp_path / "data") == [] and temp_files(tmp_path / "data") == []
        # Room for a small one: the same source can send again.
        status, _ = source.submit("a short note", [])
        assert status == 303
        log = server.log()
    assert "StorageFull" in log and "ENOSPC" in log
    assert SECRET not in log and "big.bin" not in log


@pytest.fixture
def dying_gpg(tmp_path: Path) -> tuple[Path, Path]:
    """A gpg that, while ``flag`` exists, reads 256 KiB of what it should encrypt and dies;
    otherwise the real gpg. Returns (program, flag)."""
    real = shutil.which("gpg")
    assert real
    flag = tmp_path / "die"
    program = tmp_path / "gpg"
    program.write_text(f"""#!/bin/sh
case " $* " in *" --encrypt "*)
  if [ -e {flag} ]; then head -c 262144 >/dev/null; echo "gpg: simulated crash" >&2; exit 2; fi ;;
esac
exec {real} "$@"
""")
    program.chmod(0o755)
    return program, flag


def test_a_gpg_that_dies_mid_upload_gets_a_clear_page_and_the_next_upload_works(
        dying_gpg: tuple[Path, Path], tmp_path: Path, newsroom: Newsroom) -> None:
    program, flag = dying_gpg
    env = base_env(tmp_path, newsroom, TIPBOX_GPG_BINARY=str(program))
    data_dir = tmp_path / "data"
    with tipbox_server("source", env, tmp_path / "server.log") as server:
        source = HttpSource(server.url)
        source.new_codename()
        flag.touch()
        status, page = source.submit(SECRET, [(os.urandom(4 * 1024 * 1024), "big.bin")])
        assert status == 503, page
        assert "Nothing from this attempt was kept" in page
        assert store_files(data_dir) == [] and temp_files(data_dir) == []

        flag.unlink()
        evidence = os.urandom(2 * 1024 * 1024)
        status, _ = source.submit("after the crash", [(evidence, "after.bin")])
        assert status == 303
        plain = {gpg_decrypt(p, newsroom.secret_home).data for p in store_files(data_dir)}
        assert plain == {b"after the crash", evidence}
        log = server.log()
    assert "EncryptionError" in log  # the admin's log names the failure...
    assert SECRET not in log and "big.bin" not in log  # ...and nothing the source sent


def gpg_encrypting_a_file(server: RunningServer) -> int:
    """The pid of the gpg encrypting a file for ``server``, once there is one (a file's
    gpg is given its name; the message's, which comes first, is not)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in descendants(server.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:  # it ended between being listed and being read
                continue
            if b"--encrypt" in argv and b"--set-filename" in argv:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no gpg started:\n{server.log()}")


def wait_until_gpg_has_read(pid: int, at_least: int) -> None:
    """Until gpg has read ``at_least`` bytes and reads no more: everything sent so far has
    gone through it, so the copy thread feeding it now waits on the socket. A bounded
    wait, not a timing assertion."""
    last, steady = -1, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and steady < 5:
        fields = dict(line.split(": ") for line in
                      Path(f"/proc/{pid}/io").read_text().splitlines())
        read = int(fields["rchar"])
        steady = steady + 1 if read == last and read >= at_least else 0
        last = read
        time.sleep(0.1)
    assert steady >= 5, f"gpg read {last} bytes, expected at least {at_least}"


def read_answer(sock: socket.socket) -> tuple[int, str]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read().decode(errors="replace")


def test_a_gpg_killed_while_the_upload_waits_for_the_source_leaves_one_reader_of_the_body(
        tmp_path: Path, newsroom: Newsroom) -> None:
    # The body's own stall limit far above the answer's wait below: a body byte stolen
    # by a second reader would show as no answer, not as a dropped connection.
    env = base_env(tmp_path, newsroom, TIPBOX_BODY_STALL_SECONDS="120")
    data_dir = tmp_path / "data"
    with tipbox_server("source", env, tmp_path / "server.log") as server:
        source = HttpSource(server.url)
        source.new_codename()
        for attempt in range(3):  # the second reader's race, given three chances
            _, html, _ = source.request("/submit")
            boundary = "----tipboxtest" + secrets.token_hex(8)
            body = encode_multipart(boundary, [
                ("csrf_token", None, csrf_from(html).encode()),
                ("message", None, SECRET.encode()),
                ("files", "big.bin", os.urandom(3 * 1024 * 1024))])
            cookie = "; ".join(f"{c.name}={c.value}" for c in source.jar)
            head = (f"POST /submit HTTP/1.1\r\nHost: {server.url[7:]}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {len(body)}\r\nCookie: {cookie}\r\n\r\n").encode()
            last_piece = 2048  # far less than one read of the socket takes
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.sendall(head + body[:-last_piece])
                gpg = gpg_encrypting_a_file(server)
                wait_until_gpg_has_read(gpg, 2 * 1024 * 1024)
                os.kill(gpg, signal.SIGKILL)
                time.sleep(1)  # lets the server meet the dead gpg before the rest arrives
                sock.sendall(body[-last_piece:])
                status, page = read_answer(sock)
                assert status == 503, page
                assert "Nothing from this attempt was kept" in page
                # The same connection carries the source's next request, whole.
                sock.sendall(f"GET /submit HTTP/1.1\r\nHost: {server.url[7:]}\r\n"
                             f"Cookie: {cookie}\r\n\r\n".encode())
                status, page = read_answer(sock)
                assert status == 200, (attempt, page)
            assert store_files(data_dir) == [] and temp_files(data_dir) == []
        log = server.log()
    assert "EncryptionError" in log
    assert SECRET not in log and "big.bin" not in log
