"""The real server: `tipbox serve source` on loopback, real HTTP, real gpg and sq."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HttpSource, RunningServer, received_count, tipbox_server
from tests.helpers import Newsroom, gpg_decrypt, store_files

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_env(tmp_path: Path, newsroom: Newsroom) -> dict[str, str]:
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    return {
        "TIPBOX_DATA_DIR": str(tmp_path / "data"),
        "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
        "TIPBOX_SCRYPT_N": "16",
        # Our own temp folder, so the leak test can scan everything the server wrote there.
        "TMPDIR": str(tmp),
    }


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    with tipbox_server("source", server_env, tmp_path / "server.log") as running:
        yield running


def test_message_and_two_files_over_http_decrypt_with_gpg_to_the_exact_bytes_and_names(
        server: RunningServer, server_env: dict[str, str], newsroom: Newsroom) -> None:
    source = HttpSource(server.url)
    codename = source.new_codename()
    files = [(os.urandom(3 * 1024 * 1024), "leaked memo (final).pdf"),
             (b"col1,col2\n" * 50_000, "payroll 2026.csv")]
    status, _ = source.submit("Look at page 4.", files)
    assert status == 303

    stored = store_files(Path(server_env["TIPBOX_DATA_DIR"]))
    assert len(stored) == 3
    plain = sorted((p.filename, p.data) for p in
                   (gpg_decrypt(path, newsroom.secret_home) for path in stored))
    assert plain == sorted([("", b"Look at page 4."), (files[0][1], files[0][0]),
                            (files[1][1], files[1][0])])

    returning = HttpSource(server.url)
    assert returning.login(codename) == 302
    _, page, _ = returning.request("/submit")
    assert received_count(page) == 3


def _sq_recipient_flag() -> str:
    help_text = subprocess.run(["sq", "decrypt", "--help"], capture_output=True,
                               text=True, check=False).stdout
    return "--recipient-file" if "--recipient-file" in help_text else "--recipient-key"


@pytest.mark.skipif(shutil.which("sq") is None, reason="Sequoia's sq is not installed")
def test_stored_items_decrypt_with_sequoia_sq_too(
        server: RunningServer, server_env: dict[str, str], newsroom: Newsroom,
        tmp_path: Path) -> None:
    source = HttpSource(server.url)
    source.new_codename()
    payload = os.urandom(200_000)
    assert source.submit("for sq", [(payload, "x.bin")])[0] == 303
    secret = tmp_path / "secret.pgp"
    subprocess.run(["gpg", "--homedir", str(newsroom.secret_home), "--batch",
                    "--export-secret-keys", "--output", str(secret), newsroom.fingerprint],
                   check=True, capture_output=True)
    outputs = []
    for path in store_files(Path(server_env["TIPBOX_DATA_DIR"])):
        proc = subprocess.run(["sq", "decrypt", _sq_recipient_flag(), str(secret), str(path)],
                              capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        outputs.append(proc.stdout)
    assert sorted(outputs) == sorted([b"for sq", payload])


def _files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            yield Path(dirpath, name)


def test_no_plaintext_marker_reaches_the_data_folder_temp_folder_or_log(
        server: RunningServer, server_env: dict[str, str]) -> None:
    marker = f"TIPBOX-LEAK-MARKER-{secrets.token_hex(12)}"
    source = HttpSource(server.url)
    source.new_codename()
    # Larger than Werkzeug's 500 KiB in-memory threshold, so default spooling would show.
    big = (f"{marker}\n".encode() + os.urandom(4096)) * 400
    text_file = (f"line with {marker}\n" * 20_000).encode()  # compressible: gzip path too
    status, _ = source.submit(f"message with {marker}",
                              [(big, f"{marker}.bin"), (text_file, "notes.txt")])
    assert status == 303
    assert len(store_files(Path(server_env["TIPBOX_DATA_DIR"]))) == 3

    needle = marker.encode()
    scanned = 0
    for root in (Path(server_env["TIPBOX_DATA_DIR"]), Path(server_env["TMPDIR"])):
        for path in _files_under(root):
            scanned += 1
            assert needle not in path.read_bytes(), f"plaintext marker found in {path}"
            assert marker not in str(path)
    assert scanned >= 4  # the database, secrets and three ciphertexts at least
    assert marker not in server.log()


def test_the_server_log_never_holds_the_client_address(server: RunningServer) -> None:
    # A malformed request line makes gunicorn log "Invalid request from ip=...". The client
    # connects from 127.0.0.2 so its address differs from the server's own 127.0.0.1.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                  source_address=("127.0.0.2", 0)) as conn:
        conn.sendall(b"NOT-HTTP \x01\x02\r\n\r\n")
        conn.recv(1024)
    deadline = time.monotonic() + 10
    while "Invalid request" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    assert "Invalid request" in log
    assert "127.0.0.2" not in log


def test_the_server_names_no_software_and_cannot_dump_core(server: RunningServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.getheader("Server") is None
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
