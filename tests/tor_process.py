"""A real tor, offline (``DisableNetwork 1``), on the torrc `tipbox onion torrc` writes,
in a temp folder: it creates the onion services' keys and hostnames and loads client
keys exactly as a networked tor does, and tells so in its log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Bounds every wait on tor; it takes a few seconds on a busy machine.
TOR_WAIT_SECONDS = 90
RELOADED = "Received reload signal (hup)"


def tor_binary() -> str:
    """tor's path, or skip (fail under CI, which installs it: .ci/run)."""
    found = shutil.which("tor") or next(
        (p for p in ("/usr/sbin/tor", "/usr/bin/tor") if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install tor (see .ci/run)")
        pytest.skip("tor is not installed: sudo apt-get install tor")
    return found


def offline_torrc(tipbox_lines: str, folder: Path, *, client_auth_dir: Path | None = None) -> str:
    """``tipbox_lines`` plus what runs tor in ``folder`` with no network at all. The
    folder is tor's data directory and holds the services, as /var/lib/tor does on Debian."""
    extra = [f"DataDirectory {folder}", "SocksPort 0", "DisableNetwork 1",
             f"PidFile {folder / 'tor.pid'}", f"Log info file {folder / 'tor.log'}"]
    if client_auth_dir is not None:
        extra.append(f"ClientOnionAuthDir {client_auth_dir}")
    return tipbox_lines + "\n".join(extra) + "\n"


class RunningTor:
    """tor on ``torrc_file``; the log is ``folder/tor.log``."""

    def __init__(self, torrc_file: Path, folder: Path) -> None:
        self.folder = folder
        self.log_file = folder / "tor.log"
        self.process = subprocess.Popen(
            [tor_binary(), "-f", str(torrc_file)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_last_reload(self) -> str:
        return self.log().rpartition(RELOADED)[2]

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TOR_WAIT_SECONDS
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"tor exited ({self.process.returncode}) before {what}:\n"
                                     + self.log()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"tor did not get to {what} in {TOR_WAIT_SECONDS} s:\n"
                                     + self.log()[-3000:])
            time.sleep(0.2)

    def wait_started(self) -> None:
        """Until tor's main loop runs: a SIGHUP before that would end it."""
        self.wait_for("its main loop", lambda: "Bootstrapped 0%" in self.log())

    def reload(self) -> None:
        """What `systemctl reload tor` does: a SIGHUP, and tor reads its files again."""
        reloads = self.log().count(RELOADED)
        self.process.send_signal(signal.SIGHUP)
        self.wait_for("a reload", lambda: self.log().count(RELOADED) > reloads)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
