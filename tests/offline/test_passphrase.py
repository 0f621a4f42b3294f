"""A newsroom secret key protected by a passphrase: from --passphrase-fd, or typed at a
prompt when gpg-agent has no pinentry it can use."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.offline.kit import Item, Sender, passphrase_fd, run_open, write_bundle
from tipbox.crypto.gpg import GnuPG

PASSPHRASE = "correct horse battery staple"
SOURCE = "sturdy zest"


@dataclass(frozen=True)
class Locked:
    home: Path
    bundle: Path
    item: Item


@pytest.fixture
def locked(sender: Sender, own_home: Path, tmp_path: Path) -> Locked:
    """A bundle whose one item is for a key generated WITH a passphrase."""
    gpg = GnuPG(own_home)
    fpr = gpg.generate_key("Locked Station", "locked@example.invalid", passphrase=PASSPHRASE)
    sender.gpg.import_keys(str(gpg.export_public(fpr)))
    item = sender.item(SOURCE, "file", 1, b"sealed", filename="sealed.txt", to=[fpr])
    return Locked(own_home, write_bundle(tmp_path / "b.tar", [item]), item)


def test_passphrase_fd_opens_a_protected_key_and_a_wrong_one_is_reported(
        locked: Locked, tmp_path: Path) -> None:
    # No terminal, no pinentry that can ask, no passphrase: reported, not hung.
    proc = run_open(locked.bundle, tmp_path / "none", locked.home)
    assert proc.returncode == 1
    assert "protected by a passphrase" in (tmp_path / "none" / "index.txt").read_text()
    assert not (tmp_path / "none" / SOURCE / "01-sealed.txt").exists()

    fd = passphrase_fd("wrong horse")
    proc = run_open(locked.bundle, tmp_path / "wrong", locked.home, "--passphrase-fd", str(fd),
                    pass_fds=[fd])
    os.close(fd)
    assert proc.returncode == 1
    assert "passphrase for the secret key is wrong" in proc.stderr

    fd = passphrase_fd(PASSPHRASE)
    proc = run_open(locked.bundle, tmp_path / "right", locked.home, "--passphrase-fd", str(fd),
                    pass_fds=[fd])
    os.close(fd)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "right" / SOURCE / "01-sealed.txt").read_bytes() == b"sealed"


def test_in_a_terminal_without_a_usable_pinentry_the_passphrase_is_asked_for(
        locked: Locked, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("GPG_TTY", "DISPLAY",
                                                            "WAYLAND_DISPLAY")}
    argv = [sys.executable, "-m", "tipbox.offline", str(locked.bundle), "--out", str(out),
            "--gnupghome", str(locked.home)]
    status, text = _run_in_terminal(argv, env, answers=[
        (b"(leave empty to skip the items that need it): ", b"wrong horse\n"),
        (b"That passphrase is wrong.", b""),
        (b"(leave empty to skip the items that need it): ", PASSPHRASE.encode() + b"\n"),
    ])
    assert status == 0, text
    assert "is protected by a passphrase." in text  # why it asks, the first time
    assert "[1/1] sturdy zest file" in text and text.rstrip().endswith("index.txt")
    assert PASSPHRASE not in text  # getpass does not echo
    assert (out / SOURCE / "01-sealed.txt").read_bytes() == b"sealed"


def _run_in_terminal(argv: list[str], env: dict[str, str],
                     answers: list[tuple[bytes, bytes]]) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal; when the screen shows each prompt, type the answer."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(argv[0], argv, env)  # noqa: S606 - our own interpreter, fixed argv
    seen = b""
    pos = 0  # each prompt is looked for after the previous one
    pending = list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            while pending and (found := seen.find(pending[0][0], pos)) >= 0:
                prompt, answer = pending.pop(0)
                pos = found + len(prompt)
                if answer:
                    os.write(fd, answer)
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode("utf-8", "replace")
