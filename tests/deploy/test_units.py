"""The systemd units in deploy/: systemd's own checks, their hardening, and the one
hardening rule that could break tipbox at run time (no writable executable memory), tried
on the real server and gpg."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HttpSource, RunningServer, tipbox_server
from tests.helpers import Newsroom, gpg_decrypt, store_files
from tipbox.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
UNITS = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in {".service", ".timer"})
SERVICES = [u for u in UNITS if u.endswith(".service")]
MDWE = [sys.executable, str(Path(__file__).with_name("mdwe_exec.py"))]
# What `systemd-analyze security` rates each unit; docs/admin-guide.md explains what is left.
MOST_EXPOSURE = 1.5


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have systemd-analyze (the systemd package, see .ci/run)")
        pytest.skip("systemd-analyze is missing: sudo apt-get install systemd")
    return found


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Each key of a unit file with all its values, in order (systemd allows repeats)."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as installed from this checkout: /opt/tipbox becomes its path, so that
    systemd finds the `tipbox` program they start."""
    folder = tmp_path_factory.mktemp("units")
    for unit in UNITS:
        text = (DEPLOY / unit).read_text().replace("/opt/tipbox", str(REPO_ROOT))
        (folder / unit).write_text(text)
    return folder


def test_the_deploy_folder_has_both_interfaces_and_daily_prune_and_doctor() -> None:
    assert set(UNITS) >= {"tipbox-source.service", "tipbox-newsroom.service",
                          "tipbox-prune.service", "tipbox-prune.timer",
                          "tipbox-doctor.service", "tipbox-doctor.timer"}
    assert unit_settings("tipbox-source.service")["ExecStart"] == [
        "/opt/tipbox/.venv/bin/tipbox serve source --host 127.0.0.1 --port 8080"]
    assert unit_settings("tipbox-newsroom.service")["ExecStart"] == [
        "/opt/tipbox/.venv/bin/tipbox serve newsroom --host 127.0.0.1 --port 8081"]
    for timer in ("tipbox-prune.timer", "tipbox-doctor.timer"):
        assert unit_settings(timer)["Persistent"] == ["true"]


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_verify_accepts_the_unit(installed: Path, unit: str) -> None:
    verified = subprocess.run([systemd_analyze(), "verify", str(installed / unit)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_every_service_runs_unprivileged_and_may_write_only_the_data_folder(unit: str) -> None:
    settings = unit_settings(unit)
    assert settings["User"] == ["tipbox"] and settings["Group"] == ["tipbox"]
    assert settings["ReadWritePaths"] == ["/opt/tipbox/data"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "MemoryDenyWriteExecute": "yes",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
                       "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert settings[key] == [value], key
    assert settings["SystemCallFilter"][0] == "@system-service"
    assert "MemoryMax" in settings


@pytest.mark.parametrize("unit", SERVICES)
def test_systemd_rates_every_service_well_hardened(installed: Path, unit: str) -> None:
    rated = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(installed / unit)],
        capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", rated.stdout)
    assert match, rated.stdout + rated.stderr
    assert float(match.group(1)) <= MOST_EXPOSURE, rated.stdout


def test_the_memory_rule_refuses_writable_executable_memory() -> None:
    """The check below means something only if the rule is really in force."""
    probe = ("import mmap\n"
             f"mmap.mmap(-1, 4096, prot={mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC})")
    refused = subprocess.run([*MDWE, sys.executable, "-c", probe],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "PermissionError" in refused.stderr, refused.stderr


@pytest.fixture
def server_under_mdwe(tmp_path: Path, newsroom: Newsroom) -> Iterator[tuple[RunningServer, Path]]:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16"}
    with tipbox_server("source", env, tmp_path / "server.log", wrapper=MDWE) as running:
        yield running, tmp_path / "data"


def test_source_interface_and_gpg_work_without_writable_executable_memory(
        server_under_mdwe: tuple[RunningServer, Path], newsroom: Newsroom) -> None:
    server, data_dir = server_under_mdwe
    source = HttpSource(server.url)
    codename = source.new_codename()
    memo = os.urandom(256 * 1024)
    status, _ = source.submit("Sent under MemoryDenyWriteExecute.", [(memo, "memo.pdf")])
    assert status == 303, server.log()
    plain = sorted((p.filename, p.data) for p in
                   (gpg_decrypt(path, newsroom.secret_home) for path in store_files(data_dir)))
    assert plain == [("", b"Sent under MemoryDenyWriteExecute."), ("memo.pdf", memo)]
    assert HttpSource(server.url).login(codename) == 302
    assert "MDWE" not in server.log() and "Traceback" not in server.log()
