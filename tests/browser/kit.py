"""What the browser tests share: Debian's Chromium, a recording relay, what was stored."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import Newsroom, gpg_decrypt, require, store_files
from tipbox.config import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
MARKER = f"TIPBOX-WIRE-MARKER-{secrets.token_hex(10)}"
# OpenPGP.js writes new-format packets (0xC1: PKESK); gpg on the server path writes the
# PKESK in the legacy format (0x84/0x85). So the first octet tells who encrypted an item.
BROWSER_ENCRYPTED, SERVER_ENCRYPTED = {0xC1}, {0x84, 0x85}


def require_chromium() -> None:
    """Skip (on a developer's machine only) when Chromium or Playwright is missing."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"Chromium is not installed ({CHROMIUM}): sudo apt-get install chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing: make install-test"
    require(problem, ci="CI must run the browser tests", here="browser tests skipped")


def chromium_args() -> list[str]:
    # Chromium's sandbox refuses to start as root (CI containers run as root).
    return ["--no-sandbox"] if os.geteuid() == 0 else []


def keep_screenshot(shot: Path) -> None:
    """Screenshots go to tmp on every run; TIPBOX_UPDATE_SCREENSHOTS=1 (make screenshots)
    copies them into docs/screenshots/, so a plain test run leaves the checkout alone."""
    if os.environ.get("TIPBOX_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / shot.name)


class WireRecorder:
    """A TCP relay on loopback in front of the server. The browser talks to it, so every
    byte the browser sends crosses here and is searched for the given needles."""

    def __init__(self, upstream_port: int, needles: list[bytes]) -> None:
        self.needles = needles
        self.found: set[bytes] = set()
        self.bytes_sent = 0  # browser -> server, headers and bodies
        self._upstream = upstream_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
        try:
            server = socket.create_connection(("127.0.0.1", self._upstream))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.append(server)
        back = threading.Thread(target=self._pipe, args=(server, client, False), daemon=True)
        back.start()
        self._pipe(client, server, True)
        back.join()
        client.close()
        server.close()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        keep = max(len(n) for n in self.needles) - 1
        tail = b""
        try:
            while data := source.recv(1024 * 1024):
                if record:
                    window = tail + data
                    hits = {n for n in self.needles if n in window}
                    tail = window[-keep:]
                    with self._lock:
                        self.found |= hits
                        self.bytes_sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def decrypted(data_dir: Path, newsroom: Newsroom) -> list[tuple[str, bytes]]:
    """(file name, plaintext) of every stored item, decrypted with the gpg command line."""
    return sorted((p.filename, p.data) for p in (gpg_decrypt(path, newsroom.secret_home)
                                                 for path in store_files(data_dir)))


def first_octets(data_dir: Path) -> set[int]:
    octets = set()
    for path in store_files(data_dir):
        with path.open("rb") as f:
            octets.add(f.read(1)[0])
    return octets


def wait_for(condition: Callable[[], object], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
