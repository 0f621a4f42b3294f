"""A real `tipbox serve` process on a free loopback port, and a stdlib HTTP source client."""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import csrf_from, hidden

TIPBOX = str(Path(sys.executable).with_name("tipbox"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def tipbox_server(interface: str, env: dict[str, str], log_path: Path, *,
                  wrapper: Sequence[str] = ()) -> Iterator[RunningServer]:
    """`tipbox init` then `tipbox serve INTERFACE` (run by ``wrapper``, a command that ends
    by running its arguments, if given); stopped and reaped on exit."""
    full_env = {**os.environ, **env}
    # The test made the key pair itself, so it may skip the proof of possession.
    subprocess.run([TIPBOX, "init", "--trust-keys-folder"], env=full_env, check=True,
                   capture_output=True)
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*wrapper, TIPBOX, "serve", interface, "--host", "127.0.0.1",
                                 "--port", str(port)], env=full_env, stdout=log, stderr=log)
    server = RunningServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{server.log()}") from None
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpSource:
    """A source's no-JS browser over real HTTP: cookies, forms, multipart uploads."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        # Always our own http:// loopback URL, never a user-supplied scheme.
        req = urllib.request.Request(  # noqa: S310
            self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=120) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            with err:  # it holds the connection's response, to close as any other
                return err.code, err.read().decode(errors="replace"), dict(err.headers)

    def post_form(self, path: str, fields: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        body = urllib.parse.urlencode(fields).encode()
        return self.request(path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def new_codename(self) -> str:
        _, html, _ = self.request("/generate")
        codename = hidden(html, "codename")
        status, _, _ = self.post_form("/create", {"csrf_token": csrf_from(html),
                                                   "codename": codename,
                                                   "mac": hidden(html, "mac")})
        assert status == 302
        return codename

    def login(self, codename: str) -> int:
        _, html, _ = self.request("/login")
        status, _, _ = self.post_form("/login", {"csrf_token": csrf_from(html),
                                                  "codename": codename})
        return status

    def submit(self, message: str, files: list[tuple[bytes, str]]) -> tuple[int, str]:
        status, html, _ = self.request("/submit")
        if status != 200:  # the form never came: nothing was sent, the caller sees why
            return status, html
        boundary = "----tipboxtest" + secrets.token_hex(8)
        body = encode_multipart(boundary, [("csrf_token", None, csrf_from(html).encode()),
                                           ("message", None, message.encode())]
                                + [("files", name, data) for data, name in files])
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(self.base).netloc, timeout=300)
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        # Closed however the request ends: a server killed mid-upload (tests/e2e/test_crashes.py)
        # must not leave the socket to the collector, whose warning fails the test.
        try:
            conn.request("POST", "/submit", body=body, headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": cookie})
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        finally:
            conn.close()
        return resp.status, text


def encode_multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """multipart/form-data the way browsers write it (names are UTF-8, quotes escaped)."""
    out = bytearray()
    for name, filename, data in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            safe = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
            disposition += f'; filename="{safe}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def received_count(html: str) -> int:
    match = re.search(r"received (\d+) items? from you", html)
    assert match, html
    return int(match.group(1))
