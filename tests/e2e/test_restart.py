"""Stopping and restarting keep the site answering: the listening socket is given up as
soon as the drain begins, so a new visitor is refused at once instead of waiting
unanswered and a new `tipbox serve` can take the port, while the upload in progress
finishes and is kept. Loopback only; every wait is bounded."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import TIPBOX, HttpSource, RunningServer, encode_multipart, tipbox_server
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, store_files

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_env(tmp_path: Path, newsroom: Newsroom) -> dict[str, str]:
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"),
            "TIPBOX_KEYS_DIR": str(newsroom.keys_dir), "TIPBOX_SCRYPT_N": "16"}


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    with tipbox_server("source", server_env, tmp_path / "server.log") as running:
        yield running


def until(condition: object, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(port: int) -> bool:
    try:
        return HttpSource(f"http://127.0.0.1:{port}").request("/")[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("stop", ["SIGTERM to the master", "SIGKILL of the master"])
def test_an_upload_in_progress_finishes_while_a_new_server_takes_the_port(
        server: RunningServer, server_env: dict[str, str], newsroom: Newsroom,
        tmp_path: Path, stop: str) -> None:
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children")
    # The master listens (and the server counts as up) a moment before it forks its worker.
    until(lambda: children.read_text().split(), "the master forked its worker")
    old_worker = int(children.read_text().split()[0])
    source = HttpSource(server.url)
    source.new_codename()
    _, html, _ = source.request("/submit")
    document = os.urandom(2 * 1024 * 1024)
    boundary = "----tipboxtest" + secrets.token_hex(8)
    body = encode_multipart(boundary, [("csrf_token", None, csrf_from(html).encode()),
                                       ("message", None, b"sent across a restart"),
                                       ("files", "ledger.pdf", document)])
    upload = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    upload.putrequest("POST", "/submit")
    upload.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    upload.putheader("Content-Length", str(len(body)))
    upload.putheader("Cookie", "; ".join(f"{c.name}={c.value}" for c in source.jar))
    upload.endheaders()
    half = len(body) // 2
    upload.send(body[:half])
    tmp = Path(server_env["TIPBOX_DATA_DIR"]) / "store" / ".tmp"
    until(lambda: any(tmp.glob("*.part")), "the upload reached gpg")

    os.kill(master, signal.SIGTERM if stop.startswith("SIGTERM") else signal.SIGKILL)
    until(lambda: port_is_free(server.port), "the old server gave the port up")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()

    log = (tmp_path / "restarted.log").open("wb")
    restarted = subprocess.Popen(
        [TIPBOX, "serve", "source", "--host", "127.0.0.1", "--port", str(server.port)],
        env={**os.environ, **server_env}, stdout=log, stderr=log)
    try:
        until(lambda: answers(server.port), "the new server answers", seconds=30)
        upload.send(body[half:])
        response = upload.getresponse()
        assert response.status == 303
        upload.close()
        until(lambda: not Path(f"/proc/{old_worker}").exists()
              or "zombie" in Path(f"/proc/{old_worker}/status").read_text(),
              "the old worker ended once its upload was done")
        plain = {gpg_decrypt(p, newsroom.secret_home).data
                 for p in store_files(Path(server_env["TIPBOX_DATA_DIR"]))}
        assert {b"sent across a restart", document} <= plain
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
        log.close()
        if Path(f"/proc/{old_worker}").exists():
            os.kill(old_worker, signal.SIGKILL)


def test_a_new_worker_removes_the_temporaries_killed_writers_left_in_the_data_folder(
        server: RunningServer, server_env: dict[str, str]) -> None:
    """Without `tipbox init`: the service's own start (here a reload's new worker) removes
    what a `tipbox digest` or `tipbox init` SIGKILLed mid-write left, secrets included."""
    data = Path(server_env["TIPBOX_DATA_DIR"])
    # The first worker answers only once its own start's sweep is over: otherwise it may
    # take one of the two below and the new worker the other.
    until(lambda: answers(server.port), "the first worker answers")
    left = [data / ".instance-secrets.json.k1ll3d00", data / ".digest-state.json.k1ll3d00"]
    for path in left:
        # 0600 from the start, as mkstemp makes it.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    server.process.send_signal(signal.SIGHUP)  # gunicorn's reload: a new worker starts
    until(lambda: not any(path.exists() for path in left), "the temporaries are removed")
    until(lambda: "removed 2 temporary file(s)" in server.log(), "the log says so")
