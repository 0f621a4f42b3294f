"""deploy/tipbox-digest.{service,timer} pass `systemd-analyze verify`, with the command
pointed at this checkout's tipbox (the shipped path, /opt/tipbox, is the server's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tipbox.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def test_the_digest_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (Debian: apt-get install systemd)")
    tipbox = str(Path(sys.executable).with_name("tipbox"))
    for name in ("tipbox-digest.service", "tipbox-digest.timer"):
        text = (DEPLOY / name).read_text().replace("/opt/tipbox/.venv/bin/tipbox", tipbox)
        (tmp_path / name).write_text(text)

    done = subprocess.run([analyze, "verify", str(tmp_path / "tipbox-digest.service"),
                           str(tmp_path / "tipbox-digest.timer")],
                          capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_the_digest_service_is_hardened_and_runs_unprivileged() -> None:
    unit = (DEPLOY / "tipbox-digest.service").read_text()
    for line in ("User=tipbox", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/opt/tipbox/data", "PrivateTmp=yes", "ProtectHome=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                 "CapabilityBoundingSet=\n"):
        assert line in unit, line
