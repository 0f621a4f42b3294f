"""The systemd units in deploy/: systemd's own checks, their hardening, and the rules
that could break tipbox at run time (the system call filter, no writable executable
memory, no new privileges), applied to the real server, gpg, prune and doctor."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.server import TIPBOX, HttpSource, RunningServer, tipbox_server
from tests.e2e.test_journey import HttpJournalist, add_journalist
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, store_files
from tipbox.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
UNITS = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in {".service", ".timer"})
SERVICES = [u for u in UNITS if u.endswith(".service")]
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


def expand(group: str, groups: dict[str, list[str]]) -> set[str]:
    if not group.startswith("@"):
        return {group}
    return set().union(*(expand(item, groups) for item in groups[group]))


def syscall_groups() -> dict[str, list[str]]:
    """systemd's own system call groups, as `systemd-analyze syscall-filter` lists them."""
    listed = subprocess.run([systemd_analyze(), "syscall-filter", "--no-pager"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listed.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def allowed_syscalls(unit: str) -> set[str]:
    """What the unit's SystemCallFilter= lines allow, in order: an allow list, then
    ``~`` lines that take calls out of it."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for value in unit_settings(unit)["SystemCallFilter"]:
        names = set().union(*(expand(n, groups) for n in value.lstrip("~").split()))
        allowed = allowed - names if value.startswith("~") else allowed | names
    return allowed


def debian_python_with_seccomp() -> str:
    found = subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True,
                           timeout=60, check=False).returncode == 0
    if not found:
        if os.environ.get("CI"):
            pytest.fail("CI must install python3-seccomp (see .ci/run)")
        pytest.skip("python3-seccomp is missing: sudo apt-get install python3-seccomp")
    return "/usr/bin/python3"


def under_unit_rules(unit: str, folder: Path) -> list[str]:
    """The command prefix that runs a program under ``unit``'s system call filter, memory
    rule and no new privileges (tests/deploy/unit_rules_exec.py)."""
    allowed = folder / f"{unit}.syscalls"
    allowed.write_text("\n".join(sorted(allowed_syscalls(unit))) + "\n")
    return [debian_python_with_seccomp(), str(Path(__file__).with_name("unit_rules_exec.py")),
            str(allowed)]


def test_the_filter_follows_the_unit_file() -> None:
    allowed = allowed_syscalls("tipbox-source.service")
    assert {"read", "write", "execve", "socket", "accept4", "setrlimit", "prlimit64"} <= allowed
    assert {"setuid", "mount", "reboot", "init_module", "ptrace"}.isdisjoint(allowed)


def test_the_rules_refuse_what_the_units_forbid(tmp_path: Path) -> None:
    """The checks below mean something only if the rules are really in force."""
    write_and_execute = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    probes = [f"import mmap; mmap.mmap(-1, 4096, prot={write_and_execute})",
              "import os; os.setuid(os.getuid())"]  # setuid is @privileged
    prefix = under_unit_rules("tipbox-source.service", tmp_path)
    for probe in probes:
        refused = subprocess.run([*prefix, sys.executable, "-c", probe],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0, probe
        assert "PermissionError" in refused.stderr, refused.stderr
    allowed = subprocess.run([*prefix, sys.executable, "-c", "print('fine')"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert allowed.stdout == "fine\n", allowed.stderr


@pytest.fixture
def server_env(tmp_path: Path, newsroom: Newsroom) -> dict[str, str]:
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
            "TIPBOX_SCRYPT_N": "16", "TIPBOX_RETENTION_DAYS": "30"}


@pytest.fixture
def servers_under_unit_rules(server_env: dict[str, str],
                             tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    def start(interface: str) -> RunningServer:
        return stack.enter_context(tipbox_server(
            interface, server_env, tmp_path / f"{interface}.log",
            wrapper=under_unit_rules(f"tipbox-{interface}.service", tmp_path)))

    with ExitStack() as stack:
        yield start("source"), start("newsroom")


def test_both_interfaces_and_gpg_work_under_their_units_rules(
        servers_under_unit_rules: tuple[RunningServer, RunningServer],
        server_env: dict[str, str], newsroom: Newsroom) -> None:
    source_server, newsroom_server = servers_under_unit_rules
    source = HttpSource(source_server.url)
    codename = source.new_codename()
    memo = os.urandom(256 * 1024)
    status, _ = source.submit("Sent under the unit's rules.", [(memo, "memo.pdf")])
    assert status == 303, source_server.log()
    stored = store_files(Path(server_env["TIPBOX_DATA_DIR"]))
    plain = sorted((p.filename, p.data) for p in
                   (gpg_decrypt(path, newsroom.secret_home) for path in stored))
    assert plain == [("", b"Sent under the unit's rules."), ("memo.pdf", memo)]

    # Argon2id and TOTP at log-in, a bundle, a reply encrypted twice by gpg.
    passphrase, secret = add_journalist(server_env, "ada")
    journalist = HttpJournalist(newsroom_server.url)
    assert journalist.log_in("ada", passphrase, secret) == 302, newsroom_server.log()
    ids = journalist.source_ids()
    assert len(ids) == 1
    assert journalist.download_unread(ids)[257:262] == b"ustar"
    _, page, _ = journalist.request(f"/sources/{ids[0]}")
    status, _, _ = journalist.post_form(f"/sources/{ids[0]}/reply", {
        "csrf_token": csrf_from(page), "text": "Received, thank you."})
    assert status == 302, newsroom_server.log()

    returning = HttpSource(source_server.url)
    assert returning.login(codename) == 302
    assert "Received, thank you." in returning.request("/submit")[1]
    for server in servers_under_unit_rules:
        assert "Traceback" not in server.log() and "not permitted" not in server.log()


@pytest.mark.parametrize(("unit", "command", "said"), [
    ("tipbox-prune.service", "prune", "Done: deleted the sources quiet for more than 30 day(s)."),
    ("tipbox-doctor.service", "doctor", "All checks passed."),
])
def test_the_daily_commands_work_under_their_units_rules(
        server_env: dict[str, str], tmp_path: Path, unit: str, command: str,
        said: str) -> None:
    env = {**os.environ, **server_env}
    subprocess.run([TIPBOX, "init", "--trust-keys-folder"], env=env, check=True,
                   capture_output=True, timeout=120)
    ran = subprocess.run([*under_unit_rules(unit, tmp_path), TIPBOX, command], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert said in ran.stdout
