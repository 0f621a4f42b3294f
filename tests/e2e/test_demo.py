"""`tipbox demo` as `make run` starts it: both servers up, and stopped completely by Ctrl-C
(SIGINT to the whole foreground process group), SIGTERM or SIGHUP, whenever it comes."""

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

pytestmark = pytest.mark.e2e


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
        try:  # the process may end between being found and being looked into
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):  # the thread or process has just gone
                continue
            found.update(children)
            todo.extend(children)
    return found


def servers_among(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.add(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def servers_for(ports: tuple[int, ...]) -> set[int]:
    """Every process on the machine serving one of ``ports``: masters and workers (forked,
    so with the same command line), whoever their parent is now."""
    wanted = {str(p).encode() for p in ports}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"serve" in args and b"--port" in args and wanted & set(args) and alive(
                int(entry.name)):
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


CASES = {
    # name: (signal, sent once both servers answer (True) or as soon as one has started)
    "Ctrl-C": (signal.SIGINT, True),
    "SIGTERM": (signal.SIGTERM, True),
    "SIGHUP": (signal.SIGHUP, True),
    "Ctrl-C during start-up": (signal.SIGINT, False),
    "SIGTERM during start-up": (signal.SIGTERM, False),
    # A job started in the background (as CI runs things) inherits SIGINT ignored.
    "SIGINT with SIGINT inherited ignored": (signal.SIGINT, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_demo_stops_both_servers_and_every_worker(tmp_path: Path, case: str) -> None:
    signum, when_up = CASES[case]
    port = two_free_ports()
    env = {**os.environ, "TIPBOX_DATA_DIR": str(tmp_path / "data"),
           "TIPBOX_KEYS_DIR": str(tmp_path / "keys"), "TIPBOX_SCRYPT_N": "16"}
    log = (tmp_path / "demo.log").open("wb")
    # A session of its own stands for the terminal's foreground process group.
    demo = subprocess.Popen([TIPBOX, "demo", "--port", str(port),
                             "--offline-dir", str(tmp_path / "offline")],
                            env=env, stdout=log, stderr=log, start_new_session=True,
                            preexec_fn=ignore_sigint if "ignored" in case else None)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while True:
            seen |= descendants(demo.pid)
            up = answers(port, "/") and answers(port + 1, "/login")
            if up or (not when_up and servers_among(seen)):
                break
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "the demo did not start within 60 s"
            time.sleep(0.2 if when_up else 0.005)
        if up:
            seen |= descendants(demo.pid)
            assert len(servers_among(seen)) >= 4  # two gunicorn masters, a worker each
            # Ctrl-C in a terminal signals the whole group; the servers are not in it, so
            # only the demo hears it and stops each server once.
            assert all(os.getpgid(pid) != demo.pid for pid in servers_among(seen))

        os.killpg(demo.pid, signum)
        demo.wait(timeout=60)  # a hang guard, not a timing
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
        # Found by their ports, not as the demo's descendants: an orphan has another parent.
        left = sorted(servers_for((port, port + 1)))
        for pid in left:  # never leave a server behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert left == [], "servers outlived the demo"
    assert not answers(port, "/") and not answers(port + 1, "/login")
    if up:
        output = (tmp_path / "demo.log").read_text()
        assert "Stopping the servers" in output
        assert f"Listening at: http://127.0.0.1:{port}" in output  # no secret, and useful
