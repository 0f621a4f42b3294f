"""`tipbox demo` as `make run` starts it: both servers up, and stopped completely by Ctrl-C
(SIGINT to the whole foreground process group) or by SIGTERM or SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.server import TIPBOX, free_port


def two_free_ports() -> int:
    """A port whose next one is free too: the demo puts the newsroom there."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free consecutive ports on loopback")


def answers(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split()
            found.update(int(c) for c in children)
            todo.extend(int(c) for c in children)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["Ctrl-C", "SIGTERM", "SIGHUP"])
def test_the_demo_stops_both_servers_and_every_worker(tmp_path: Path, signum: int) -> None:
    port = two_free_ports()
    env = {**os.environ, "TIPBOX_DATA_DIR": str(tmp_path / "data"),
           "TIPBOX_KEYS_DIR": str(tmp_path / "keys"), "TIPBOX_SCRYPT_N": "16"}
    log = (tmp_path / "demo.log").open("wb")
    # A session of its own stands for the terminal's foreground process group.
    demo = subprocess.Popen([TIPBOX, "demo", "--port", str(port),
                             "--offline-dir", str(tmp_path / "offline")],
                            env=env, stdout=log, stderr=log, start_new_session=True)
    servers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not (answers(port, "/") and answers(port + 1, "/login")):
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "the demo did not start within 60 s"
            time.sleep(0.2)
        servers = descendants(demo.pid)
        assert len(servers) >= 4  # two gunicorn masters, a worker each
        # Ctrl-C in a terminal signals the whole group; the servers are not in it, so only
        # the demo hears it and stops each server once.
        assert all(os.getpgid(pid) != demo.pid for pid in servers)

        os.killpg(demo.pid, signum)
        demo.wait(timeout=60)  # a hang guard, not a timing
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
        left = [pid for pid in servers if alive(pid)]
        for pid in left:  # never leave a server behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert left == [], "servers outlived the demo"
    output = (tmp_path / "demo.log").read_text()
    assert "Stopping the servers" in output
    assert f"Listening at: http://127.0.0.1:{port}" in output  # no secret, and useful
    assert not answers(port, "/") and not answers(port + 1, "/login")
