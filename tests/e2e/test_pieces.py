"""Uploads in pieces against the real server: the worker SIGKILLed between pieces and in
the middle of one, and the whole server restarted, the upload carries on from the bytes
the server reports and the item decrypts byte-exact with gpg. Loopback only; every wait is
bounded in count and time."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import HttpSource, RunningServer, tipbox_server
from tests.e2e.test_crashes import rows, server_env, worker_pid
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, store_files
from tipbox.crypto.gpg import GnuPG

pytestmark = pytest.mark.e2e

__all__ = ["server_env"]  # the fixture, shared with test_crashes (SQLite and PostgreSQL)

PIECE = 64 * 1024


class PieceSource:
    """A logged-in source speaking the piece protocol, as encrypt.js does."""

    def __init__(self, server: RunningServer) -> None:
        self.http = HttpSource(server.url)
        self.http.new_codename()
        _, html, _ = self.http.request("/submit")
        self.csrf = csrf_from(html)
        self.netloc = urllib.parse.urlsplit(server.url).netloc

    def call(self, method: str, path: str, body: bytes = b"",
             content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(self.netloc, timeout=60)
        try:
            conn.request(method, path, body=body, headers={
                "Accept": "application/json", "Content-Type": content_type,
                "X-CSRFToken": self.csrf,
                "Cookie": "; ".join(f"{c.name}={c.value}" for c in self.http.jar)})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def start(self, fingerprint: str) -> str:
        status, answer = self.call("POST", "/upload",
                                   json.dumps({"fingerprints": [fingerprint]}).encode())
        assert status == 200, answer
        return str(answer["upload"])

    def held(self, upload: str) -> int:
        status, answer = self.call("GET", f"/upload/{upload}")
        assert status == 200, answer
        return int(answer["items"][0]["held"]) if answer["items"] else 0

    def piece(self, upload: str, offset: int, data: bytes, last: bool) -> int:
        status, answer = self.call(
            "PUT", f"/upload/{upload}/items/0?offset={offset}&kind=file"
                   f"{'&last=1' if last else ''}", data, "application/octet-stream")
        assert status in (200, 409), answer
        return status

    def send_from_held(self, upload: str, data: bytes, stop_at: int | None = None) -> None:
        """Ask how far the server got, then send the rest (up to ``stop_at``) in pieces.

        A 409 is what encrypt.js waits out: a request cut off by a kill can still hold the
        upload on the new worker (the dead one never took its connection from the listen
        queue) until that worker sees the connection end. Bounded: 100 tries, 0.1 s apart.
        """
        offset = self.held(upload)
        end = len(data) if stop_at is None else stop_at
        for _attempt in range(100):
            if offset >= end:
                return
            chunk = data[offset:min(offset + PIECE, end)]
            if self.piece(upload, offset, chunk, last=offset + len(chunk) == len(data)) == 200:
                offset += len(chunk)
            else:
                time.sleep(0.1)
                offset = self.held(upload)
        raise AssertionError(f"still refused after 100 tries, at {offset} of {end}")

    def half_a_piece(self, upload: str, offset: int, data: bytes) -> socket.socket:
        """Send a piece's head and half its body, and leave the connection open."""
        path = f"/upload/{upload}/items/0?offset={offset}&kind=file"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.jar)
        host, port = self.netloc.split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
                      f"Accept: application/json\r\nX-CSRFToken: {self.csrf}\r\n"
                      f"Cookie: {cookie}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n").encode())
        sock.sendall(data[:len(data) // 2])
        return sock

    def finish(self, upload: str) -> None:
        status, answer = self.call("POST", f"/upload/{upload}/finish")
        assert status == 200, answer


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    with tipbox_server("source", server_env, tmp_path / "server.log") as running:
        yield running


def encrypted_file(newsroom: Newsroom, tmp_path: Path, size: int) -> tuple[bytes, bytes]:
    plaintext = os.urandom(size)
    out = tmp_path / "upload.gpg"
    GnuPG(newsroom.secret_home).encrypt_bytes(plaintext, [newsroom.fingerprint], out,
                                              filename="evidence.bin")
    return plaintext, out.read_bytes()


def the_one_item_decrypts_to(data_dir: Path, newsroom: Newsroom, plaintext: bytes) -> None:
    (path,) = store_files(data_dir)
    opened = gpg_decrypt(path, newsroom.secret_home)
    assert (opened.data, opened.filename) == (plaintext, "evidence.bin")


def test_a_worker_killed_between_pieces_and_in_the_middle_of_one_loses_nothing_held(
        server: RunningServer, server_env: dict[str, str], newsroom: Newsroom,
        tmp_path: Path) -> None:
    data_dir = Path(server_env["TIPBOX_DATA_DIR"])
    plaintext, data = encrypted_file(newsroom, tmp_path, 600_000)
    source = PieceSource(server)
    upload = source.start(newsroom.fingerprint)
    source.send_from_held(upload, data, stop_at=3 * PIECE)

    # Between pieces: the new worker sweeps the store as it starts, and must leave a
    # parked upload of a live session alone.
    first = worker_pid(server)
    os.kill(first, signal.SIGKILL)
    second = worker_pid(server, not_pid=first)
    assert source.held(upload) == 3 * PIECE

    # In the middle of a piece: half of it reached the worker, which dies.
    sock = source.half_a_piece(upload, 3 * PIECE, data[3 * PIECE:4 * PIECE])
    try:
        os.kill(second, signal.SIGKILL)
        worker_pid(server, not_pid=second)
    finally:
        sock.close()
    assert source.held(upload) == 3 * PIECE  # the half piece is not counted

    source.send_from_held(upload, data)
    source.finish(upload)
    the_one_item_decrypts_to(data_dir, newsroom, plaintext)
    assert rows(server_env, "SELECT count(*) FROM items") == [1]
    assert [p.name for p in (data_dir / "store" / ".tmp").iterdir()] == []


def test_an_upload_carries_on_after_the_whole_server_restarted(
        server_env: dict[str, str], newsroom: Newsroom, tmp_path: Path) -> None:
    data_dir = Path(server_env["TIPBOX_DATA_DIR"])
    plaintext, data = encrypted_file(newsroom, tmp_path, 400_000)
    with tipbox_server("source", server_env, tmp_path / "first.log") as first:
        source = PieceSource(first)
        upload = source.start(newsroom.fingerprint)
        source.send_from_held(upload, data, stop_at=2 * PIECE)
    # `tipbox init` (run again by tipbox_server) and the new workers both sweep.
    with tipbox_server("source", server_env, tmp_path / "second.log") as second:
        source.netloc = urllib.parse.urlsplit(second.url).netloc
        assert source.held(upload) == 2 * PIECE
        source.send_from_held(upload, data)
        source.finish(upload)
    the_one_item_decrypts_to(data_dir, newsroom, plaintext)
